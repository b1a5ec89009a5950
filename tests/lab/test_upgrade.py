"""upgrade-cluster on lab hosts: a cluster created by capstan at 1.35.8, upgraded node by node.

One lab of five hosts (cp1 and cp2 control planes, w1 and w2 workers, e1 an etcd-only host; cp1, cp2 and
e1 are the three etcd members; a third control plane would only add minutes on this 2-core machine),
created once at 1.35.8 with the create flow, then, in order:

(a) a minor upgrade to 1.36.3: every node Ready at v1.36.3, the recorded order exactly snapshot ->
    etcd cp1 -> cp2 -> e1 (one member at a time) -> node cp1 -> cp2 -> w1 -> w2, each node cordon ->
    drain -> upgrade -> uncordon; every member runs the new etcd binary and is healthy; the snapshot
    file on the member that took it;
(b) a patch upgrade to 1.36.4 with a PodDisruptionBudget that can never be satisfied guarding a pod on
    w1: the control planes are upgraded, then the run fails naming the pod and the budget; w1 is
    schedulable again and still at v1.36.3, w2 untouched (v1.36.3, its binaries the old ones);
(c) the budget removed, the same upgrade again with ``pause="before-node"``: the control planes are
    left alone (already there, no question asked), the run pauses before w1 and again before w2 and
    goes on only when ``capstan approve``'s code answers (a thread plays the operator and notes the
    nodes at each question: w1 untouched at its question, w1 done and w2 untouched at w2's); every
    node Ready at v1.36.4 by the real kubectl.

(d), a power cut mid-batch and ``--force``, is in test_upgrade_powercut.py (its own cluster, so it
runs beside this module).

Ground truth: the machine's kubectl against the admin kubeconfig create wrote, and files on the hosts.

The etcd pin: every pinned release happens to carry etcd 3.6.14, so the etcd member upgrade would never
run. This module pins 1.36.3 and 1.36.4 to etcd 3.6.15 instead (``etcd_pin_bump``: the pins table as
capstan loads it, for this module only) and the lab mirror serves a 3.6.15 archive whose etcd is the
machine's binary with a marker appended (a different sha256 that still runs), so the binary swap is
visible on the hosts. The sums reach the spec as extraChecksums, as for every lab artifact.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_create_cluster import KUBECTL, etcd_health, kubectl_nodes, sh

import capstan.versions
from capstan.lab import Lab
from capstan.lab.mirror import MirrorEntry, TarMember
from capstan.versions import _table

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

HOSTS = [
    ("cp1", ["control-plane", "etcd"]),
    ("cp2", ["control-plane", "etcd"]),
    ("e1", ["etcd"]),
    ("w1", ["worker"]),
    ("w2", ["worker"]),
]
NODES = ["cp1", "cp2", "w1", "w2"]
ETCD_HOSTS = ["cp1", "cp2", "e1"]
FROM, MIDDLE, TO = "1.35.8", "1.36.3", "1.36.4"
NEW_ETCD = "3.6.15"
MARKER = f"\n# capstan lab: the etcd {NEW_ETCD} of test_upgrade (the machine's etcd + this line)\n".encode()

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


def new_etcd_binary() -> bytes:
    from capstan.lab.artifacts import LOCAL

    return LOCAL["etcd"][0].read_bytes() + MARKER


def mirror_entries() -> list[MirrorEntry]:
    """The machine's binaries for both releases' pins (the new etcd marked), and the three stand-ins."""
    from capstan.lab.artifacts import default_entries, standin_entries

    entries: dict[str, MirrorEntry] = {}
    for entry in default_entries(FROM) + default_entries(TO) + standin_entries([FROM, MIDDLE, TO]):
        if entry.artifact == ("etcd", "amd64", NEW_ETCD) and isinstance(entry.source, tuple):
            members = tuple(
                TarMember(m.arcname, new_etcd_binary()) if m.arcname.endswith("/etcd") else m
                for m in entry.source
            )
            entry = dataclasses.replace(entry, source=members)
        entries.setdefault(entry.path, entry)
    return list(entries.values())


@pytest.fixture(autouse=True, scope="module")
def etcd_pin_bump() -> Iterator[None]:
    """1.36.3 and 1.36.4 pin etcd 3.6.15 (1.35.8 keeps 3.6.14) while this module runs."""
    table = _table.load()
    releases = {
        v: ({**pins, "etcd": NEW_ETCD} if v in (MIDDLE, TO) else pins) for v, pins in table.releases.items()
    }
    bumped = dataclasses.replace(table, releases=releases)
    patch = pytest.MonkeyPatch()
    patch.setattr(capstan.versions, "load", lambda: bumped)
    assert capstan.versions.pins_for(MIDDLE).etcd == NEW_ETCD
    assert capstan.versions.pins_for(FROM).etcd != NEW_ETCD
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
        created: dict[str, Any] = create_cluster(spec=str(spec))
        print(f"create at {FROM} on {len(HOSTS)} hosts: {time.monotonic() - started:.1f} s")
        yield Cluster(lab, spec, str(created["kubeconfig"]))
    finally:
        lab.down()


def upgrade(c: Cluster, to: str, run_name: str = "", **options: Any) -> dict[str, Any]:
    from capstan.flows.upgrade import upgrade_cluster

    started = time.monotonic()
    flow = upgrade_cluster.with_options(flow_run_name=run_name) if run_name else upgrade_cluster
    result: dict[str, Any] = flow(spec=str(c.spec), to_version=to, **options)
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
    old_etcd = {h: sh(cluster.lab, h, "sha256sum /usr/local/bin/etcd").split()[0] for h in ETCD_HOSTS}
    result = upgrade(cluster, MIDDLE)
    host, _, path = str(result["snapshot"]).partition(":")
    assert host in ETCD_HOSTS
    assert result["steps"] == [
        f"snapshot {host}",
        *(f"etcd {h}" for h in ETCD_HOSTS),  # one member at a time, before any node
        *node_steps("cp1", "cp2"),
        *node_steps("w1"),  # 20% of 2 workers: batches of one
        *node_steps("w2"),
    ]
    assert result["upgraded"] == NODES and result["already"] == []
    assert result["worker_batches"] == [["w1"], ["w2"]]
    assert result["etcd"] == "upgraded"
    assert_all_ready_at(cluster, MIDDLE)
    sh(cluster.lab, host, f"test -s {path} && test -s {path.rsplit('/', 1)[0]}/snapshot.db.sha256")
    new_sum = hashlib.sha256(new_etcd_binary()).hexdigest()
    for h in ETCD_HOSTS:
        assert old_etcd[h] != new_sum
        assert sh(cluster.lab, h, "sha256sum /usr/local/bin/etcd").split()[0] == new_sum, h
        assert result["hosts"][h]["phases"]["upgrade-etcd"]["changed"] > 0, h
    etcd_health(cluster.lab, "cp1", ETCD_HOSTS)
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


class Operator:
    """In a thread: for each node in turn, wait (deadline) until the named run pauses at "upgrade
    <node>", note that node's and the others' kubelet version and cordon, then approve with the code
    of ``capstan approve``. Any other question is an error."""

    def __init__(self, c: Cluster, run_name: str, nodes: list[str], deadline: float = 600) -> None:
        self.c, self.run_name, self.nodes, self.deadline = c, run_name, nodes, deadline
        self.seen: dict[str, dict[str, tuple[str, bool]]] = {}
        self.error = ""
        ctx = contextvars.copy_context()  # the test server's settings live in context variables
        self.thread = threading.Thread(target=ctx.run, args=(self._answer,), daemon=True)
        self.thread.start()

    def _paused_key(self) -> tuple[str, str] | None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[self.run_name]))
            )
        if not runs or runs[0].state is None or not runs[0].state.is_paused():
            return None
        return str(runs[0].id), str(runs[0].state.state_details.pause_key or "")

    def _answer(self) -> None:
        from capstan.cli_approve import approve
        from capstan.flows.approval import approval_key

        end = time.monotonic() + self.deadline
        answered: set[str] = set()
        for node in self.nodes:
            want = approval_key(f"upgrade {node}")
            while True:
                if time.monotonic() > end:
                    self.error = f"no question about {node} within {self.deadline:.0f} s"
                    return
                paused = self._paused_key()
                if paused is not None and paused[1] not in answered:
                    if paused[1] != want:
                        self.error = f"asked {paused[1]} while waiting for {want} ({node})"
                        return
                    self.seen[node] = {
                        n: (
                            info["status"]["nodeInfo"]["kubeletVersion"],
                            bool(info["spec"].get("unschedulable")),
                        )
                        for n, info in self.c.nodes().items()
                    }
                    approve(paused[0], reject=False, note=f"{node} checked by the test")
                    answered.add(want)
                    break
                time.sleep(0.5)

    def join(self) -> dict[str, dict[str, tuple[str, bool]]]:
        self.thread.join(timeout=self.deadline + 60)
        assert not self.thread.is_alive(), "the operator thread is still waiting"
        assert not self.error, self.error
        return self.seen


def test_c_after_the_budget_is_removed_a_rerun_with_pauses_continues_where_it_stopped(
    cluster: Cluster,
) -> None:
    cluster.kubectl("delete", "pdb", "blocker-pdb")
    name = f"upgrade-paused-{uuid.uuid4().hex[:8]}"
    operator = Operator(cluster, name, ["w1", "w2"])
    result = upgrade(cluster, TO, run_name=name, pause="before-node")
    seen = operator.join()
    old, new = f"v{MIDDLE}", f"v{TO}"
    assert seen["w1"]["w1"] == (old, False)  # asked before w1 was touched: not even cordoned
    assert seen["w2"]["w1"] == (new, False)  # w1 done and uncordoned before w2's question
    assert seen["w2"]["w2"] == (old, False)
    assert result["already"] == ["cp1", "cp2"]
    assert result["upgraded"] == ["w1", "w2"]
    assert result["steps"][0].split()[0] == "snapshot"
    assert result["steps"][1:] == ["etcd skipped", *node_steps("w1"), *node_steps("w2")]
    assert result["etcd"] == f"unchanged ({NEW_ETCD})"
    assert "upgrade-node" not in result["hosts"].get("cp1", {}).get("phases", {})
    assert_all_ready_at(cluster, TO)
    for name in NODES:
        assert f"v{TO}" in kubelet_reports(cluster, name)
