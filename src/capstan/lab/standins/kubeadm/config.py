"""Reading the config file capstan wrote, refusing what real kubeadm refuses, and applying its defaults.

Accepted documents: ``kubeadm.k8s.io/v1beta4`` Init/Cluster/Join/Reset/UpgradeConfiguration plus the
``kubelet.config.k8s.io/v1beta1`` KubeletConfiguration and ``kubeproxy.config.k8s.io/v1alpha1``
KubeProxyConfiguration component configs. Anything else is refused as real kubeadm refuses it (an old
kubeadm API, an unregistered kind). Field-level checks live in ``validate.py``.

One deliberate strictness beyond real kubeadm: a missing ``kubernetesVersion`` is refused. Real kubeadm
would try to fetch ``stable-1.txt`` from the Internet and then fall back to its own version; a flow
that forgets to pin the version must fail in the lab rather than silently get the binary's version.
"""

from __future__ import annotations

import copy
import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from capstan.lab.standins.kubeadm import schema
from capstan.lab.standins.kubeadm.base import (
    DEFAULT_BIND_PORT,
    DEFAULT_CRI_SOCKET,
    DEFAULT_DNS_DOMAIN,
    DEFAULT_SERVICE_SUBNET,
    PKI_DIR,
    KubeadmError,
    warn,
)

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
KUBELET_API = "kubelet.config.k8s.io/v1beta1"
PROXY_API = "kubeproxy.config.k8s.io/v1alpha1"
COMPONENT_KINDS = {KUBELET_API: "KubeletConfiguration", PROXY_API: "KubeProxyConfiguration"}
_OLD_KUBEADM = {"kubeadm.k8s.io/v1alpha3", "kubeadm.k8s.io/v1beta1", "kubeadm.k8s.io/v1beta2"}
_OLD_KUBEADM_V1BETA3 = "kubeadm.k8s.io/v1beta3"

Doc = dict[str, Any]


@dataclass
class Documents:
    """The documents of one config file, by kind (each at most once)."""

    source: str
    kinds: dict[str, Doc] = field(default_factory=dict)

    def get(self, kind: str) -> Doc | None:
        return self.kinds.get(kind)

    @property
    def kubelet(self) -> Doc | None:
        return self.kinds.get("KubeletConfiguration")

    @property
    def proxy(self) -> Doc | None:
        return self.kinds.get("KubeProxyConfiguration")


def _gvk_error(api: object, kind: object, source: str) -> KubeadmError:
    if api in _OLD_KUBEADM or api == _OLD_KUBEADM_V1BETA3:
        return KubeadmError(
            f"{source}: your configuration file uses an old API spec: {api!r}. Please use a kubeadm "
            f"that supports it and run 'kubeadm config migrate --old-config old.yaml --new-config "
            f"new.yaml', which will write the new, similar spec using a newer API version ({KUBEADM_API})."
        )
    return KubeadmError(f'{source}: no kind "{kind}" is registered for version "{api}" in scheme "kubeadm"')


def parse_documents(text: str, source: str) -> Documents:
    """Split and classify a YAML stream; refuse unknown apiVersion/kind, type errors and duplicates."""
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise KubeadmError(f"{source}: error converting YAML to JSON: {exc}") from None
    docs = Documents(source)
    for i, doc in enumerate(raw):
        if not isinstance(doc, dict):
            raise KubeadmError(f"{source}: document {i} is not a mapping")
        api, kind = doc.get("apiVersion"), doc.get("kind")
        if not api or not kind:
            raise KubeadmError(
                f"{source}: invalid configuration for GroupVersionKind {api}, Kind={kind}: kind and "
                "apiVersion is mandatory information that must be specified"
            )
        if api == KUBEADM_API and kind in schema.KINDS:
            errors: list[str] = []
            warnings: list[str] = []
            schema.check(doc, schema.KINDS[str(kind)], "", errors, warnings)
            for w in warnings:
                warn(f"W0000 00:00:00 {source}: {kind}: {w}")
            if errors:
                raise KubeadmError(f"{source}: {kind}: {'; '.join(errors)}")
        elif COMPONENT_KINDS.get(str(api)) != kind:
            raise _gvk_error(api, kind, source)
        if kind in docs.kinds:
            raise KubeadmError(f"{source}: more than one {kind} document")
        docs.kinds[str(kind)] = doc
    return docs


def load_documents(config_path: str) -> Documents:
    try:
        text = Path(config_path).read_text()
    except OSError as exc:
        raise KubeadmError(f"unable to read config from {config_path!r}: {exc.strerror}") from None
    return parse_documents(text, config_path)


def only_kinds(docs: Documents, wanted: set[str]) -> None:
    """Real kubeadm ignores (with a warning) documents a command does not use."""
    for kind, doc in docs.kinds.items():
        if kind not in wanted:
            warn(
                "[config] WARNING: Ignored configuration document with GroupVersionKind "
                f"{doc['apiVersion']}, "
                f"Kind={kind}"
            )


def hostname() -> str:
    return socket.gethostname().lower()


def default_advertise_address() -> str:
    """The address of the interface holding the default route, as kubeadm picks it (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 9))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def default_cluster(cluster: Doc | None) -> Doc:
    """ClusterConfiguration with kubeadm's defaults filled in (what ``kubeadm-config`` stores)."""
    out = copy.deepcopy(cluster or {"apiVersion": KUBEADM_API, "kind": "ClusterConfiguration"})
    net = out.setdefault("networking", {})
    net.setdefault("serviceSubnet", DEFAULT_SERVICE_SUBNET)
    net.setdefault("dnsDomain", DEFAULT_DNS_DOMAIN)
    out.setdefault("certificatesDir", PKI_DIR)
    out.setdefault("imageRepository", "registry.k8s.io")
    out.setdefault("clusterName", "kubernetes")
    out.setdefault("encryptionAlgorithm", "RSA-2048")
    out.setdefault("certificateValidityPeriod", "8760h0m0s")
    out.setdefault("caCertificateValidityPeriod", "87600h0m0s")
    for comp in ("apiServer", "controllerManager", "scheduler"):
        out.setdefault(comp, {})
    out.setdefault("dns", {})
    out.setdefault("proxy", {})
    if "external" not in out.setdefault("etcd", {}):
        out["etcd"].setdefault("local", {"dataDir": "/var/lib/etcd"})
    return out


def default_node_registration(nreg: Doc | None, control_plane: bool) -> Doc:
    out = copy.deepcopy(nreg or {})
    out.setdefault("name", hostname())
    out.setdefault("criSocket", DEFAULT_CRI_SOCKET)
    out.setdefault("imagePullPolicy", "IfNotPresent")
    if control_plane and "taints" not in out:
        out["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    return out


def default_init(init: Doc | None) -> Doc:
    out = copy.deepcopy(init or {"apiVersion": KUBEADM_API, "kind": "InitConfiguration"})
    endpoint = out.setdefault("localAPIEndpoint", {})
    endpoint.setdefault("advertiseAddress", default_advertise_address())
    endpoint.setdefault("bindPort", DEFAULT_BIND_PORT)
    out["nodeRegistration"] = default_node_registration(out.get("nodeRegistration"), control_plane=True)
    out.setdefault(
        "bootstrapTokens",
        [{"groups": ["system:bootstrappers:kubeadm:default-node-token"], "ttl": "24h0m0s"}],
    )
    for token in out["bootstrapTokens"]:
        token.setdefault("ttl", "24h0m0s")
        token.setdefault("usages", ["signing", "authentication"])
        token.setdefault("groups", ["system:bootstrappers:kubeadm:default-node-token"])
    return out


def default_join(join: Doc) -> Doc:
    out = copy.deepcopy(join)
    control_plane = out.get("controlPlane") is not None
    out["nodeRegistration"] = default_node_registration(out.get("nodeRegistration"), control_plane)
    out.setdefault("caCertPath", f"{PKI_DIR}/ca.crt")
    disc = out.setdefault("discovery", {})
    if disc.get("bootstrapToken") and not disc.get("tlsBootstrapToken"):
        disc["tlsBootstrapToken"] = disc["bootstrapToken"].get("token", "")
    if control_plane:
        cp = out["controlPlane"] = out["controlPlane"] or {}
        endpoint = cp.setdefault("localAPIEndpoint", {})
        endpoint.setdefault("advertiseAddress", default_advertise_address())
        endpoint.setdefault("bindPort", DEFAULT_BIND_PORT)
    return out


def extra_args(component: Doc | None) -> list[tuple[str, str]]:
    """v1beta4 ``extraArgs``: a list of ``{name, value}`` (repeats allowed), in order."""
    return [(str(a["name"]), str(a.get("value", ""))) for a in (component or {}).get("extraArgs") or []]


def cluster_yaml(cluster: Doc) -> str:
    return yaml.safe_dump(cluster, sort_keys=True, default_flow_style=False)


@dataclass(frozen=True)
class NodeSetup:
    """What the control-plane phases need: the defaulted ClusterConfiguration and this node's identity."""

    cluster: Doc
    name: str
    advertise: str
    bind_port: int

    @property
    def version(self) -> str:
        return "v" + str(self.cluster["kubernetesVersion"]).removeprefix("v")

    @property
    def pki_dir(self) -> str:
        return str(self.cluster.get("certificatesDir") or PKI_DIR)

    @property
    def algorithm(self) -> str:
        return str(self.cluster.get("encryptionAlgorithm") or "RSA-2048")

    @property
    def local_url(self) -> str:
        host = f"[{self.advertise}]" if ":" in self.advertise else self.advertise
        return f"https://{host}:{self.bind_port}"

    @property
    def endpoint_url(self) -> str:
        """controlPlaneEndpoint when set (the load balancer), else this node's own apiserver."""
        endpoint = str(self.cluster.get("controlPlaneEndpoint") or "")
        if not endpoint:
            return self.local_url
        return (
            f"https://{endpoint}"
            if ":" in endpoint.lstrip("[").split("]")[-1]
            else (f"https://{endpoint}:{self.bind_port}")
        )

    @property
    def service_subnet(self) -> str:
        return str(self.cluster["networking"]["serviceSubnet"]).split(",")[0].strip()

    def service_ip(self, index: int = 1) -> str:
        """The n-th address of the service range (1 = the kubernetes Service, 10 = cluster DNS)."""
        return str(ipaddress.ip_network(self.service_subnet)[index])
