"""The cluster spec: pydantic v2 models of ``cluster.yaml``.

Every model forbids unknown keys, so a typo is an error naming its path instead of a silently ignored
setting. YAML keys are camelCase (Kubernetes style); Python attributes are snake_case. Defaults here are
the production defaults capstan promises (HA-friendly endpoint, RBAC, encryption at rest, audit log,
Pod Security Admission); ``docs``-style descriptions live on the fields so ``capstan spec-defaults`` and
the README can be generated from one place. Cross-field rules (odd etcd count, overlapping CIDRs,
supported matrix...) live in ``checks.py`` so that they can name the precise path they reject.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "capstan.dev/v1alpha1"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Node names are DNS-1123 subdomains (Kubespray inventories often use FQDNs).
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
_VERSION = r"^v?\d+\.\d+\.\d+$"

Role = Literal["control-plane", "etcd", "worker"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Model(BaseModel):
    """Base of every spec model: strict keys, camelCase aliases, snake_case attributes."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )


class Taint(Model):
    """A node taint; also accepted in kubectl's short form ``key[=value]:Effect``."""

    key: str = Field(min_length=1)
    value: str = ""
    effect: TaintEffect = "NoSchedule"

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: object) -> object:
        if isinstance(data, str):
            m = re.fullmatch(r"([^=:\s]+)(?:=([^:\s]*))?(?::(\w+))?", data)
            if not m:
                raise ValueError(f"taint {data!r} is not key[=value]:Effect")
            return {"key": m.group(1), "value": m.group(2) or "", "effect": m.group(3) or "NoSchedule"}
        return data

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


class Bastion(Model):
    """A jump host SSH connections go through."""

    address: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"


class SSH(Model):
    """Cluster-wide SSH settings; a host may override user and port."""

    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key_path: str | None = Field(default=None, description="private key file; or use a Prefect block")
    known_hosts_path: str | None = Field(
        default=None, description="capstan's own known_hosts for this cluster (default ~/.capstan/<name>)"
    )
    bastion: Bastion | None = None
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    command_timeout: float = Field(default=600.0, gt=0, le=86400)


class Host(Model):
    """One machine of the cluster and what it does."""

    name: str = Field(pattern=_DNS_SUBDOMAIN, max_length=253, description="node name (DNS-1123 subdomain)")
    address: str = Field(min_length=1, description="SSH address (ansible_host)")
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    ip: ipaddress.IPv4Address | None = Field(
        default=None, description="bind/advertise address; defaults to address when that is an IP"
    )
    access_ip: ipaddress.IPv4Address | None = Field(default=None, description="address peers use")
    roles: list[Role] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    etcd_member_name: str | None = Field(default=None, pattern=_DNS_SUBDOMAIN)
    bastion: Bastion | None = None

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[str]) -> list[str]:
        if len(set(roles)) != len(roles):
            raise ValueError("roles must not repeat")
        return roles

    @model_validator(mode="after")
    def _default_ip(self) -> Host:
        if self.ip is None:
            try:
                self.ip = ipaddress.IPv4Address(self.address)
            except ValueError:
                raise ValueError("ip is required when address is not an IPv4 address") from None
        if self.access_ip is None:
            self.access_ip = self.ip
        return self

    @property
    def bind_ip(self) -> str:
        return str(self.ip)

    @property
    def peer_ip(self) -> str:
        return str(self.access_ip or self.ip)

    @property
    def etcd_name(self) -> str:
        return self.etcd_member_name or self.name

    def has(self, role: Role) -> bool:
        return role in self.roles


ComponentName = Literal["apiserver", "controllerManager", "scheduler", "kubelet", "proxy"]


class ExtraArgs(Model):
    """Extra command-line flags per component, as ``flag: value`` without leading dashes."""

    apiserver: dict[str, str] = Field(default_factory=dict)
    controller_manager: dict[str, str] = Field(default_factory=dict)
    scheduler: dict[str, str] = Field(default_factory=dict)
    kubelet: dict[str, str] = Field(default_factory=dict)
    proxy: dict[str, str] = Field(default_factory=dict)


class KubeletSettings(Model):
    """Reserved resources, eviction and pod density (Kubespray's kube_reserved & co, on by default)."""

    max_pods: int = Field(default=110, ge=10, le=2500)
    kube_reserved: dict[str, str] = Field(default_factory=lambda: {"cpu": "100m", "memory": "256Mi"})
    system_reserved: dict[str, str] = Field(default_factory=lambda: {"cpu": "500m", "memory": "512Mi"})
    eviction_hard: dict[str, str] = Field(
        default_factory=lambda: {
            "memory.available": "100Mi",
            "nodefs.available": "10%",
            "imagefs.available": "15%",
            "nodefs.inodesFree": "5%",
        }
    )
    rotate_certificates: bool = True


class Kubernetes(Model):
    """Kubernetes version and cluster networking."""

    version: str = Field(default="", pattern=r"^$|" + _VERSION, description="empty = newest pinned")
    service_cidr: ipaddress.IPv4Network = Field(default=ipaddress.IPv4Network("10.233.0.0/18"))
    pod_cidr: ipaddress.IPv4Network = Field(default=ipaddress.IPv4Network("10.233.64.0/18"))
    node_prefix: int = Field(default=24, ge=16, le=28)
    cluster_domain: str = Field(default="cluster.local", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    apiserver_port: int = Field(default=6443, ge=1, le=65535)
    proxy_mode: Literal["ipvs", "iptables", "nftables"] = "ipvs"
    feature_gates: dict[str, bool] = Field(default_factory=dict)
    extra_args: ExtraArgs = Field(default_factory=ExtraArgs)
    kubelet: KubeletSettings = Field(default_factory=KubeletSettings)

    @field_validator("version")
    @classmethod
    def _strip_v(cls, v: str) -> str:
        return v[1:] if v.startswith("v") else v

    @field_validator("service_cidr", "pod_cidr", mode="before")
    @classmethod
    def _cidr_strict(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                ipaddress.IPv4Network(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an IPv4 network in CIDR form (host bits must be 0)") from None
        return v

    @property
    def first_service_ip(self) -> str:
        return str(self.service_cidr.network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(self.service_cidr.network_address + 3)


class EtcdBackup(Model):
    """Scheduled snapshots: where they live and how many are kept."""

    schedule: str = Field(default="0 2 * * *", description="cron, used by the nightly deployment")
    timezone: str = "UTC"
    retention: int = Field(default=7, ge=1, le=10000)
    dir: str = Field(default="/var/backups/etcd", pattern=r"^/")
    destination: str | None = Field(
        default=None,
        description="off-host copy: a directory on the orchestrator, or block:<slug>/<name>",
    )
    off_host_retention: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="snapshots of this cluster kept at the destination, newest by the time in their "
        "name (the copy just made always stays); null: the same as retention",
    )


class Etcd(Model):
    """External etcd on the etcd hosts, run by systemd with capstan-managed TLS."""

    deployment: Literal["host"] = "host"
    data_dir: str = Field(default="/var/lib/etcd", pattern=r"^/")
    quota_backend_bytes: int = Field(default=2 * 1024**3, ge=64 * 1024**2, le=8 * 1024**3)
    auto_compaction_retention: str = Field(default="8", pattern=r"^\d+[hm]?$")
    snapshot_count: int = Field(default=10000, ge=100)
    heartbeat_interval_ms: int = Field(default=250, ge=10, le=5000)
    election_timeout_ms: int = Field(default=5000, ge=50, le=50000)
    backup: EtcdBackup = Field(default_factory=EtcdBackup)


class ContainerRuntime(Model):
    """The CRI runtime on every node."""

    name: Literal["containerd", "cri-o"] = "containerd"
    registry_mirrors: dict[str, list[Annotated[str, Field(pattern=r"^https?://")]]] = Field(
        default_factory=dict, description="registry host -> mirror endpoints"
    )
    insecure_registries: list[str] = Field(default_factory=list)


class CalicoOptions(Model):
    encapsulation: Literal["vxlan", "ipip", "none"] = "vxlan"


class CiliumOptions(Model):
    tunnel: Literal["vxlan", "geneve", "disabled"] = "vxlan"


class FlannelOptions(Model):
    backend: Literal["vxlan", "host-gw", "wireguard"] = "vxlan"


class Network(Model):
    """The CNI plugin and its few options; MTU 0 lets the plugin detect it."""

    plugin: Literal["calico", "cilium", "flannel"] = "calico"
    mtu: int = Field(default=0, ge=0, le=9000)
    calico: CalicoOptions = Field(default_factory=CalicoOptions)
    cilium: CiliumOptions = Field(default_factory=CiliumOptions)
    flannel: FlannelOptions = Field(default_factory=FlannelOptions)

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, v: int) -> int:
        if v and v < 1280:
            raise ValueError("mtu must be 0 (auto) or at least 1280")
        return v


class NodeLocalDNS(Model):
    enabled: bool = True
    ip: ipaddress.IPv4Address = Field(default=ipaddress.IPv4Address("169.254.25.10"))


class DNSAutoscaler(Model):
    """cluster-proportional-autoscaler settings for CoreDNS replicas."""

    enabled: bool = True
    cores_per_replica: int = Field(default=256, ge=1)
    nodes_per_replica: int = Field(default=16, ge=1)
    min_replicas: int = Field(default=2, ge=1)


class DNS(Model):
    provider: Literal["coredns"] = "coredns"
    nodelocaldns: NodeLocalDNS = Field(default_factory=NodeLocalDNS)
    autoscaler: DNSAutoscaler = Field(default_factory=DNSAutoscaler)
    upstream_servers: list[ipaddress.IPv4Address] = Field(default_factory=list)


class VIP(Model):
    """keepalived VRRP settings for a virtual IP in front of the control planes."""

    interface: str = "eth0"
    router_id: int = Field(default=51, ge=1, le=255)


class ControlPlaneEndpoint(Model):
    """How nodes reach the apiservers.

    ``local-lb``: a TCP balancer on 127.0.0.1:<localLbPort> on every node, control planes included, with
    every apiserver as a backend; it is the cluster's endpoint everywhere. It listens on its own port
    (not the apiserver's) so that it can run beside an apiserver bound to 0.0.0.0, and so a control
    plane that is joining (its own apiserver not yet up) already reaches the API through it.
    ``external``: a load balancer you run, at ``address``. ``vip``: keepalived moves ``address``
    between the control-plane hosts.
    """

    mode: Literal["local-lb", "external", "vip"] = "local-lb"
    local_lb: Literal["haproxy", "nginx"] = "haproxy"
    local_lb_port: int = Field(default=6444, ge=1, le=65535)
    address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    vip: VIP = Field(default_factory=VIP)


class PodSecurity(Model):
    enforce: Literal["privileged", "baseline", "restricted"] = "baseline"
    audit: Literal["privileged", "baseline", "restricted"] = "restricted"
    warn: Literal["privileged", "baseline", "restricted"] = "restricted"
    exempt_namespaces: list[str] = Field(default_factory=lambda: ["kube-system"])


class EncryptionAtRest(Model):
    enabled: bool = True
    provider: Literal["secretbox", "aescbc", "aesgcm"] = "secretbox"
    resources: list[str] = Field(default_factory=lambda: ["secrets"])


class Audit(Model):
    enabled: bool = True
    path: str = Field(default="/var/log/kubernetes/audit/kube-apiserver-audit.log", pattern=r"^/")
    max_age_days: int = Field(default=30, ge=1)
    max_backups: int = Field(default=10, ge=1)
    max_size_mb: int = Field(default=100, ge=1)


class OIDC(Model):
    issuer_url: str = Field(pattern=r"^https://")
    client_id: str = Field(min_length=1)
    username_claim: str = "sub"
    groups_claim: str | None = None
    ca_file: str | None = None


class WebhookTokenAuth(Model):
    config_file: str = Field(pattern=r"^/", description="kubeconfig-format webhook config on the CPs")
    cache_ttl: str = "2m"


AuthorizationMode = Literal["Node", "RBAC", "Webhook", "ABAC", "AlwaysAllow"]


def _default_authz() -> list[AuthorizationMode]:
    return ["Node", "RBAC"]


class Security(Model):
    """API access control; RBAC, PSA, encryption at rest and audit logs on by default."""

    authorization_modes: list[AuthorizationMode] = Field(default_factory=_default_authz, min_length=1)
    pod_security: PodSecurity = Field(default_factory=PodSecurity)
    encryption_at_rest: EncryptionAtRest = Field(default_factory=EncryptionAtRest)
    audit: Audit = Field(default_factory=Audit)
    anonymous_auth: bool = False
    oidc: OIDC | None = None
    webhook_token_auth: WebhookTokenAuth | None = None


class Addon(Model):
    enabled: bool = False


class MetricsServer(Model):
    enabled: bool = True


class Addons(Model):
    metrics_server: MetricsServer = Field(default_factory=MetricsServer)
    local_path_provisioner: Addon = Field(default_factory=Addon)


ChecksumTable = dict[str, dict[str, dict[str, Annotated[str, Field(pattern=r"^(sha256:)?[0-9a-f]{64}$")]]]]


class Artifacts(Model):
    """Where binaries come from and how they reach the hosts."""

    mirror: str | None = Field(
        default=None, pattern=r"^https?://", description="files_repo-style base URL (<base>/<domain>/<path>)"
    )
    mode: Literal["push", "pull"] = Field(
        default="push", description="push: orchestrator downloads once and uploads; pull: hosts download"
    )
    extra_checksums: ChecksumTable = Field(
        default_factory=dict, description="artifact -> arch -> version -> sha256, for unlisted versions"
    )
    cache_dir: str = "~/.cache/capstan/artifacts"


class Drain(Model):
    grace_period_seconds: int = Field(default=300, ge=-1)
    timeout_seconds: int = Field(default=360, ge=1)
    retries: int = Field(default=3, ge=0)
    retry_delay_seconds: int = Field(default=10, ge=0)
    delete_empty_dir_data: bool = True


class Pause(Model):
    before_node: bool = False
    after_node: bool = False


class Upgrade(Model):
    """Rolling-upgrade policy: workers in batches (count or percent), drained through evictions."""

    worker_batch: int | Annotated[str, Field(pattern=r"^\d{1,3}(\.\d+)?%$")] = "20%"
    drain: Drain = Field(default_factory=Drain)
    pause: Pause = Field(default_factory=Pause)

    @field_validator("worker_batch")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("worker batch must be at least 1")
        if isinstance(v, str) and not 0 < float(v[:-1]) <= 100:
            raise ValueError("worker batch percent must be in (0, 100]")
        return v

    def batch_size(self, workers: int) -> int:
        """Workers per batch: a count, or a percent of ``workers`` rounded down, at least 1."""
        if workers <= 0:
            return 0
        if isinstance(self.worker_batch, int):
            return min(self.worker_batch, workers)
        from decimal import Decimal

        size = int(Decimal(self.worker_batch[:-1]) * workers / 100)
        return max(1, min(size, workers))


class PKISettings(Model):
    key_algorithm: Literal["ecdsa-p256", "rsa-2048"] = "ecdsa-p256"
    leaf_validity_days: int = Field(default=365, ge=1, le=3650)
    ca_validity_days: int = Field(default=3650, ge=30, le=36500)
    apiserver_extra_sans: list[str] = Field(default_factory=list)
    renew_within_days: int = Field(default=30, ge=0)


class OSSettings(Model):
    """How hosts are prepared."""

    shared_kernel: bool = Field(
        default=False,
        description="hosts are containers sharing one kernel (LXC/LXD, capstan's lab): only the "
        "namespaced net.* sysctls are set at runtime; the others are persisted for real machines only",
    )
    max_clock_skew_seconds: float = Field(default=10.0, gt=0, description="refuse hosts whose clock is off")


class ClusterSpecBody(Model):
    """``spec:`` of a Cluster."""

    hosts: list[Host] = Field(min_length=1)
    ssh: SSH = Field(default_factory=SSH)
    os: OSSettings = Field(default_factory=OSSettings)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)
    etcd: Etcd = Field(default_factory=Etcd)
    container_runtime: ContainerRuntime = Field(default_factory=ContainerRuntime)
    network: Network = Field(default_factory=Network)
    dns: DNS = Field(default_factory=DNS)
    control_plane_endpoint: ControlPlaneEndpoint = Field(default_factory=ControlPlaneEndpoint)
    security: Security = Field(default_factory=Security)
    addons: Addons = Field(default_factory=Addons)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    upgrade: Upgrade = Field(default_factory=Upgrade)
    pki: PKISettings = Field(default_factory=PKISettings)


class Metadata(Model):
    name: str = Field(pattern=_DNS_LABEL)
    labels: dict[str, str] = Field(default_factory=dict)


class Cluster(Model):
    """A whole ``cluster.yaml`` document."""

    api_version: Literal["capstan.dev/v1alpha1"]
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpecBody

    # Convenience views used by plan, render and flows.
    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def hosts(self) -> list[Host]:
        return self.spec.hosts

    def with_role(self, role: Role) -> list[Host]:
        return [h for h in self.spec.hosts if role in h.roles]

    @property
    def control_planes(self) -> list[Host]:
        return self.with_role("control-plane")

    @property
    def etcd_hosts(self) -> list[Host]:
        return self.with_role("etcd")

    @property
    def workers(self) -> list[Host]:
        """Hosts that are not control planes (they join as plain nodes)."""
        return [h for h in self.spec.hosts if "control-plane" not in h.roles and "worker" in h.roles]

    @property
    def nodes(self) -> list[Host]:
        """Hosts that run a kubelet (control planes and workers; etcd-only hosts do not)."""
        return [h for h in self.spec.hosts if "control-plane" in h.roles or "worker" in h.roles]

    def host(self, name: str) -> Host:
        for h in self.spec.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def endpoint(self) -> tuple[str, int]:
        """The address and port kubelets and kubeconfigs use to reach the apiservers."""
        cpe = self.spec.control_plane_endpoint
        if cpe.mode == "local-lb":
            return "127.0.0.1", cpe.local_lb_port
        assert cpe.address is not None  # enforced by checks
        return cpe.address, cpe.port or self.spec.kubernetes.apiserver_port
