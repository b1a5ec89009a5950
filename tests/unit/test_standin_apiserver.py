"""The kube-apiserver stand-in's HTTP semantics: what it refuses, conflicts, evictions, authentication.

Runs the real TLS server and request layer in-process on ``MemoryStorage``; the same layers on the
real etcd (and with the real kubectl) are in ``test_standin_apiserver_etcd.py``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_standin_apiserver_support import Api, Pki, make_pki, node_obj, pod_obj, running, token_secret

from capstan.lab.standins.apiserver import main
from capstan.lab.standins.common.pki import Pem
from capstan.lab.standins.kubeadm import objects

NS = "/api/v1/namespaces"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
MERGE = "application/merge-patch+json"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def api(pki: Pki) -> Iterator[Api]:
    server = Api(pki, authorization_mode="Node,RBAC", bootstrap_tokens=True)
    yield server
    server.close()


@pytest.fixture
def admin(pki: Pki) -> Pem:
    return pki.client("kubernetes-admin", "system:masters")


# ---- flags -------------------------------------------------------------------------------------


def _flags(pki: Pki) -> dict[str, str]:
    d = pki.dir
    sa = d / "sa.key"
    sa.write_bytes(pki.ca.key)
    return {
        "tls-cert-file": str(d / "apiserver.crt"),
        "tls-private-key-file": str(d / "apiserver.key"),
        "client-ca-file": str(d / "ca.crt"),
        "etcd-servers": "https://127.0.0.1:1",
        "etcd-cafile": str(d / "ca.crt"),
        "etcd-certfile": str(d / "apiserver.crt"),
        "etcd-keyfile": str(d / "apiserver.key"),
        "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
        "service-account-signing-key-file": str(sa),
        "secure-port": "0",
    }


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("tls-cert-file", "--tls-cert-file is required"),
        ("tls-private-key-file", "--tls-private-key-file is required"),
        ("client-ca-file", "--client-ca-file is required"),
        ("etcd-servers", "--etcd-servers must be specified"),
        ("etcd-cafile", "--etcd-cafile is required"),
        ("etcd-certfile", "--etcd-certfile is required"),
        ("etcd-keyfile", "--etcd-keyfile is required"),
        ("service-account-issuer", "service-account-issuer is a required flag"),
    ],
)
def test_refuses_to_start_without_required_flags(
    pki: Pki, missing: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = _flags(pki)
    del flags[missing]
    assert main([f"--{k}={v}" for k, v in flags.items()], "1.36.4") == 1
    assert message in capsys.readouterr().err


def test_refuses_unreadable_files_and_bad_values(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value, message in [
        ("client-ca-file", "/nonexistent/ca.crt", "does not exist"),
        ("secure-port", "70000", "must be between 1 and 65535"),
        ("bind-address", "not-an-ip", "not an IP address"),
        ("authorization-mode", "Webhook", "only"),
    ]:
        flags = {**_flags(pki), key: value}
        assert main([f"--{k}={v}" for k, v in flags.items()], "1.36.4") == 1
        assert message in capsys.readouterr().err


def test_version_flag_and_unknown_flags(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"], "1.36.4") == 0
    assert capsys.readouterr().out.strip() == "Kubernetes v1.36.4"
    assert main(["positional"], "1.36.4") == 1


# ---- versions, health, discovery --------------------------------------------------------------


def test_public_paths_are_anonymous_and_the_rest_needs_credentials(api: Api, admin: Pem) -> None:
    assert api.call("GET", "/healthz") == (200, "ok")
    code, version = api.call("GET", "/version")
    assert code == 200 and version["gitVersion"] == "v1.36.4" and version["minor"] == "36"
    code, body = api.call("GET", "/api/v1/nodes")
    assert code == 401 and body["reason"] == "Unauthorized"
    assert api.call("GET", "/api/v1/nodes", cred=admin)[0] == 200


def test_readyz_follows_storage(api: Api) -> None:
    assert api.call("GET", "/readyz") == (200, "ok")
    api.storage.up = False
    assert api.call("GET", "/readyz")[0] == 500


def test_client_certificate_from_another_ca_is_refused(api: Api, pki: Pki) -> None:
    stranger = pki.client("kubernetes-admin", "system:masters", other=True)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        api.call("GET", "/api/v1/nodes", cred=stranger)


def test_discovery_lists_groups_and_subresources(api: Api, admin: Pem) -> None:
    _, groups = api.call("GET", "/apis", cred=admin)
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "policy", "rbac.authorization.k8s.io", "coordination.k8s.io"} <= names
    _, core = api.call("GET", "/api/v1", cred=admin)
    entries = {r["name"]: r for r in core["resources"]}
    assert entries["pods/eviction"]["kind"] == "Eviction" and entries["pods/eviction"]["group"] == "policy"
    assert entries["nodes"]["namespaced"] is False and "watch" not in entries["nodes"]["verbs"]


# ---- create, update, conflicts -----------------------------------------------------------------


def test_create_existing_is_409_already_exists(api: Api, admin: Pem) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    assert api.call("POST", f"{NS}/default/configmaps", cm, admin)[0] == 201
    code, body = api.call("POST", f"{NS}/default/configmaps", cm, admin)
    assert code == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "c" already exists'


def test_stale_resource_version_is_409_conflict(api: Api, admin: Pem) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    _, created = api.call("POST", f"{NS}/default/configmaps", cm, admin)
    first = dict(created, data={"a": "2"})
    code, updated = api.call("PUT", f"{NS}/default/configmaps/c", first, admin)
    assert code == 200 and int(updated["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    stale = dict(created, data={"a": "3"})
    code, body = api.call("PUT", f"{NS}/default/configmaps/c", stale, admin)
    assert code == 409 and body["reason"] == "Conflict" and "has been modified" in body["message"]
    assert api.call("GET", f"{NS}/default/configmaps/c", cred=admin)[1]["data"] == {"a": "2"}
    patch = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"a": "4"}}
    assert api.call("PATCH", f"{NS}/default/configmaps/c", patch, admin, content_type=MERGE)[0] == 409


def test_metadata_is_set_by_the_server(api: Api, admin: Pem) -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "uid": "forged"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    code, created = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deploy, admin)
    assert code == 201
    meta = created["metadata"]
    assert meta["uid"] != "forged" and meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert created["spec"]["replicas"] == 1
    patch = {"spec": {"replicas": 3}}
    _, patched = api.call(
        "PATCH", "/apis/apps/v1/namespaces/default/deployments/d", patch, admin, content_type=MERGE
    )
    assert patched["metadata"]["generation"] == 2 and patched["metadata"]["uid"] == meta["uid"]


def test_workload_selector_must_match_template(api: Api, admin: Pem) -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}},
        },
    }
    code, body = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", bad, admin)
    assert code == 422 and "does not match template" in body["message"]


def test_namespaced_create_needs_the_namespace(api: Api, admin: Pem) -> None:
    code, body = api.call("POST", f"{NS}/nowhere/pods", pod_obj("p"), admin)
    assert code == 404 and body["message"] == 'namespaces "nowhere" not found'


def test_namespace_delete_removes_its_objects(api: Api, admin: Pem) -> None:
    api.call("POST", NS, {"metadata": {"name": "team"}}, admin)
    api.call("POST", f"{NS}/team/pods", pod_obj("p"), admin)
    api.call("POST", f"{NS}/team/configmaps", {"metadata": {"name": "c"}}, admin)
    assert api.call("DELETE", f"{NS}/team", cred=admin)[0] == 200
    assert api.call("GET", f"{NS}/team/pods/p", cred=admin)[0] == 404
    assert api.registry.storage.list("/registry/configmaps/team/")[0] == []
    code, body = api.call("DELETE", f"{NS}/kube-system", cred=admin)
    assert code == 403 and "may not be deleted" in body["message"]


def test_list_selectors_and_cross_namespace_list(api: Api, admin: Pem) -> None:
    api.call("POST", NS, {"metadata": {"name": "other"}}, admin)
    api.call("POST", f"{NS}/default/pods", pod_obj("a", {"app": "web"}, "n1"), admin)
    api.call("POST", f"{NS}/default/pods", pod_obj("b", {"app": "db"}, "n2"), admin)
    api.call("POST", f"{NS}/other/pods", pod_obj("c", {"app": "web"}, "n2"), admin)
    _, all_pods = api.call("GET", "/api/v1/pods", cred=admin)
    assert sorted(p["metadata"]["name"] for p in all_pods["items"]) == ["a", "b", "c"]
    _, web = api.call("GET", "/api/v1/pods?labelSelector=app%3Dweb", cred=admin)
    assert sorted(p["metadata"]["name"] for p in web["items"]) == ["a", "c"]
    _, on_n2 = api.call("GET", f"{NS}/default/pods?fieldSelector=spec.nodeName%3Dn2", cred=admin)
    assert [p["metadata"]["name"] for p in on_n2["items"]] == ["b"]
    _, named = api.call("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dc", cred=admin)
    assert [p["metadata"]["namespace"] for p in named["items"]] == ["other"]
    code, _ = api.call("GET", "/api/v1/pods?watch=true", cred=admin)
    assert code == 405


# ---- pods, nodes, eviction ---------------------------------------------------------------------


def test_pod_node_is_set_by_binding_only(api: Api, admin: Pem) -> None:
    _, pod = api.call("POST", f"{NS}/default/pods", pod_obj("p"), admin)
    assert pod["status"]["phase"] == "Pending"
    moved = dict(pod, spec=dict(pod["spec"], nodeName="n1"))
    code, body = api.call("PUT", f"{NS}/default/pods/p", moved, admin)
    assert code == 422 and "pod updates may not change fields" in body["message"]
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"},
    }
    assert api.call("POST", f"{NS}/default/pods/p/binding", binding, admin)[0] == 201
    assert api.call("GET", f"{NS}/default/pods/p", cred=admin)[1]["spec"]["nodeName"] == "n1"
    code, body = api.call("POST", f"{NS}/default/pods/p/binding", binding, admin)
    assert code == 409 and "already assigned" in body["message"]


def test_status_subresource_is_separate(api: Api, admin: Pem) -> None:
    api.call("POST", "/api/v1/nodes", node_obj("n1"), admin)
    cordon = {"spec": {"unschedulable": True}, "status": {"phase": "ignored"}}
    _, node = api.call("PATCH", "/api/v1/nodes/n1", cordon, admin, content_type=MERGE)
    assert node["spec"]["unschedulable"] is True and "phase" not in node["status"]
    status = {"status": {"nodeInfo": {"kubeletVersion": "v1.36.5"}}, "spec": {"unschedulable": False}}
    _, node = api.call("PATCH", "/api/v1/nodes/n1/status", status, admin, content_type=MERGE)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.5" and node["spec"]["unschedulable"] is True


def _web(api: Api, admin: Pem, pdb_spec: dict[str, object], ready: tuple[bool, ...] = (True, True)) -> None:
    """Pods of a ReplicaSet (replicas = number of pods) under one budget."""
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-rs"},
        "spec": {
            "replicas": len(ready),
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}},
        },
    }
    _, rs = api.call("POST", "/apis/apps/v1/namespaces/default/replicasets", rs, admin)
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-rs",
        "uid": rs["metadata"]["uid"],
        "controller": True,
    }
    for i, r in enumerate(ready):
        pod = pod_obj(f"web-{i}", {"app": "web"}, "n1")
        pod["metadata"]["ownerReferences"] = [owner]
        api.call("POST", f"{NS}/default/pods", pod, admin)
        running(api, admin, "default", f"web-{i}", r)
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb"},
        "spec": pdb_spec,
    }
    assert api.call("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb, admin)[0] == 201


def _evict(api: Api, cred: Pem, name: str) -> tuple[int, dict[str, object]]:
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
    }
    return api.call("POST", f"{NS}/default/pods/{name}/eviction", eviction, cred)


def test_eviction_that_would_break_a_pdb_is_429(api: Api, admin: Pem) -> None:
    _web(api, admin, {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})
    code, body = _evict(api, admin, "web-0")
    assert code == 429 and body["reason"] == "TooManyRequests"
    message = str(body["message"])
    assert message.startswith("Cannot evict pod as it would violate the pod's disruption budget.")
    assert "web-pdb needs 2 healthy pods and has 2 currently" in message
    assert api.call("GET", f"{NS}/default/pods/web-0", cred=admin)[0] == 200


@pytest.mark.parametrize(
    "spec", [{"minAvailable": 1}, {"maxUnavailable": 1}, {"minAvailable": "50%"}, {"maxUnavailable": "50%"}]
)
def test_eviction_allowed_when_the_budget_permits(api: Api, admin: Pem, spec: dict[str, object]) -> None:
    _web(api, admin, {**spec, "selector": {"matchLabels": {"app": "web"}}})
    code, body = _evict(api, admin, "web-0")
    assert code == 201 and body["status"] == "Success"
    assert api.call("GET", f"{NS}/default/pods/web-0", cred=admin)[0] == 404
    code, _ = _evict(api, admin, "web-1")
    assert code == 429  # the last healthy pod is protected


def test_unready_pod_may_be_evicted_while_the_budget_holds(api: Api, admin: Pem) -> None:
    _web(api, admin, {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}, (True, True, False))
    assert _evict(api, admin, "web-2")[0] == 201
    assert _evict(api, admin, "web-1")[0] == 429


# ---- authentication and authorization ---------------------------------------------------------


def _kubeadm_rbac(api: Api, admin: Pem) -> None:
    """The Roles and bindings ``kubeadm init`` creates for joins (bootstrap-token phase)."""
    for obj in objects.bootstrap_rbac():
        plural = {"Role": "roles", "RoleBinding": "rolebindings"}.get(obj["kind"], obj["kind"].lower() + "s")
        ns = obj["metadata"].get("namespace")
        where = f"{RBAC}/namespaces/{ns}/{plural}" if ns else f"{RBAC}/{plural}"
        code, body = api.call("POST", where, obj, admin)
        assert code == 201, body


def test_bootstrap_token_works_only_while_its_secret_exists(api: Api, admin: Pem) -> None:
    bearer = {"Authorization": "Bearer abcdef.0123456789abcdef"}
    _kubeadm_rbac(api, admin)
    assert api.call("GET", "/api/v1/nodes/x", headers=bearer)[0] == 401
    secret = token_secret(
        "abcdef",
        "0123456789abcdef",
        **{"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"},
    )
    assert api.call("POST", f"{NS}/kube-system/secrets", secret, admin)[0] == 201
    assert api.call("GET", "/api/v1/nodes/x", headers=bearer)[0] == 404  # kubeadm:get-nodes; just absent
    assert (
        api.call("GET", "/api/v1/nodes/x", headers={"Authorization": "Bearer abcdef.0123456789abcdeX"})[0]
        == 401
    )
    code, body = api.call("DELETE", f"{NS}/default", headers=bearer)
    assert code == 403 and 'User "system:bootstrap:abcdef"' in body["message"]
    api.call("DELETE", f"{NS}/kube-system/secrets/bootstrap-token-abcdef", cred=admin)
    assert api.call("GET", "/api/v1/nodes/x", headers=bearer)[0] == 401


def test_bootstrap_token_rights_come_from_rbac_bindings(api: Api, admin: Pem) -> None:
    """A token in kubeadm's group may get nodes and post CSRs only through kubeadm's bindings, and may
    never create a Node: kubelets register with the certificate the CSR gave them."""
    bearer = {"Authorization": "Bearer abcdef.0123456789abcdef"}
    secret = token_secret(
        "abcdef",
        "0123456789abcdef",
        **{"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"},
    )
    api.call("POST", f"{NS}/kube-system/secrets", secret, admin)
    csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    assert api.call("GET", "/api/v1/nodes/x", headers=bearer)[0] == 403
    assert api.call("GET", csrs, headers=bearer)[0] == 403
    _kubeadm_rbac(api, admin)
    assert api.call("GET", "/api/v1/nodes/x", headers=bearer)[0] == 404
    assert api.call("GET", csrs, headers=bearer)[0] == 200  # system:node-bootstrapper, a default role
    assert api.call("POST", "/api/v1/nodes", node_obj("w1"), headers=bearer)[0] == 403
    assert api.call("GET", "/api/v1/nodes", headers=bearer)[0] == 403  # kubeadm:get-nodes is "get" only


def test_bootstrap_token_reads_kubeadm_certs_through_kubeadms_role(api: Api, admin: Pem) -> None:
    bearer = {"Authorization": "Bearer abcdef.0123456789abcdef"}
    group = "system:bootstrappers:kubeadm:default-node-token"
    api.call(
        "POST",
        f"{NS}/kube-system/secrets",
        token_secret("abcdef", "0123456789abcdef", **{"auth-extra-groups": group}),
        admin,
    )
    certs = {"metadata": {"name": "kubeadm-certs"}, "data": {"ca.crt": "eA=="}}
    other = {"metadata": {"name": "other"}, "data": {"x": "eA=="}}
    for secret in (certs, other):
        api.call("POST", f"{NS}/kube-system/secrets", secret, admin)
    assert api.call("GET", f"{NS}/kube-system/secrets/kubeadm-certs", headers=bearer)[0] == 403
    for obj in objects.kubeadm_certs_rbac():
        plural = "roles" if obj["kind"] == "Role" else "rolebindings"
        assert api.call("POST", f"{RBAC}/namespaces/kube-system/{plural}", obj, admin)[0] == 201
    assert api.call("GET", f"{NS}/kube-system/secrets/kubeadm-certs", headers=bearer)[0] == 200
    assert api.call("GET", f"{NS}/kube-system/secrets/other", headers=bearer)[0] == 403  # resourceNames
    assert api.call("GET", f"{NS}/kube-system/secrets", headers=bearer)[0] == 403  # a list has no name


def test_expired_or_unusable_bootstrap_tokens_are_refused(api: Api, admin: Pem) -> None:
    expired = token_secret("aaaaaa", "0123456789abcdef", expiration="2020-01-01T00:00:00Z")
    unusable = token_secret("bbbbbb", "0123456789abcdef", **{"usage-bootstrap-authentication": "false"})
    for s in (expired, unusable):
        api.call("POST", f"{NS}/kube-system/secrets", s, admin)
    for token in ("aaaaaa.0123456789abcdef", "bbbbbb.0123456789abcdef"):
        assert api.call("GET", "/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})[0] == 401


def test_anonymous_may_read_cluster_info_only_once_kubeadm_allowed_it(api: Api, admin: Pem) -> None:
    api.call("POST", f"{NS}/kube-public/configmaps", {"metadata": {"name": "cluster-info"}}, admin)
    api.call("POST", f"{NS}/kube-public/configmaps", {"metadata": {"name": "other"}}, admin)
    assert api.call("GET", f"{NS}/kube-public/configmaps/cluster-info")[0] == 401
    _kubeadm_rbac(api, admin)  # kubeadm:bootstrap-signer-clusterinfo, bound to system:anonymous
    assert api.call("GET", f"{NS}/kube-public/configmaps/cluster-info")[0] == 200
    assert api.call("GET", f"{NS}/kube-public/configmaps/other")[0] == 401


def test_nodes_may_write_only_their_own_node(api: Api, pki: Pki, admin: Pem) -> None:
    kubelet = pki.client("system:node:n1", "system:nodes")
    assert api.call("POST", "/api/v1/nodes", node_obj("n3"), kubelet)[0] == 403  # the name is in the body
    assert api.call("POST", "/api/v1/nodes", node_obj("n1"), kubelet)[0] == 201
    api.call("POST", "/api/v1/nodes", node_obj("n2"), admin)
    patch = {"metadata": {"labels": {"x": "y"}}}
    assert api.call("PATCH", "/api/v1/nodes/n1/status", patch, kubelet, content_type=MERGE)[0] == 200
    code, body = api.call("PATCH", "/api/v1/nodes/n2", patch, kubelet, content_type=MERGE)
    assert code == 403 and body["reason"] == "Forbidden"
    assert api.call("DELETE", "/api/v1/nodes/n1", cred=kubelet)[0] == 403
    assert api.call("GET", f"{NS}/kube-system/secrets", cred=pki.client("someone"))[0] == 403


def test_nodes_create_and_renew_only_their_own_lease(api: Api, pki: Pki) -> None:
    kubelet = pki.client("system:node:n1", "system:nodes")
    leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"

    def lease(name: str) -> dict[str, object]:
        return {"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}

    assert api.call("POST", leases, lease("n1"), kubelet)[0] == 201
    assert api.call("POST", leases, lease("n2"), kubelet)[0] == 403
    renew = {"spec": {"renewTime": "2030-01-01T00:00:00.000000Z"}}
    assert api.call("PATCH", f"{leases}/n1", renew, kubelet, content_type=MERGE)[0] == 200
    other_ns = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    assert api.call("POST", other_ns, lease("n1"), kubelet)[0] == 403


def test_rbac_objects_created_through_the_api_take_effect(api: Api, pki: Pki, admin: Pem) -> None:
    alice = pki.client("alice", "dev")
    role = {
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    binding = {
        "metadata": {"name": "dev-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dev"}],
    }
    assert api.call("GET", f"{NS}/default/configmaps", cred=alice)[0] == 403
    assert api.call("POST", f"{RBAC}/clusterroles", role, admin)[0] == 201
    assert api.call("POST", f"{RBAC}/namespaces/default/rolebindings", binding, admin)[0] == 201
    assert api.call("GET", f"{NS}/default/configmaps", cred=alice)[0] == 200
    assert api.call("GET", f"{NS}/kube-system/configmaps", cred=alice)[0] == 403  # a RoleBinding's namespace
    assert api.call("DELETE", f"{NS}/default/configmaps/x", cred=alice)[0] == 403  # verbs
    api.call("DELETE", f"{RBAC}/namespaces/default/rolebindings/dev-reads", cred=admin)
    assert api.call("GET", f"{NS}/default/configmaps", cred=alice)[0] == 403


def test_default_cluster_roles_exist_for_kubeadms_bindings(api: Api, admin: Pem) -> None:
    for name in ("cluster-admin", "system:node-bootstrapper", "system:node-proxier"):
        assert api.call("GET", f"{RBAC}/clusterroles/{name}", cred=admin)[0] == 200, name


def test_superuser_groups(api: Api, pki: Pki) -> None:
    for group in ("system:masters", "kubeadm:cluster-admins"):
        assert api.call("GET", f"{NS}/kube-system/secrets", cred=pki.client("x", group))[0] == 200
