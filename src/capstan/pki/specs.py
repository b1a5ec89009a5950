"""The catalogue: which certificates a cluster needs, and what each must say.

Every certificate has a stable *logical name* (``kubernetes/apiserver@cp1``, ``etcd/member@e1``...) that
is independent of where it lands on disk, so that flows can talk about "what was re-issued" without
knowing the file layout, and so that the layout (``layout.py``) can change without touching issuance.

Subjects follow kubeadm (v1.29+) so that a kubeadm-built control plane accepts capstan's files as its own
and ``kubeadm certs check-expiration`` reads them:

- ``apiserver-kubelet-client`` carries O=kubeadm:cluster-admins, not system:masters: kubeadm changed this
  in v1.29 (kubernetes/kubernetes PR #121837, "kubeadm: change SystemPrivilegedGroup in
  apiserve-kubelet-client.crt"); the apiserver only needs kubelet API access, which that group grants.
- ``admin.conf`` is O=kubeadm:cluster-admins (revocable through its ClusterRoleBinding) and
  ``super-admin.conf`` is O=system:masters (break-glass, bypasses RBAC), as split by kubeadm in v1.29.
- etcd member certificates are per node and carry only that node's names and addresses (plus loopback),
  so a stolen member key cannot impersonate another member.
"""

from __future__ import annotations

from dataclasses import dataclass

from capstan.pki.certkey import Subject
from capstan.pki.inputs import NodeIdentity, PKIInputs

CA_KUBERNETES = "kubernetes/ca"
CA_FRONT_PROXY = "kubernetes/front-proxy-ca"
CA_ETCD = "etcd/ca"
SERVICE_ACCOUNT = "kubernetes/sa"

CA_COMMON_NAMES = {CA_KUBERNETES: "kubernetes", CA_FRONT_PROXY: "front-proxy-ca", CA_ETCD: "etcd-ca"}

CLUSTER_ADMINS = "kubeadm:cluster-admins"
SYSTEM_MASTERS = "system:masters"
LOOPBACK = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class LeafSpec:
    """What one leaf certificate must be. ``kubeconfig_server`` is set for kubeconfig credentials."""

    name: str
    issuer: str
    subject: Subject
    server_auth: bool
    client_auth: bool
    node: str
    kubeconfig_server: str | None = None

    @property
    def kubeconfig_user(self) -> str:
        return self.subject.common_name


def leaf_name(kind: str, node: str) -> str:
    return f"{kind}@{node}"


def apiserver_sans(inputs: PKIInputs) -> tuple[str, ...]:
    """Every name a client may use to reach any apiserver: in-cluster DNS, every control plane, the LB."""
    domain = inputs.cluster_domain
    sans: list[str] = [
        inputs.service_ip(),
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
    ]
    for cp in inputs.control_planes():
        sans.append(cp.name)
        sans.extend(cp.addresses())
    sans.append(inputs.endpoint_host)
    sans.extend(LOOPBACK)
    sans.extend(inputs.apiserver_extra_sans)
    return _dedup(sans)


def etcd_member_sans(node: NodeIdentity) -> tuple[str, ...]:
    return _dedup([node.name, *node.addresses(), *LOOPBACK])


def _dedup(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _control_plane_leaves(inputs: PKIInputs, cp: NodeIdentity) -> list[LeafSpec]:
    n = cp.name
    local = inputs.local_apiserver_url(cp)
    endpoint = inputs.endpoint_url()
    return [
        LeafSpec(
            leaf_name("kubernetes/apiserver", n),
            CA_KUBERNETES,
            Subject("kube-apiserver", sans=apiserver_sans(inputs)),
            server_auth=True,
            client_auth=False,
            node=n,
        ),
        LeafSpec(
            leaf_name("kubernetes/apiserver-kubelet-client", n),
            CA_KUBERNETES,
            Subject("kube-apiserver-kubelet-client", (CLUSTER_ADMINS,)),
            server_auth=False,
            client_auth=True,
            node=n,
        ),
        LeafSpec(
            leaf_name("kubernetes/front-proxy-client", n),
            CA_FRONT_PROXY,
            Subject("front-proxy-client"),
            server_auth=False,
            client_auth=True,
            node=n,
        ),
        LeafSpec(
            leaf_name("kubernetes/apiserver-etcd-client", n),
            CA_ETCD,
            Subject("kube-apiserver-etcd-client"),
            server_auth=False,
            client_auth=True,
            node=n,
        ),
        _kubeconfig("admin", n, Subject("kubernetes-admin", (CLUSTER_ADMINS,)), endpoint),
        _kubeconfig("super-admin", n, Subject("kubernetes-super-admin", (SYSTEM_MASTERS,)), endpoint),
        _kubeconfig("controller-manager", n, Subject("system:kube-controller-manager"), local),
        _kubeconfig("scheduler", n, Subject("system:kube-scheduler"), local),
    ]


def _kubeconfig(kind: str, node: str, subject: Subject, server: str) -> LeafSpec:
    return LeafSpec(
        leaf_name(f"kubeconfig/{kind}", node),
        CA_KUBERNETES,
        subject,
        server_auth=False,
        client_auth=True,
        node=node,
        kubeconfig_server=server,
    )


def _etcd_leaves(member: NodeIdentity) -> list[LeafSpec]:
    n = member.name
    sans = etcd_member_sans(member)
    return [
        # The member (client-facing) cert also needs clientAuth: with client-cert-auth on, etcd's built-in
        # gRPC gateway dials the member itself presenting this certificate (kubeadm's etcd/server.crt too).
        LeafSpec(leaf_name("etcd/member", n), CA_ETCD, Subject(n, sans=sans), True, True, n),
        LeafSpec(leaf_name("etcd/peer", n), CA_ETCD, Subject(n, sans=sans), True, True, n),
        LeafSpec(leaf_name("etcd/etcdctl", n), CA_ETCD, Subject(f"etcdctl-{n}"), False, True, n),
    ]


def leaf_specs(inputs: PKIInputs) -> dict[str, LeafSpec]:
    """All leaves the cluster needs, by logical name, in a stable order (CPs, etcd, clients, kubelets)."""
    specs: list[LeafSpec] = []
    for cp in inputs.control_planes():
        specs.extend(_control_plane_leaves(inputs, cp))
    for member in inputs.etcd_members():
        specs.extend(_etcd_leaves(member))
    for name in dict.fromkeys(inputs.etcd_clients):
        specs.append(
            LeafSpec(
                leaf_name("etcd/client", name), CA_ETCD, Subject(f"etcd-client-{name}"), False, True, name
            )
        )
    for node in inputs.nodes:
        if node.is_kube_node:
            subject = Subject(f"system:node:{node.name}", ("system:nodes",))
            specs.append(_kubeconfig("kubelet", node.name, subject, inputs.endpoint_url()))
    return {spec.name: spec for spec in specs}
