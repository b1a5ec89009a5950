"""upgrade-cluster when a worker loses power in the middle of its batch, and what ``--force`` overrides.

Its own lab (cp1 control plane + etcd, w1 and w2 workers in one batch of two), created at 1.36.3 and
upgraded to 1.36.4, so it runs beside test_upgrade.py instead of after it:

1. w2 loses power once cordoned and drained (the upgrade step's first action crashes the host): the
   run fails naming w2 and only w2; w1, upgraded in parallel in the same batch, finished; w2 is
   uncordoned again (a later boot must not find it unschedulable).
2. With w2 still down and reported NotReady, a new run is refused before touching anything, naming w2
   and ``--force``; with ``force`` the same run gets past that refusal and fails where w2 cannot be
   reached, naming it, with cp1 and w1 unchanged.
3. After w2 boots and its kubelet reports Ready again, the same upgrade completes only w2.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_upgrade import (
    MIDDLE,
    TO,
    Cluster,
    assert_all_ready_at,
    kubelet_reports,
    mirror_entries,
    node_steps,
    upgrade,
    versions,
)

from capstan.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

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
        created: dict[str, Any] = create_cluster(spec=str(spec))
        yield Cluster(lab, spec, str(created["kubeconfig"]))
    finally:
        lab.down()


def ready(c: Cluster, name: str) -> str:
    node = c.nodes()[name]
    return str({x["type"]: x["status"] for x in node["status"]["conditions"]}.get("Ready"))


def wait_ready(c: Cluster, name: str, want: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while ready(c, name) != want:
        assert time.monotonic() < deadline, f"{name} did not turn Ready={want} in {timeout:g} s"
        time.sleep(2)


def test_a_worker_power_cut_mid_batch_fails_the_batch_force_and_a_retry_after_boot_completes(
    cut_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from capstan.tasks.upgrade import steps
    from capstan.tasks.upgrade.plan import UpgradeRefused

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

    # (2) w2 down: refused without force; with force, past the health check to w2 itself
    wait_ready(c, "w2", "Unknown", timeout=180)  # the controller's grace period (40 s) after the cut
    with pytest.raises(UpgradeRefused) as refused:
        upgrade(c, TO)
    print(refused.value)
    assert "cluster is not healthy" in str(refused.value)
    assert "w2: NotReady" in str(refused.value) and "--force" in str(refused.value)
    with pytest.raises(Exception) as forced:
        upgrade(c, TO, force=True)
    print(forced.value)
    assert not isinstance(forced.value, UpgradeRefused)
    assert "w2" in str(forced.value) and "cp1:" not in str(forced.value) and "w1:" not in str(forced.value)
    assert versions(c)["w2"] == f"v{MIDDLE}"

    # (3) w2 boots; its kubelet comes back with the machine; the preflight wants every node Ready
    c.lab.boot("w2")
    assert f"v{MIDDLE}" in kubelet_reports(c, "w2")
    wait_ready(c, "w2", "True")
    result = upgrade(c, TO)
    assert result["already"] == ["cp1", "w1"] and result["upgraded"] == ["w2"]
    assert result["steps"] == ["snapshot cp1", "etcd skipped", *node_steps("w2")]
    assert_all_ready_at(c, TO)
