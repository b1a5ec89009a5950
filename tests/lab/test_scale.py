"""scale-cluster on lab hosts: new nodes join and turn Ready, existing hosts change only where they must.

Each lab has three hosts; the cluster is created from a spec listing two of them (cp1, control plane +
etcd, and w1), then scaled with the lab's full spec. Adding worker w2: w1 is cut off the network before
the scale-out (an existing worker that needs no change must not block it) and no existing host is
touched. Adding control plane cp2: every existing node's local balancer gets the new backend and is
restarted, and nothing else on those hosts is. Ground truth: the machine's kubectl against
the admin kubeconfig create wrote, and the main PIDs/start times of the services on the existing hosts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_create_cluster import kubectl_nodes, sh, standin_entries, started_processes

from capstan.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

HOSTS = [("cp1", ["control-plane", "etcd"]), ("w1", ["worker"]), ("w2", ["worker"])]
CP_HOSTS = [("cp1", ["control-plane", "etcd"]), ("w1", ["worker"]), ("cp2", ["control-plane"])]


@pytest.fixture
def lab() -> Iterator[Lab]:
    made = Lab.up(Lab.free_name(f"t{os.getpid()}sc"), HOSTS, mirror_entries=standin_entries())
    try:
        yield made
    finally:
        made.down()


@pytest.fixture
def cp_lab() -> Iterator[Lab]:
    made = Lab.up(Lab.free_name(f"t{os.getpid()}scp"), CP_HOSTS, mirror_entries=standin_entries())
    try:
        yield made
    finally:
        made.down()


def spec_without(lab: Lab, drop: str, path: Path) -> Path:
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] != drop]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ready(kubeconfig: str) -> dict[str, bool]:
    out = {}
    for node in kubectl_nodes(kubeconfig):
        conds = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        out[node["metadata"]["name"]] = conds.get("Ready") == "True"
    return out


def test_scale_adds_a_worker_while_an_existing_worker_is_cut(lab: Lab, tmp_path: Path) -> None:
    from capstan.flows.create import create_cluster
    from capstan.flows.scale import scale_cluster

    small = spec_without(lab, "w2", tmp_path / "cluster-2.yaml")
    started = time.monotonic()
    created: dict[str, Any] = create_cluster(spec=str(small))
    print(f"create cp1+w1: {time.monotonic() - started:.1f} s")
    kubeconfig = created["kubeconfig"]
    assert ready(kubeconfig) == {"cp1": True, "w1": True}
    before = started_processes(lab, ["cp1", "w1"])

    lab.cut("w1")
    try:
        started = time.monotonic()
        result: dict[str, Any] = scale_cluster(spec=str(lab.spec_path))
        print(f"scale +w2 (w1 cut): {time.monotonic() - started:.1f} s")
    finally:
        lab.heal("w1")
    print({h: (i["changed"], i["unchanged"]) for h, i in result["hosts"].items()})
    assert result["added"] == ["w2"] and result["workers_added"] == ["w2"]
    assert result["lb_refreshed"] == [] and result["untouched"] == ["cp1", "w1"]
    assert "w1" not in result["hosts"]  # never contacted
    assert result["hosts"].get("cp1", {"changed": 0})["changed"] == 0
    assert result["hosts"]["w2"]["changed"] > 0
    assert ready(kubeconfig)["w2"] is True
    assert started_processes(lab, ["cp1", "w1"]) == before  # nothing restarted on existing hosts

    again: dict[str, Any] = scale_cluster(spec=str(lab.spec_path))
    assert again["added"] == [] and again["changed"] == 0


def test_scale_adds_a_control_plane_and_updates_every_node_local_balancer(
    cp_lab: Lab, tmp_path: Path
) -> None:
    from capstan.flows.create import create_cluster
    from capstan.flows.scale import scale_cluster

    lab = cp_lab
    small = spec_without(lab, "cp2", tmp_path / "cluster-2.yaml")
    created: dict[str, Any] = create_cluster(spec=str(small))
    kubeconfig = created["kubeconfig"]
    before = started_processes(lab, ["cp1", "w1"])

    started = time.monotonic()
    result: dict[str, Any] = scale_cluster(spec=str(lab.spec_path))
    print(f"scale +cp2: {time.monotonic() - started:.1f} s")
    print({h: {p: v["changed"] for p, v in i["phases"].items()} for h, i in result["hosts"].items()})
    assert result["control_planes_added"] == ["cp2"] and result["workers_added"] == []
    assert result["lb_refreshed"] == ["cp1", "w1"] and result["untouched"] == []
    for host in ("cp1", "w1"):  # only the balancer changed there
        phases = result["hosts"][host]["phases"]
        assert list(phases) == ["api-lb"] and phases["api-lb"]["changed"] > 0
        assert lab.ip("cp2") in sh(lab, host, "cat /etc/kube-lb/haproxy.cfg")
    assert ready(kubeconfig)["cp2"] is True
    after = started_processes(lab, ["cp1", "w1"])
    for host in ("cp1", "w1"):  # the balancer restarted with its new backends, nothing else did
        assert after[host].pop("kube-apiserver-lb") != before[host].pop("kube-apiserver-lb")
        assert after[host] == before[host]

    again: dict[str, Any] = scale_cluster(spec=str(lab.spec_path))
    assert again["added"] == [] and again["changed"] == 0
