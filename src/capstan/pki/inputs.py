"""What the PKI needs to know about a cluster, and nothing else.

The PKI layer deliberately does not import the cluster spec: it takes these small frozen dataclasses so
that it can be tested (and reasoned about) without a spec, and so that a change in the spec's shape only
touches the adapter that builds a ``PKIInputs``. Validation here is limited to what would otherwise make
certificate issuance fail or silently produce wrong SANs; each error names the offending field.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from capstan.errors import PKIError

ROLES = frozenset({"control-plane", "etcd", "worker"})
KeyAlgorithm = Literal["ecdsa-p256", "rsa-2048"]
KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = ("ecdsa-p256", "rsa-2048")


def is_ip(value: str) -> bool:
    """True when ``value`` is a literal IPv4/IPv6 address (and so belongs in an IP SAN, not a DNS SAN)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def url_host(host: str) -> str:
    """``host`` as it must appear in a URL: IPv6 literals need brackets, everything else is verbatim."""
    if is_ip(host) and ipaddress.ip_address(host).version == 6:
        return f"[{host}]"
    return host


@dataclass(frozen=True)
class NodeIdentity:
    """One host as the certificates see it: the names and addresses peers will use to reach it.

    ``ip`` is the address components bind and advertise on; ``access_ip`` is the address other machines
    use when that differs (NAT, a public interface). An empty ``access_ip`` means "same as ``ip``".
    """

    name: str
    ip: str
    access_ip: str
    roles: frozenset[str]

    @property
    def is_control_plane(self) -> bool:
        return "control-plane" in self.roles

    @property
    def is_etcd(self) -> bool:
        return "etcd" in self.roles

    @property
    def is_kube_node(self) -> bool:
        """Runs a kubelet. An etcd-only host does not, so it gets no kubelet credentials."""
        return "control-plane" in self.roles or "worker" in self.roles

    def addresses(self) -> tuple[str, ...]:
        """The node's distinct addresses, ``ip`` first."""
        if self.access_ip and self.access_ip != self.ip:
            return (self.ip, self.access_ip)
        return (self.ip,)


@dataclass(frozen=True)
class PKIInputs:
    """Everything that decides which certificates exist and what they contain.

    ``apiserver_bind_port`` is the port each kube-apiserver listens on locally; the controller-manager
    and scheduler kubeconfigs point at their own node's apiserver (as kubeadm does) so that a control
    plane keeps working when the load balancer in front of ``endpoint_host:endpoint_port`` is down.
    """

    cluster_name: str
    cluster_domain: str
    service_cidr: str
    nodes: tuple[NodeIdentity, ...]
    endpoint_host: str
    endpoint_port: int
    apiserver_extra_sans: tuple[str, ...] = ()
    key_algorithm: KeyAlgorithm = "ecdsa-p256"
    leaf_validity_days: int = 365
    ca_validity_days: int = 3650
    etcd_clients: tuple[str, ...] = ()
    apiserver_bind_port: int = 6443

    def __post_init__(self) -> None:
        _validate(self)

    def node(self, name: str) -> NodeIdentity:
        for node in self.nodes:
            if node.name == name:
                return node
        raise PKIError(f"pki: no node named {name!r} in the cluster (known: {', '.join(self.node_names())})")

    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def control_planes(self) -> tuple[NodeIdentity, ...]:
        return tuple(n for n in self.nodes if n.is_control_plane)

    def etcd_members(self) -> tuple[NodeIdentity, ...]:
        return tuple(n for n in self.nodes if n.is_etcd)

    def first_control_plane(self) -> NodeIdentity:
        """The host whose files are the source of truth for the CAs (see ``generate``)."""
        return self.control_planes()[0]

    def service_ip(self) -> str:
        """First usable address of the service range: the ClusterIP of the ``kubernetes`` service."""
        network = ipaddress.ip_network(self.service_cidr, strict=False)
        return str(network.network_address + 1)

    def endpoint_url(self) -> str:
        return f"https://{url_host(self.endpoint_host)}:{self.endpoint_port}"

    def local_apiserver_url(self, node: NodeIdentity) -> str:
        return f"https://{url_host(node.ip)}:{self.apiserver_bind_port}"


def _validate(inputs: PKIInputs) -> None:
    """Reject inputs that would make issuance fail halfway or produce certificates nobody can use."""
    if not inputs.cluster_name:
        raise PKIError("pki.cluster_name: must not be empty")
    domain = inputs.cluster_domain
    if not domain or domain.startswith(".") or domain.endswith(".") or any(c.isspace() for c in domain):
        raise PKIError(f"pki.cluster_domain: {domain!r} is not a DNS domain like cluster.local")
    try:
        network = ipaddress.ip_network(inputs.service_cidr, strict=False)
    except ValueError as exc:
        raise PKIError(f"pki.service_cidr: {inputs.service_cidr!r} is not a CIDR ({exc})") from None
    if network.num_addresses < 4:
        raise PKIError(f"pki.service_cidr: {inputs.service_cidr} is too small to hold the kubernetes service")
    if not inputs.endpoint_host:
        raise PKIError("pki.endpoint_host: must not be empty")
    for field in ("endpoint_port", "apiserver_bind_port"):
        port = getattr(inputs, field)
        if not 0 < port < 65536:
            raise PKIError(f"pki.{field}: {port} is not a TCP port")
    if inputs.key_algorithm not in KEY_ALGORITHMS:
        raise PKIError(
            f"pki.key_algorithm: {inputs.key_algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}"
        )
    for field in ("leaf_validity_days", "ca_validity_days"):
        if getattr(inputs, field) < 1:
            raise PKIError(f"pki.{field}: must be at least 1 day")
    if inputs.leaf_validity_days > inputs.ca_validity_days:
        raise PKIError(
            "pki.leaf_validity_days: must not exceed ca_validity_days (a leaf cannot outlive its CA)"
        )
    seen: set[str] = set()
    for i, node in enumerate(inputs.nodes):
        where = f"pki.nodes[{i}]"
        if not node.name:
            raise PKIError(f"{where}.name: must not be empty")
        if node.name in seen:
            raise PKIError(f"{where}.name: {node.name!r} appears twice")
        seen.add(node.name)
        if not is_ip(node.ip):
            raise PKIError(f"{where}.ip: {node.ip!r} is not an IP address")
        if node.access_ip and not is_ip(node.access_ip):
            raise PKIError(f"{where}.access_ip: {node.access_ip!r} is not an IP address")
        unknown = node.roles - ROLES
        if unknown:
            raise PKIError(f"{where}.roles: unknown role(s) {', '.join(sorted(unknown))}")
        if not node.roles:
            raise PKIError(f"{where}.roles: a node needs at least one role")
    if not inputs.control_planes():
        raise PKIError("pki.nodes: no node has the control-plane role")
    if not inputs.etcd_members():
        raise PKIError("pki.nodes: no node has the etcd role")
    for i, name in enumerate(inputs.etcd_clients):
        if name not in seen:
            raise PKIError(f"pki.etcd_clients[{i}]: {name!r} is not a node of the cluster")
    for i, san in enumerate(inputs.apiserver_extra_sans):
        if not san or any(c.isspace() for c in san):
            raise PKIError(f"pki.apiserver_extra_sans[{i}]: {san!r} is neither an IP address nor a DNS name")
