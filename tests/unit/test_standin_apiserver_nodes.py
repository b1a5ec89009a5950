"""Node readiness as the control plane sees it: condition taints, scheduling onto NotReady nodes, and
the controller-manager's bootstrap signer.

Runs the controller and scheduler loops once at a time against the in-process API server
(``MemoryStorage``) with the identities kubeadm gives them, as ``test_standin_apiserver_components``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_standin_apiserver_support import Api, Pki, make_pki, node_obj, pod_obj, token_secret

from capstan.lab.standins.apiserver import bootstrapsigner, controller, scheduler
from capstan.lab.standins.apiserver.registry import Registry
from capstan.lab.standins.apiserver.resources import core
from capstan.lab.standins.apiserver.storage import MemoryStorage
from capstan.lab.standins.apiserver.workloads import Workloads
from capstan.lab.standins.common.client import KubeClient
from capstan.lab.standins.common.jws import jws_verify

NS = "/api/v1/namespaces/default"
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
UNSCHEDULABLE = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def api(pki: Pki) -> Iterator[Api]:
    server = Api(pki, authorization_mode="Node,RBAC", bootstrap_tokens=True)
    yield server
    server.close()


@pytest.fixture
def admin(api: Api, pki: Pki) -> KubeClient:
    return api.client(pki.client("kubernetes-admin", "system:masters"))


@pytest.fixture
def cm(api: Api, pki: Pki) -> KubeClient:
    return api.client(pki.client("system:kube-controller-manager"))


@pytest.fixture
def sched(api: Api, pki: Pki) -> KubeClient:
    return api.client(pki.client("system:kube-scheduler"))


def taints(admin: KubeClient, node: str) -> list[dict[str, Any]]:
    return list(admin.get(f"/api/v1/nodes/{node}")["spec"].get("taints") or [])


def set_condition(admin: KubeClient, node: str, kind: str, status: str) -> None:
    conds = [c for c in admin.get(f"/api/v1/nodes/{node}")["status"]["conditions"] if c["type"] != kind]
    conds.append({"type": kind, "status": status, "lastHeartbeatTime": "now"})
    admin.patch(f"/api/v1/nodes/{node}/status", {"status": {"conditions": conds}})


# ---- TaintNodesByCondition and the node lifecycle controller's taints ------------------------------


def test_a_new_node_is_tainted_not_ready_and_keeps_its_registered_taints(admin: KubeClient) -> None:
    own = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    admin.post("/api/v1/nodes", node_obj("a", taints=[own]))
    assert taints(admin, "a") == [own, NOT_READY]


def test_the_admission_plugin_can_be_disabled() -> None:
    reg = Registry(MemoryStorage(), disabled_admission=frozenset({"TaintNodesByCondition"}))
    created = reg.create(core("nodes"), "", node_obj("a"))
    assert not created["spec"].get("taints")


def test_condition_taints_follow_the_conditions(admin: KubeClient, cm: KubeClient) -> None:
    foreign = [{"key": "dedicated", "effect": "NoSchedule"}, {**NOT_READY, "effect": "NoExecute"}]
    admin.post("/api/v1/nodes", node_obj("a", ready=False, taints=foreign))
    life = controller.NodeLifecycle(cm, grace=60)
    life.taint_pass()
    assert taints(admin, "a") == [*foreign, NOT_READY]
    set_condition(admin, "a", "Ready", "True")
    life.taint_pass()
    assert taints(admin, "a") == foreign  # not ours to remove: other keys, other effects
    set_condition(admin, "a", "MemoryPressure", "True")
    admin.patch("/api/v1/nodes/a", {"spec": {"unschedulable": True}})
    life.taint_pass()
    pressure = {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}
    assert taints(admin, "a") == [*foreign, pressure, UNSCHEDULABLE]
    set_condition(admin, "a", "MemoryPressure", "False")
    set_condition(admin, "a", "Ready", "Unknown")
    admin.patch("/api/v1/nodes/a", {"spec": {"unschedulable": False}})
    life.taint_pass()
    assert taints(admin, "a") == [*foreign, UNREACHABLE]


def test_a_node_without_a_ready_condition_keeps_the_not_ready_taint(
    admin: KubeClient, cm: KubeClient
) -> None:
    bare = node_obj("a")
    bare["status"]["conditions"] = []
    admin.post("/api/v1/nodes", bare)
    controller.NodeLifecycle(cm, grace=60).taint_pass()
    assert taints(admin, "a") == [NOT_READY]


# ---- scheduling onto NotReady nodes --------------------------------------------------------------


def test_only_pods_tolerating_not_ready_land_on_a_not_ready_node(
    admin: KubeClient, cm: KubeClient, sched: KubeClient
) -> None:
    admin.post("/api/v1/nodes", node_obj("a", ready=False))
    controller.NodeLifecycle(cm, grace=60).taint_pass()
    admin.post(f"{NS}/pods", pod_obj("plain"))
    agent = pod_obj("agent")
    agent["spec"]["tolerations"] = [{"operator": "Exists", "effect": "NoSchedule"}]
    admin.post(f"{NS}/pods", agent)
    assert scheduler.schedule_once(sched) == 1
    placed = admin.get(f"{NS}/pods/agent")
    assert placed["spec"]["nodeName"] == "a" and placed["status"]["phase"] == "Running"
    ready = next(c for c in placed["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"  # it runs on a node that is not Ready
    plain = admin.get(f"{NS}/pods/plain")
    assert not plain["spec"].get("nodeName")
    message = plain["status"]["conditions"][0]["message"]
    assert "untolerated taint {node.kubernetes.io/not-ready: }" in message


def _daemonset(name: str, tolerations: list[dict[str, str]]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"tolerations": tolerations, "containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def test_a_cni_like_daemon_is_bound_to_a_not_ready_node_and_a_plain_one_is_not_created(
    admin: KubeClient, cm: KubeClient, sched: KubeClient
) -> None:
    admin.post("/api/v1/nodes", node_obj("a", ready=False))
    controller.NodeLifecycle(cm, grace=60).taint_pass()
    daemonsets = "/apis/apps/v1/namespaces/default/daemonsets"
    admin.post(daemonsets, _daemonset("agent", [{"operator": "Exists", "effect": "NoSchedule"}]))
    admin.post(daemonsets, _daemonset("plain", []))
    Workloads(cm).sync()
    pods = admin.items(f"{NS}/pods")
    assert [p["metadata"]["ownerReferences"][0]["name"] for p in pods] == ["agent"]  # as the real controller
    assert scheduler.schedule_once(sched) == 1
    assert admin.items(f"{NS}/pods")[0]["spec"]["nodeName"] == "a"


# ---- the bootstrap signer ------------------------------------------------------------------------


def _cluster_info(admin: KubeClient) -> dict[str, str]:
    return dict(admin.get(bootstrapsigner.CLUSTER_INFO)["data"])


def test_the_signer_signs_cluster_info_for_a_token_created_as_a_raw_secret(
    admin: KubeClient, cm: KubeClient
) -> None:
    kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\n"
    admin.post(
        "/api/v1/namespaces/kube-public/configmaps",
        {"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": kubeconfig}},
    )
    secrets = "/api/v1/namespaces/kube-system/secrets"
    admin.post(secrets, token_secret("abcdef", "0123456789abcdef", **{"usage-bootstrap-signing": "true"}))
    admin.post(secrets, token_secret("bbbbbb", "0123456789abcdef"))  # authentication only
    old = {"usage-bootstrap-signing": "true", "expiration": "2020-01-01T00:00:00Z"}
    admin.post(secrets, token_secret("cccccc", "0123456789abcdef", **old))
    assert bootstrapsigner.sync(cm)
    data = _cluster_info(admin)
    assert sorted(k for k in data if k.startswith("jws-")) == ["jws-kubeconfig-abcdef"]
    assert jws_verify(data["jws-kubeconfig-abcdef"], kubeconfig, "abcdef", "0123456789abcdef")
    assert not jws_verify(data["jws-kubeconfig-abcdef"], kubeconfig, "abcdef", "ffffffffffffffff")
    assert not bootstrapsigner.sync(cm)  # nothing to change
    admin.delete(f"{secrets}/bootstrap-token-abcdef")
    assert bootstrapsigner.sync(cm)
    assert _cluster_info(admin) == {"kubeconfig": kubeconfig}


def test_the_signer_skips_secrets_whose_name_does_not_match_the_token_id() -> None:
    good = token_secret("abcdef", "0123456789abcdef", **{"usage-bootstrap-signing": "true"})
    renamed = {**good, "metadata": {"name": "bootstrap-token-zzzzzz"}}
    not_a_token = {**good, "type": "Opaque"}
    assert bootstrapsigner.signing_tokens([good, renamed, not_a_token]) == {"abcdef": "0123456789abcdef"}
    assert base64.b64decode(good["data"]["token-id"]) == b"abcdef"


def test_the_bootstrap_signer_runs_only_when_controllers_name_it() -> None:
    enabled = controller.controller_enabled
    assert not enabled("bootstrapsigner", ["*"])  # off by default, as in the real one
    assert enabled("bootstrapsigner", ["*", "bootstrapsigner", "tokencleaner"])  # kubeadm's flag
    assert not enabled("bootstrapsigner", ["*", "-bootstrapsigner"])
    assert enabled("nodelifecycle", ["*"]) and not enabled("nodelifecycle", ["bootstrapsigner"])
