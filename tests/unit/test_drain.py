"""Node drain: which pods are evicted, skipped or block the drain, the wording, and the loop on an API.

The sorting and the messages are pure (Pod dicts in); ``drain`` itself runs with lightkube against the
API stand-in in-process (the real TLS server and request layer on ``MemoryStorage``, the real
PodDisruptionBudget arithmetic behind the Eviction subresource). The same on a lab host, with the
controllers and scheduler running, is ``tests/lab/test_drain_lab.py``.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from test_standin_apiserver_support import Api, Pki, make_pki, node_obj, pod_obj, running

from capstan.errors import CapstanError
from capstan.kube.access import ApiAccess, KubeError
from capstan.kube.drain import (
    DrainBlocked,
    DrainReport,
    blocked_message,
    cordon,
    drain,
    drain_or_uncordon,
    eviction,
    eviction_refusal,
    plan_drain,
    still_leaving,
    uncordon,
)
from capstan.lab.standins.common.pki import Pem

NS = "/api/v1/namespaces"


def pod(
    name: str,
    *,
    ns: str = "default",
    owner: str | None = "ReplicaSet",
    mirror: bool = False,
    emptydir: tuple[str, ...] = (),
    deleting: bool = False,
    uid: str = "",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": uid or f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "u", "controller": True}]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    volumes = [{"name": v, "emptyDir": {}} for v in emptydir] + [{"name": "cfg", "configMap": {"name": "x"}}]
    return {"metadata": meta, "spec": {"nodeName": "w1", "volumes": volumes}}


# ---- pure: sorting the pods ------------------------------------------------------------------------


def test_daemonset_and_mirror_pods_are_skipped_everything_else_is_evicted() -> None:
    plan = plan_drain(
        [
            pod("web-1"),
            pod("agent-x", ns="kube-system", owner="DaemonSet"),
            pod("kube-apiserver-w1", ns="kube-system", owner="Node", mirror=True),
            pod("db-0", owner="StatefulSet"),
        ]
    )
    assert plan.evict == ("default/web-1", "default/db-0")
    assert plan.skipped == ("kube-system/agent-x (DaemonSet)", "kube-system/kube-apiserver-w1 (mirror pod)")
    assert plan.blockers == () and plan.notes == {}


def test_a_mirror_pod_without_owner_is_still_skipped() -> None:
    plan = plan_drain([pod("etcd-w1", owner=None, mirror=True)])
    assert plan.evict == () and plan.skipped == ("default/etcd-w1 (mirror pod)",)


def test_a_bare_pod_is_evicted_with_a_note_that_it_will_not_come_back() -> None:
    plan = plan_drain([pod("debug", owner=None)])
    assert plan.evict == ("default/debug",)
    assert plan.notes["default/debug"] == "no controller: it will not be recreated"


def test_emptydir_pods_are_evicted_by_default_and_noted() -> None:
    plan = plan_drain([pod("cache-1", emptydir=("scratch",))])
    assert plan.evict == ("default/cache-1",) and plan.blockers == ()
    assert plan.notes["default/cache-1"] == "emptyDir scratch deleted"


def test_emptydir_pods_block_when_local_data_must_be_kept() -> None:
    plan = plan_drain([pod("cache-1", emptydir=("a", "b")), pod("web-1")], delete_emptydir=False)
    assert plan.evict == ("default/web-1",)
    assert plan.blockers == ("default/cache-1: uses emptyDir volume a, b, whose data an eviction deletes",)


def test_a_daemonset_pod_with_emptydir_is_skipped_not_blocking() -> None:
    plan = plan_drain([pod("agent", owner="DaemonSet", emptydir=("run",))], delete_emptydir=False)
    assert plan.blockers == () and plan.skipped == ("default/agent (DaemonSet)",)


def test_pods_already_terminating_are_waited_for_not_evicted() -> None:
    plan = plan_drain([pod("old", deleting=True)])
    assert plan.evict == () and plan.terminating == ("default/old",)


def test_a_pod_recreated_under_the_same_name_is_not_the_evicted_one() -> None:
    leaving = {"default/db-0": "uid-old", "default/web-1": None}
    pods = [pod("db-0", uid="uid-new"), pod("web-1", uid="whatever")]
    assert still_leaving(pods, leaving) == ["default/web-1"]
    assert still_leaving([pod("db-0", uid="uid-old")], leaving) == ["default/db-0"]


# ---- pure: wording -----------------------------------------------------------------------------------


def test_a_budget_refusal_names_the_pdb_with_its_namespace() -> None:
    status = {
        "code": 429,
        "reason": "TooManyRequests",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "details": {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently",
                }
            ]
        },
    }
    assert eviction_refusal(status, "shop") == (
        "disruption budget shop/web-pdb allows no eviction (needs 2 healthy pods and has 2 currently)"
    )


def test_other_refusals_keep_the_code_and_message() -> None:
    status = {"code": 403, "message": 'pods "x" is forbidden: no'}
    assert eviction_refusal(status, "default") == 'eviction refused (HTTP 403): pods "x" is forbidden: no'


def test_the_blocked_message_names_node_pods_and_reasons_on_one_line() -> None:
    exc = DrainBlocked("w1", ["default/web-1: budget", "default/web-2: budget"], detail="after 30 s")
    assert (
        str(exc)
        == "drain w1: 2 pods cannot leave the node after 30 s: default/web-1: budget; default/web-2: budget"
    )
    assert "\n" not in str(exc)
    assert isinstance(exc, KubeError) and isinstance(exc, CapstanError)
    assert blocked_message("w1", ("a/b: x",)) == "drain w1: 1 pod cannot leave the node: a/b: x"


def test_drain_blocked_survives_pickling_as_prefect_states_do() -> None:
    exc = DrainBlocked("w1", ["default/web-1: budget"], detail="(node uncordoned)", cordoned_by_drain=False)
    back = pickle.loads(pickle.dumps(exc))
    assert (back.node, back.blockers, back.cordoned_by_drain) == ("w1", ("default/web-1: budget",), False)
    assert str(back) == str(exc)


# ---- drain against the in-process API stand-in ------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def admin(pki: Pki) -> Pem:
    return pki.client("kubernetes-admin", "system:masters")


@pytest.fixture
def api(pki: Pki) -> Iterator[Api]:
    server = Api(pki, authorization_mode="Node,RBAC")
    yield server
    server.close()


@pytest.fixture
def client(api: Api, pki: Pki, admin: Pem) -> Iterator[Client]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"certificate-authority-data": b64(pki.ca.cert)}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate-data": b64(admin.cert), "client-key-data": b64(admin.key)},
            }
        ],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "admin"}}],
        "current-context": "c",
    }
    with ApiAccess(kubeconfig, f"https://127.0.0.1:{api.port}").client() as made:
        yield made


def _create(api: Api, admin: Pem, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    code, body = api.call("POST", path, obj, admin)
    assert code == 201, body
    return dict(body)


def _owned(name: str, owner: dict[str, Any], labels: dict[str, str], node: str = "w1") -> dict[str, Any]:
    obj = pod_obj(name, labels, node)
    ref = {"apiVersion": "apps/v1", "kind": owner["kind"], "name": owner["metadata"]["name"]}
    obj["metadata"]["ownerReferences"] = [{**ref, "uid": owner["metadata"]["uid"], "controller": True}]
    return obj


def _replicaset(api: Api, admin: Pem, replicas: int) -> dict[str, Any]:
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    return _create(api, admin, "/apis/apps/v1/namespaces/default/replicasets", rs)


def _pods(api: Api, admin: Pem, node: str) -> list[str]:
    code, body = api.call("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}", None, admin)
    assert code == 200, body
    return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in body["items"])


def _unschedulable(api: Api, admin: Pem, node: str) -> bool:
    code, body = api.call("GET", f"/api/v1/nodes/{node}", None, admin)
    assert code == 200, body
    return bool(body["spec"].get("unschedulable"))


@pytest.fixture
def nodes(api: Api, admin: Pem) -> None:
    for name in ("w1", "w2"):
        _create(api, admin, "/api/v1/nodes", node_obj(name))


@pytest.mark.usefixtures("nodes")
def test_cordon_and_uncordon_are_idempotent(client: Client, api: Api, admin: Pem) -> None:
    assert cordon(client, "w1") is True
    assert _unschedulable(api, admin, "w1")
    assert cordon(client, "w1") is False
    assert uncordon(client, "w1") is True
    assert not _unschedulable(api, admin, "w1")
    assert uncordon(client, "w1") is False


def test_cordoning_a_missing_node_names_it(client: Client) -> None:
    with pytest.raises(KubeError, match="cannot cordon node ghost"):
        cordon(client, "ghost")


@pytest.mark.usefixtures("nodes")
def test_drain_evicts_workloads_and_skips_daemon_and_mirror_pods(
    client: Client, api: Api, admin: Pem
) -> None:
    rs = _replicaset(api, admin, 1)
    _create(api, admin, f"{NS}/default/pods", _owned("web-a", rs, {"app": "web"}))
    ds = {"kind": "DaemonSet", "metadata": {"name": "agent", "uid": "ds-uid"}}
    _create(api, admin, f"{NS}/kube-system/pods", _owned("agent-w1", ds, {"app": "agent"}))
    mirror = pod_obj("static-w1", {}, "w1")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    _create(api, admin, f"{NS}/kube-system/pods", mirror)
    scratch = pod_obj("scratch", {}, "w1")
    scratch["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    _create(api, admin, f"{NS}/default/pods", scratch)
    _create(api, admin, f"{NS}/default/pods", pod_obj("elsewhere", {}, "w2"))
    for name in ("web-a", "scratch"):
        running(api, admin, "default", name)

    report = drain(client, "w1", timeout=20, retry_interval=0.1)

    assert isinstance(report, DrainReport) and report.node == "w1" and report.cordoned
    assert sorted(report.evicted) == [
        "default/scratch (no controller: it will not be recreated)",
        "default/web-a",
    ]
    assert sorted(report.skipped) == [
        "kube-system/agent-w1 (DaemonSet)",
        "kube-system/static-w1 (mirror pod)",
    ]
    assert _pods(api, admin, "w1") == ["kube-system/agent-w1", "kube-system/static-w1"]
    assert _pods(api, admin, "w2") == ["default/elsewhere"]
    assert _unschedulable(api, admin, "w1")
    again = drain(client, "w1", timeout=20, retry_interval=0.1)
    assert again.evicted == () and not again.cordoned


def test_an_eviction_carries_the_grace_period_only_when_one_is_set() -> None:
    assert eviction("default/web-a", 300).deleteOptions.gracePeriodSeconds == 300
    assert eviction("default/web-a", 0).deleteOptions.gracePeriodSeconds == 0
    plain = eviction("default/web-a")
    assert plain.deleteOptions is None
    assert (plain.metadata.namespace, plain.metadata.name) == ("default", "web-a")


@pytest.mark.usefixtures("nodes")
def test_drain_hands_the_grace_period_to_the_api_server(
    client: Client, api: Api, admin: Pem, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, Any]] = []
    delete = api.registry.delete

    def noting(res: Any, namespace: str, name: str, options: Any = None, dry_run: bool = False) -> Any:
        seen.append((f"{namespace}/{name}", options))  # what the Eviction subresource passed on
        return delete(res, namespace, name, options, dry_run)

    monkeypatch.setattr(api.registry, "delete", noting)
    rs = _replicaset(api, admin, 1)
    _create(api, admin, f"{NS}/default/pods", _owned("web-a", rs, {"app": "web"}))
    running(api, admin, "default", "web-a")

    drain(client, "w1", timeout=20, retry_interval=0.1, grace_period_seconds=45)

    assert [(ref, (opts or {}).get("gracePeriodSeconds")) for ref, opts in seen] == [("default/web-a", 45)]
    assert _pods(api, admin, "w1") == []


@pytest.mark.usefixtures("nodes")
def test_emptydir_pods_block_before_anything_is_evicted(client: Client, api: Api, admin: Pem) -> None:
    scratch = pod_obj("scratch", {}, "w1")
    scratch["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    _create(api, admin, f"{NS}/default/pods", scratch)
    _create(api, admin, f"{NS}/default/pods", pod_obj("plain", {}, "w1"))
    with pytest.raises(DrainBlocked, match=r"default/scratch: uses emptyDir volume tmp") as caught:
        drain(client, "w1", delete_emptydir=False, timeout=20)
    assert caught.value.blockers == (
        "default/scratch: uses emptyDir volume tmp, whose data an eviction deletes",
    )
    assert _pods(api, admin, "w1") == ["default/plain", "default/scratch"]
    assert _unschedulable(api, admin, "w1")  # drain itself never uncordons


@pytest.mark.usefixtures("nodes")
def test_a_budget_blocks_until_the_deadline_then_drain_or_uncordon_uncordons(
    client: Client, api: Api, admin: Pem
) -> None:
    rs = _replicaset(api, admin, 2)
    for name, node in (("web-a", "w1"), ("web-b", "w2")):
        _create(api, admin, f"{NS}/default/pods", _owned(name, rs, {"app": "web"}, node))
        running(api, admin, "default", name)
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }
    _create(api, admin, "/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb)

    with pytest.raises(DrainBlocked) as caught:
        drain_or_uncordon(client, "w1", timeout=2, retry_interval=0.2)

    exc = caught.value
    assert exc.node == "w1"
    assert exc.blockers == (
        "default/web-a: disruption budget default/web-pdb allows no eviction "
        "(needs 2 healthy pods and has 2 currently)",
    )
    assert str(exc).startswith(
        "drain w1: 1 pod cannot leave the node after 2 s (node uncordoned): default/web-a"
    )
    assert not _unschedulable(api, admin, "w1")
    assert _pods(api, admin, "w1") == ["default/web-a"]


@pytest.mark.usefixtures("nodes")
def test_drain_or_uncordon_leaves_an_operators_cordon_alone(client: Client, api: Api, admin: Pem) -> None:
    scratch = pod_obj("scratch", {}, "w1")
    scratch["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    _create(api, admin, f"{NS}/default/pods", scratch)
    cordon(client, "w1")
    with pytest.raises(DrainBlocked, match="left cordoned: it was cordoned before the drain"):
        drain_or_uncordon(client, "w1", delete_emptydir=False, timeout=5)
    assert _unschedulable(api, admin, "w1")
