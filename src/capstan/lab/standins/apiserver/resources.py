"""The resources the API stand-in serves: one table, plus whatever CustomResourceDefinitions define.

Why one table: discovery, URL routing, etcd key layout, authorization messages and Table printing all
derive from it, so a new kind is one line here. The etcd paths are the real apiserver's (nodes live
under ``/registry/minions``, services under ``/registry/services/specs``), so an etcd snapshot of a
lab cluster looks like one of a real cluster, key for key (values are JSON, not protobuf).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update")


@dataclass(frozen=True)
class Resource:
    """One served resource in one group/version."""

    group: str
    version: str
    name: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    etcd: str = ""  # path under the etcd prefix; default: the resource name (groups as the real one)
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_on_create: str = "clear"  # "clear" | "keep" | "pending" (pods start Pending)
    generation: bool = False
    verbs: tuple[str, ...] = ALL_VERBS
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``pods`` or ``deployments.apps``: how the real apiserver names a resource in messages."""
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_path(self) -> str:
        return self.etcd or self.name

    def key(self, prefix: str, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"{prefix}/{self.storage_path}/{namespace}/{name}"
        return f"{prefix}/{self.storage_path}/{name}"

    def list_prefix(self, prefix: str, namespace: str) -> str:
        base = f"{prefix}/{self.storage_path}/"
        return base + f"{namespace}/" if self.namespaced and namespace else base


def _r(group: str, version: str, name: str, kind: str, namespaced: bool, *short: str, **kw: Any) -> Resource:
    return Resource(group, version, name, kind, namespaced, tuple(short), **kw)


_ALL = ("all",)
_STATUS = ("status",)

# (group, version, plural, kind, namespaced, short names..., options)
BUILTIN: tuple[Resource, ...] = (
    _r("", "v1", "namespaces", "Namespace", False, "ns",
       subresources=("status", "finalize"), status_on_create="keep"),
    _r("", "v1", "nodes", "Node", False, "no", etcd="minions", subresources=_STATUS, status_on_create="keep"),
    _r(
        "", "v1", "pods", "Pod", True, "po",
        subresources=("status", "eviction", "binding"), categories=_ALL, status_on_create="pending",
    ),
    _r("", "v1", "services", "Service", True, "svc",
       etcd="services/specs", subresources=_STATUS, categories=_ALL),
    _r("", "v1", "endpoints", "Endpoints", True, "ep", etcd="services/endpoints"),
    _r("", "v1", "configmaps", "ConfigMap", True, "cm"),
    _r("", "v1", "secrets", "Secret", True),
    _r("", "v1", "serviceaccounts", "ServiceAccount", True, "sa"),
    _r("", "v1", "events", "Event", True, "ev"),
    _r("", "v1", "limitranges", "LimitRange", True, "limits"),
    _r("", "v1", "resourcequotas", "ResourceQuota", True, "quota", subresources=_STATUS),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, "pv", subresources=_STATUS),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, "pvc", subresources=_STATUS),
    _r(
        "apps", "v1", "deployments", "Deployment", True, "deploy",
        subresources=_STATUS, categories=_ALL, generation=True,
    ),
    _r("apps", "v1", "daemonsets", "DaemonSet", True, "ds",
       subresources=_STATUS, categories=_ALL, generation=True),
    _r("apps", "v1", "replicasets", "ReplicaSet", True, "rs",
       subresources=_STATUS, categories=_ALL, generation=True),
    _r(
        "apps", "v1", "statefulsets", "StatefulSet", True, "sts",
        subresources=_STATUS, categories=_ALL, generation=True,
    ),
    _r("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    _r("batch", "v1", "jobs", "Job", True, subresources=_STATUS, categories=_ALL, generation=True),
    _r("batch", "v1", "cronjobs", "CronJob", True, "cj",
       subresources=_STATUS, categories=_ALL, generation=True),
    _r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, "hpa",
       subresources=_STATUS),
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, "pdb",
       subresources=_STATUS, generation=True),
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _r("coordination.k8s.io", "v1", "leases", "Lease", True),
    _r(
        "apiregistration.k8s.io", "v1", "apiservices", "APIService", False,
        etcd="apiregistration.k8s.io/apiservices", subresources=_STATUS,
    ),
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, "sc"),
    _r("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
    _r("storage.k8s.io", "v1", "csinodes", "CSINode", False),
    _r(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
        "crd", "crds",
        etcd="apiextensions.k8s.io/customresourcedefinitions", subresources=_STATUS, generation=True,
    ),
    _r(
        "certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False, "csr",
        subresources=("status", "approval"),
    ),
    _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, "pc"),
    _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, "netpol", generation=True),
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", True, "ing", etcd="ingress", subresources=_STATUS),
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _r("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
    _r("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
       "MutatingWebhookConfiguration", False),
    _r(
        "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration", False,
    ),
)  # fmt: skip

_BY_KEY: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.name): r for r in BUILTIN}
CRDS = _BY_KEY[("apiextensions.k8s.io", "v1", "customresourcedefinitions")]


def builtin(group: str, version: str, name: str) -> Resource | None:
    return _BY_KEY.get((group, version, name))


def core(name: str) -> Resource:
    """A core/v1 resource by plural name (for the stand-in's own code)."""
    return _BY_KEY[("", "v1", name)]


def by_name(group: str, name: str) -> Resource:
    """A built-in resource by group and plural (its only version)."""
    for r in BUILTIN:
        if r.group == group and r.name == name:
            return r
    raise KeyError(f"{name}.{group}")


def from_crd(crd: dict[str, Any]) -> list[Resource]:
    """The resources one CustomResourceDefinition serves (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    if not (isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)):
        return []
    out = []
    for v in spec.get("versions") or []:
        if not isinstance(v, dict) or not v.get("served", True) or not isinstance(v.get("name"), str):
            continue
        subs = tuple(sorted((v.get("subresources") or {}).keys()))
        out.append(
            Resource(
                group,
                v["name"],
                plural,
                kind,
                spec.get("scope", "Namespaced") == "Namespaced",
                tuple(names.get("shortNames") or ()),
                etcd=f"{group}/{plural}",
                subresources=subs,
                categories=tuple(names.get("categories") or ()),
                generation=True,
                extra={"singular": names.get("singular") or kind.lower()},
            )
        )
    return out
