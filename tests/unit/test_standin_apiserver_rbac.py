"""The RBAC evaluator of the kube-apiserver stand-in, on in-memory RBAC objects (no server).

What is checked is what the real RBAC authorizer decides: bindings grant only inside their scope,
a RoleBinding may grant a ClusterRole in its namespace, resourceNames never match a create or a list,
subresources match only when named, and non-resource URLs only through ClusterRoleBindings.
"""

from __future__ import annotations

from typing import Any

from capstan.lab.standins.apiserver import rbac
from capstan.lab.standins.apiserver.auth import User

G = rbac.GROUP


class Objects:
    """RBAC objects by (plural, namespace, name)."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        plural = {"Role": "roles", "RoleBinding": "rolebindings", "ClusterRole": "clusterroles"}
        plural["ClusterRoleBinding"] = "clusterrolebindings"
        self.store = {
            (plural[o["kind"]], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs
        }

    def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return [o for (p, ns, _), o in self.store.items() if p == plural and ns == namespace]

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get((plural, namespace, name))


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(
    kind: str, name: str, ref_kind: str, ref: str, subjects: list[dict[str, Any]], namespace: str = ""
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref},
        "subjects": subjects,
    }


def group(name: str) -> dict[str, str]:
    return {"apiGroup": G, "kind": "Group", "name": name}


ALICE = User("alice", ("dev", "system:authenticated"))
GET_CM = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}


def test_a_role_binding_grants_only_in_its_namespace() -> None:
    src = Objects(
        role("ClusterRole", "reader", [GET_CM]),
        binding("RoleBinding", "b", "ClusterRole", "reader", [group("dev")], namespace="team"),
    )
    assert rbac.allows(src, ALICE, "get", resource="configmaps", namespace="team", name="x")
    assert not rbac.allows(src, ALICE, "get", resource="configmaps", namespace="other", name="x")
    assert not rbac.allows(src, ALICE, "list", resource="configmaps", namespace="team")
    assert not rbac.allows(src, ALICE, "get", group="apps", resource="configmaps", namespace="team", name="x")


def test_a_role_is_found_only_in_the_bindings_namespace() -> None:
    src = Objects(
        role("Role", "reader", [GET_CM], namespace="elsewhere"),
        binding("RoleBinding", "b", "Role", "reader", [group("dev")], namespace="team"),
        binding("ClusterRoleBinding", "c", "Role", "reader", [group("dev")]),  # invalid: ignored
    )
    assert not rbac.allows(src, ALICE, "get", resource="configmaps", namespace="team", name="x")
    assert not rbac.allows(src, ALICE, "get", resource="configmaps", namespace="elsewhere", name="x")


def test_cluster_role_bindings_grant_everywhere_and_missing_roles_grant_nothing() -> None:
    src = Objects(
        role("ClusterRole", "reader", [GET_CM]),
        binding("ClusterRoleBinding", "b", "ClusterRole", "reader", [{"kind": "User", "name": "alice"}]),
        binding("ClusterRoleBinding", "dangling", "ClusterRole", "gone", [group("system:authenticated")]),
    )
    assert rbac.allows(src, ALICE, "get", resource="configmaps", namespace="any", name="x")
    assert not rbac.allows(
        src, User("bob", ("system:authenticated",)), "get", resource="configmaps", name="x"
    )


def test_resource_names_subresources_and_wildcards() -> None:
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kubeadm-certs"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["*/status"], "verbs": ["*"]},
    ]
    src = Objects(
        role("Role", "r", rules, namespace="kube-system"),
        binding("RoleBinding", "b", "Role", "r", [group("dev")], namespace="kube-system"),
    )

    def may(verb: str, res: str, sub: str = "", name: str = "", grp: str = "") -> bool:
        return rbac.allows(
            src, ALICE, verb, group=grp, resource=res, subresource=sub, namespace="kube-system", name=name
        )

    assert may("get", "secrets", name="kubeadm-certs") and not may("get", "secrets", name="other")
    assert not may("create", "secrets")  # a create carries no name to match resourceNames
    assert may("create", "pods", "eviction", "p") and not may("create", "pods", name="p")
    assert may("update", "deployments", "status", "d", "apps") and not may(
        "update", "deployments", "", "d", "apps"
    )


def test_service_account_subjects_default_to_the_bindings_namespace() -> None:
    src = Objects(
        role("ClusterRole", "reader", [GET_CM]),
        binding(
            "RoleBinding", "b", "ClusterRole", "reader", [{"kind": "ServiceAccount", "name": "bot"}], "ns1"
        ),
    )
    bot = User("system:serviceaccount:ns1:bot", ("system:serviceaccounts", "system:authenticated"))
    other = User("system:serviceaccount:ns2:bot", ("system:serviceaccounts", "system:authenticated"))
    assert rbac.allows(src, bot, "get", resource="configmaps", namespace="ns1", name="x")
    assert not rbac.allows(src, other, "get", resource="configmaps", namespace="ns1", name="x")


def test_non_resource_urls_only_through_cluster_role_bindings() -> None:
    metrics = {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}
    src = Objects(
        role("ClusterRole", "m", [metrics]),
        binding("ClusterRoleBinding", "b", "ClusterRole", "m", [group("dev")]),
    )
    assert rbac.allows(src, ALICE, "get", path="/metrics")
    assert rbac.allows(src, ALICE, "get", path="/debug/pprof")
    assert not rbac.allows(src, ALICE, "post", path="/metrics")
    assert not rbac.allows(src, ALICE, "get", path="/metricsx")
