"""RBAC: Roles, ClusterRoles and their bindings, evaluated as the real RBAC authorizer evaluates them.

Why a real evaluator: the objects kubeadm and capstan create (``kubeadm:kubeadm-certs``,
``kubeadm:get-nodes``, ``kubeadm:kubelet-bootstrap`` …) must be what grants access, so a flow that
forgets one fails here as it would on a cluster. Consulted after the fixed system policy in ``auth``.

The rules are the real ones: RBAC only ever allows. A ClusterRoleBinding grants its ClusterRole
everywhere; a RoleBinding grants its Role (same namespace) or a ClusterRole, only inside its own
namespace. Subjects are a ``User`` (by name), a ``Group`` (by membership) or a ``ServiceAccount``
(the user ``system:serviceaccount:<namespace>:<name>``; the binding's namespace when the subject names
none). A resource rule matches on verbs, apiGroups, resources (``*``, ``plural``, ``plural/sub`` or
``*/sub``) and, when given, resourceNames (so never a create or a list, which carry no name in the
URL); a non-resource rule (ClusterRoles only) on verbs and nonResourceURLs (exact or ``prefix*``).
SIMPLIFICATION: ClusterRole aggregation is not performed (an aggregated role counts with the rules
it has).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

Obj = dict[str, Any]
GROUP = "rbac.authorization.k8s.io"


class Source(Protocol):
    """Read access to the stored RBAC objects (plural = roles, rolebindings, clusterroles, …)."""

    def list(self, plural: str, namespace: str) -> list[Obj]: ...

    def get(self, plural: str, namespace: str, name: str) -> Obj | None: ...


class Who(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...


def subject_matches(subject: Obj, user: Who, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


def _has(values: Iterable[Any], wanted: str) -> bool:
    listed = list(values or [])
    return "*" in listed or wanted in listed


def resource_rule_allows(
    rule: Obj, verb: str, group: str, resource: str, subresource: str, name: str
) -> bool:
    if not _has(rule.get("verbs") or [], verb) or not _has(rule.get("apiGroups") or [], group):
        return False
    combined = f"{resource}/{subresource}" if subresource else resource
    resources = rule.get("resources") or []
    if not any(r == "*" or r == combined or (subresource and r == f"*/{subresource}") for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or name in names


def non_resource_rule_allows(rule: Obj, verb: str, path: str) -> bool:
    if not _has(rule.get("verbs") or [], verb):
        return False
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def _role_rules(source: Source, ref: Obj, binding_namespace: str) -> list[Obj]:
    """The rules of a binding's roleRef; a Role only from the binding's own namespace."""
    if ref.get("apiGroup") not in (GROUP, None):
        return []
    if ref.get("kind") == "ClusterRole":
        role = source.get("clusterroles", "", str(ref.get("name", "")))
    elif ref.get("kind") == "Role" and binding_namespace:
        role = source.get("roles", binding_namespace, str(ref.get("name", "")))
    else:
        role = None
    rules = (role or {}).get("rules") or []
    return [r for r in rules if isinstance(r, dict)]


def applicable_rules(source: Source, user: Who, namespace: str) -> Iterable[tuple[Obj, bool]]:
    """(rule, cluster-wide) for every rule bound to ``user`` that can apply in ``namespace``."""
    for binding in source.list("clusterrolebindings", ""):
        if (binding.get("roleRef") or {}).get("kind") != "ClusterRole":
            continue
        if any(subject_matches(s, user, "") for s in binding.get("subjects") or []):
            for rule in _role_rules(source, binding.get("roleRef") or {}, ""):
                yield rule, True
    if not namespace:
        return
    for binding in source.list("rolebindings", namespace):
        if any(subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
            for rule in _role_rules(source, binding.get("roleRef") or {}, namespace):
                yield rule, False


def allows(
    source: Source,
    user: Who,
    verb: str,
    *,
    group: str = "",
    resource: str = "",
    subresource: str = "",
    namespace: str = "",
    name: str = "",
    path: str = "",
) -> bool:
    """Does any binding grant this request? ``resource`` empty = a non-resource request for ``path``."""
    for rule, cluster_wide in applicable_rules(source, user, namespace):
        if resource:
            if resource_rule_allows(rule, verb, group, resource, subresource, name):
                return True
        elif cluster_wide and non_resource_rule_allows(rule, verb, path):
            return True
    return False


def _cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    }


def _rule(groups: str, resources: str, verbs: str) -> Obj:
    return {"apiGroups": groups.split(","), "resources": resources.split(), "verbs": verbs.split()}


DEFAULT_CLUSTER_ROLES: tuple[Obj, ...] = (
    _cluster_role(
        "cluster-admin",
        [_rule("*", "*", "*"), {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    ),
    _cluster_role(
        "system:node-bootstrapper",
        [_rule("certificates.k8s.io", "certificatesigningrequests", "create get list watch")],
    ),
    _cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        [_rule("certificates.k8s.io", "certificatesigningrequests/nodeclient", "create")],
    ),
    _cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        [_rule("certificates.k8s.io", "certificatesigningrequests/selfnodeclient", "create")],
    ),
    _cluster_role(
        "system:node-proxier",
        [
            _rule("", "endpoints services", "list watch"),
            _rule("", "nodes", "get list watch"),
            _rule(",events.k8s.io", "events", "create patch update"),
            _rule("discovery.k8s.io", "endpointslices", "list watch"),
        ],
    ),
)
"""The default ClusterRoles kubeadm's bindings refer to; the API server creates them at start, as the
real one creates its bootstrap policy (the other default roles are not modelled)."""

DEFAULT_CLUSTER_ROLE_BINDINGS: tuple[Obj, ...] = (
    {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": "cluster-admin",
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": "system:masters"}],
    },
)
