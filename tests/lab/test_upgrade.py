"""upgrade-cluster on lab hosts: a cluster created by capstan at 1.35.8, upgraded node by node.

One lab of four hosts (cp1 control plane + etcd, cp2 control plane, w1 and w2 workers; three etcd
members and a third control plane would only add minutes on this 2-core machine), created once at
1.35.8 with the create flow, then, in order:

(a) a minor upgrade to 1.36.3: every node Ready at v1.36.3, the recorded order exactly snapshot ->
    etcd (skipped: same pin) -> cp1 -> cp2 -> w1 -> w2, each node cordon -> drain -> upgrade ->
    uncordon, and the snapshot file on the etcd member;
(b) a patch upgrade to 1.36.4 with a PodDisruptionBudget that can never be satisfied guarding a pod on
    w1: the control planes are upgraded, then the run fails naming the pod and the budget; w1 is
    schedulable again and still at v1.36.3, w2 untouched (v1.36.3, its binaries the old ones);
(c) the budget removed, the same upgrade again: the control planes are left alone (already there),
    w1 and w2 are upgraded; every node Ready at v1.36.4 by the real kubectl.

Ground truth: the machine's kubectl against the admin kubeconfig create wrote, and files on the hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_create_cluster import KUBECTL, kubectl_nodes, sh

from capstan.lab import Lab
from capstan.lab.mirror import MirrorEntry

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

HOSTS = [
    ("cp1", ["control-plane", "etcd"]),
    ("cp2", ["control-plane"]),
    ("w1", ["worker"]),
    ("w2", ["worker"]),
]
NODES = ["cp1", "cp2", "w1", "w2"]
FROM, MIDDLE, TO = "1.35.8", "1.36.3", "1.36.4"

BLOCKER = """
apiVersion: v1
kind: Pod
metadata: {name: blocker, namespace: default, labels: {app: blocker}}
spec:
  nodeSelector: {kubernetes.io/hostname: w1}
  containers: [{name: blocker, image: registry.k8s.io/pause:3.10}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: blocker-pdb, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: blocker}}
"""


def mirror_entries() -> list[MirrorEntry]:
    """The machine's binaries for both releases' pins, and the stand-ins of the three versions used."""
    from capstan.lab.artifacts import default_entries, standin_entries

    entries: dict[str, MirrorEntry] = {}
    for entry in default_entries(FROM) + default_entries(TO) + standin_entries([FROM, MIDDLE, TO]):
        entries.setdefault(entry.path, entry)
    return list(entries.values())


@pytest.fixture(autouse=True, scope="module")
def capstan_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setenv("CAPSTAN_HOME", str(tmp_path_factory.mktemp("capstan-home")))
    yield
    patch.undo()


class Cluster:
    def __init__(self, lab: Lab, spec: Path, kubeconfig: str) -> None:
        self.lab, self.spec, self.kubeconfig = lab, spec, kubeconfig

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        res = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stdout}{res.stderr}"
        return res.stdout

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["metadata"]["name"]: n for n in kubectl_nodes(self.kubeconfig)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, prefect_api: None) -> Iterator[Cluster]:
    from capstan.flows.create import create_cluster

    lab = Lab.up(Lab.free_name(f"t{os.getpid()}upg"), HOSTS, mirror_entries=mirror_entries())
    try:
        doc = yaml.safe_load(lab.spec_path.read_text())
        doc["spec"].setdefault("kubernetes", {})["version"] = FROM
        # a budget that never allows the eviction should fail the drain quickly, not after 4 x 6 min
        doc["spec"]["upgrade"] = {"drain": {"timeoutSeconds": 20, "retries": 0}}
        spec = tmp_path_factory.mktemp("upgrade") / "cluster.yaml"
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        started = time.monotonic()
        created: dict[str, Any] = create_cluster(spec_path=str(spec))
        print(f"create at {FROM} on {len(HOSTS)} hosts: {time.monotonic() - started:.1f} s")
        yield Cluster(lab, spec, str(created["kubeconfig"]))
    finally:
        lab.down()


def upgrade(c: Cluster, to: str) -> dict[str, Any]:
    from capstan.flows.upgrade import upgrade_cluster

    started = time.monotonic()
    result: dict[str, Any] = upgrade_cluster(spec=str(c.spec), to_version=to)
    print(f"upgrade to {to}: {time.monotonic() - started:.1f} s")
    print({h: (i["changed"], i["unchanged"]) for h, i in result["hosts"].items()})
    return result


def node_steps(*names: str) -> list[str]:
    return [f"{step} {n}" for n in names for step in ("cordon", "drain", "upgrade", "uncordon")]


def versions(c: Cluster) -> dict[str, str]:
    return {name: n["status"]["nodeInfo"]["kubeletVersion"] for name, n in c.nodes().items()}


def assert_all_ready_at(c: Cluster, version: str) -> None:
    print(c.kubectl("get", "nodes", "-o", "wide"))
    for name, node in c.nodes().items():
        ready = {x["type"]: x["status"] for x in node["status"]["conditions"]}.get("Ready")
        assert ready == "True", name
        assert node["status"]["nodeInfo"]["kubeletVersion"] == f"v{version}", name
        assert not node["spec"].get("unschedulable"), name


def kubelet_reports(c: Cluster, host: str) -> str:
    return sh(c.lab, host, "/usr/local/bin/kubelet --version").strip()


def test_a_minor_upgrade_runs_in_order_and_every_node_ends_ready(cluster: Cluster) -> None:
    assert set(versions(cluster).values()) == {f"v{FROM}"}
    result = upgrade(cluster, MIDDLE)
    assert result["steps"] == [
        "snapshot cp1",
        "etcd skipped",
        *node_steps("cp1", "cp2"),
        *node_steps("w1"),  # 20% of 2 workers: batches of one
        *node_steps("w2"),
    ]
    assert result["upgraded"] == NODES and result["already"] == []
    assert result["worker_batches"] == [["w1"], ["w2"]]
    assert_all_ready_at(cluster, MIDDLE)
    host, _, path = str(result["snapshot"]).partition(":")
    assert host == "cp1"
    sh(cluster.lab, "cp1", f"test -s {path} && test -s {path.rsplit('/', 1)[0]}/snapshot.db.sha256")
    version = json.loads(cluster.kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert version == f"v{MIDDLE}"
    for name in NODES:
        assert f"v{MIDDLE}" in kubelet_reports(cluster, name)
        assert result["hosts"][name]["phases"]["upgrade-node"]["changed"] > 0


def test_b_a_budget_that_blocks_the_drain_stops_the_upgrade_and_uncordons(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=BLOCKER)
    deadline = time.monotonic() + 180
    while "Running" not in cluster.kubectl("get", "pod", "blocker", "-o", "jsonpath={.status.phase}"):
        assert time.monotonic() < deadline, "the blocker pod did not run on w1"
        time.sleep(2)
    w2_kubelet = sh(cluster.lab, "w2", "sha256sum /usr/local/bin/kubelet")

    with pytest.raises(Exception) as failed:
        upgrade(cluster, TO)

    message = str(failed.value)
    print(message)
    assert "drain w1" in message and "default/blocker" in message
    assert "default/blocker-pdb" in message and "(node uncordoned)" in message
    now = versions(cluster)
    assert now["cp1"] == now["cp2"] == f"v{TO}"  # the control planes went first and stay upgraded
    assert now["w1"] == now["w2"] == f"v{MIDDLE}"
    nodes = cluster.nodes()
    assert not nodes["w1"]["spec"].get("unschedulable")  # uncordoned after the failed drain
    assert not nodes["w2"]["spec"].get("unschedulable")
    assert sh(cluster.lab, "w2", "sha256sum /usr/local/bin/kubelet") == w2_kubelet  # untouched
    assert cluster.kubectl("get", "pod", "blocker", "-o", "jsonpath={.spec.nodeName}") == "w1"


def test_c_after_the_budget_is_removed_a_rerun_continues_where_it_stopped(cluster: Cluster) -> None:
    cluster.kubectl("delete", "pdb", "blocker-pdb")
    result = upgrade(cluster, TO)
    assert result["already"] == ["cp1", "cp2"]
    assert result["upgraded"] == ["w1", "w2"]
    assert result["steps"] == ["snapshot cp1", "etcd skipped", *node_steps("w1"), *node_steps("w2")]
    assert "upgrade-node" not in result["hosts"].get("cp1", {}).get("phases", {})
    assert_all_ready_at(cluster, TO)
    for name in NODES:
        assert f"v{TO}" in kubelet_reports(cluster, name)


# ---- (d) a power cut in the middle of a batch ----------------------------------------------------
CUT_HOSTS = [("cp1", ["control-plane", "etcd"]), ("w1", ["worker"]), ("w2", ["worker"])]


@pytest.fixture
def cut_cluster(tmp_path: Path, prefect_api: None) -> Iterator[Cluster]:
    from capstan.flows.create import create_cluster

    lab = Lab.up(Lab.free_name(f"t{os.getpid()}upc"), CUT_HOSTS, mirror_entries=mirror_entries())
    try:
        doc = yaml.safe_load(lab.spec_path.read_text())
        doc["spec"].setdefault("kubernetes", {})["version"] = MIDDLE
        doc["spec"]["upgrade"] = {"workerBatch": 2}  # both workers in one batch, upgraded in parallel
        spec = tmp_path / "cluster.yaml"
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        created: dict[str, Any] = create_cluster(spec_path=str(spec))
        yield Cluster(lab, spec, str(created["kubeconfig"]))
    finally:
        lab.down()


def test_d_a_worker_power_cut_mid_batch_fails_the_batch_and_a_retry_after_boot_completes(
    cut_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from capstan.tasks.upgrade import steps

    c = cut_cluster
    upgrade_host = steps._upgrade_host

    def power_cut_w2(session: Any, host: Any, target: Any) -> Any:
        if host.name == "w2":  # cordoned and drained: the machine dies before its new binaries
            c.lab.crash("w2")
        return upgrade_host(session, host, target)

    monkeypatch.setattr(steps, "_upgrade_host", power_cut_w2)
    with pytest.raises(Exception) as failed:
        upgrade(c, TO)
    monkeypatch.undo()
    message = str(failed.value)
    print(message)
    assert "phase upgrade-node failed" in message and "w2" in message and "w1:" not in message
    now = versions(c)
    assert now["cp1"] == now["w1"] == f"v{TO}"  # w1, in the same batch, finished
    assert not c.nodes()["w2"]["spec"].get("unschedulable")  # uncordoned after the failure

    c.lab.boot("w2")
    assert f"v{MIDDLE}" in kubelet_reports(c, "w2")
    deadline = time.monotonic() + 300
    while True:  # the kubelet comes back with the machine; the preflight wants every node Ready
        node = c.nodes()["w2"]
        if {x["type"]: x["status"] for x in node["status"]["conditions"]}.get("Ready") == "True":
            break
        assert time.monotonic() < deadline, "w2 did not turn Ready after its boot"
        time.sleep(2)
    result = upgrade(c, TO)
    assert result["already"] == ["cp1", "w1"] and result["upgraded"] == ["w2"]
    assert result["steps"] == ["snapshot cp1", "etcd skipped", *node_steps("w2")]
    assert_all_ready_at(c, TO)
