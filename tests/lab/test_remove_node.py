"""remove-node on clusters made by the create flow: a worker, a dead etcd member, the first control plane.

Two labs, because a 3-member etcd can lose only one member per lab here: the spec of a second removal
would list two etcd hosts, which the spec checks reject (an even count). Lab one (cp1..cp3 control plane
+ etcd, w1 worker): the worker is removed and nothing else is touched; then cp3 is powered off, removing
cp2 is refused (quorum), and cp3 is removed with ``--unreachable`` without any SSH attempt to it. Lab two
(cp1..cp3): the first control plane is removed (its cluster secrets handed to cp2), then removing the
last control plane of a one-control-plane spec is refused.

Ground truth: the machine's kubectl, etcdctl on a remaining member, the files on the remaining hosts
(apiserver manifests, haproxy configs), the removed host's facts (nothing of capstan's left) and the
main PIDs/start times of the services on hosts that must not change.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_create_cluster import (
    ETCDCTL_CERTS,
    KUBECTL,
    kubectl_nodes,
    sh,
    standin_entries,
    started_processes,
)

from capstan.facts import FactsQuery, gather_facts
from capstan.lab import Lab
from capstan.remote.base import Transport
from capstan.spec import load_spec
from capstan.spec.models import Cluster, Host
from capstan.tasks.remove.model import RemoveRefused
from capstan.tasks.session import fabric_transport

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

CP_ETCD = ["control-plane", "etcd"]
HOSTS = [("cp1", CP_ETCD), ("cp2", CP_ETCD), ("cp3", CP_ETCD), ("w1", ["worker"])]
MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
HAPROXY = "/etc/kube-lb/haproxy.cfg"
SECRETS = "/etc/kubernetes/capstan/cluster-secrets.json"


@dataclass(frozen=True)
class Made:
    lab: Lab
    kubeconfig: str


def made(tag: str, hosts: Any) -> Iterator[Made]:
    from capstan.flows.create import create_cluster

    lab = Lab.up(Lab.free_name(f"t{os.getpid()}{tag}"), hosts, mirror_entries=standin_entries())
    try:
        started = time.monotonic()
        result: dict[str, Any] = create_cluster(spec=str(lab.spec_path))
        print(f"create {len(lab.hosts)} hosts: {time.monotonic() - started:.1f} s")
        yield Made(lab, result["kubeconfig"])
    finally:
        lab.down()


@pytest.fixture(scope="module")
def lab_one(prefect_api: None) -> Iterator[Made]:
    yield from made("rm", HOSTS)


@pytest.fixture(scope="module")
def lab_two(prefect_api: None) -> Iterator[Made]:
    yield from made("rmcp", HOSTS[:3])


def spec_of(lab: Lab, hosts: list[str], path: Path) -> Path:
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] in hosts]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def node_names(kubeconfig: str) -> set[str]:
    return {n["metadata"]["name"] for n in kubectl_nodes(kubeconfig)}


def members(lab: Lab, host: str) -> dict[str, list[str]]:
    """etcd's member list as name -> peer URLs, asked of ``host``'s own member."""
    out = sh(lab, host, f"etcdctl {ETCDCTL_CERTS} --endpoints=https://127.0.0.1:2379 member list -w json")
    return {m.get("name", ""): m.get("peerURLs", []) for m in json.loads(out)["members"]}


def etcd_servers(lab: Lab, host: str) -> str:
    line = [x for x in sh(lab, host, f"cat {MANIFEST}").splitlines() if "--etcd-servers=" in x]
    assert len(line) == 1, line
    return line[0]


def leftovers(lab: Lab, host: str) -> list[str]:
    """What of a node's kubelet is still on ``host`` (its unit, binary, config)."""
    spec = load_spec(lab.spec_path)
    t = fabric_transport(spec, spec.host(host))
    paths = ("/usr/local/bin/kubelet", "/etc/systemd/system/kubelet.service", "/etc/kubernetes")
    try:
        facts = gather_facts(t, FactsQuery(units=("kubelet.service",), files=paths, binaries=()))
    finally:
        t.close()
    left = [p for p in paths if facts.file(p) is not None]
    unit = facts.unit("kubelet.service")
    return left + (["kubelet.service"] if unit.enabled or unit.active else [])


def kubectl_ok(kubeconfig: str) -> None:
    subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "ns"], check=True, timeout=60, capture_output=True
    )


class Recorder:
    """The real SSH transport factory, remembering every host a connection was made for."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    def __call__(self, cluster: Cluster, host: Host) -> Transport:
        self.hosts.append(host.name)
        return fabric_transport(cluster, host)


def test_remove_worker_touches_nothing_else(lab_one: Made) -> None:
    from capstan.flows.remove_node import remove_node

    lab, kubeconfig = lab_one.lab, lab_one.kubeconfig
    before = started_processes(lab, ["cp1", "cp2", "cp3"])
    started = time.monotonic()
    result: dict[str, Any] = remove_node(spec=str(lab.spec_path), node="w1")
    print(f"remove w1: {time.monotonic() - started:.1f} s", result["hosts"], result["api"])
    assert "w1" not in node_names(kubeconfig)
    assert leftovers(lab, "w1") == []
    assert list(result["hosts"]) == ["w1"] and result["hosts"]["w1"]["changed"] > 0
    assert result["changed_hosts"] == [] and result["untouched"] == ["cp1", "cp2", "cp3"]
    assert result["etcd_member_removed"] is None and result["node_deleted"] is True
    assert started_processes(lab, ["cp1", "cp2", "cp3"]) == before

    again: dict[str, Any] = remove_node(spec=str(lab.spec_path), node="w1")
    assert again["changed"] == 0 and again["node_deleted"] is False


def test_quorum_refused_then_dead_member_removed_unreachable(lab_one: Made, tmp_path: Path) -> None:
    from prefect import flow

    from capstan.flows.remove_node import run_remove

    lab, kubeconfig = lab_one.lab, lab_one.kubeconfig
    spec = spec_of(lab, ["cp1", "cp2", "cp3"], tmp_path / "cluster.yaml")
    cp3_ip = lab.ip("cp3")
    lab.crash("cp3")

    # cp2's member is healthy and cp3's is not: without cp2, 1 of 2 members would be healthy.
    recorder = Recorder()

    @flow(name="remove-node-recorded")
    def remove(node: str, unreachable: bool) -> dict[str, Any]:
        return run_remove(str(spec), node, unreachable=unreachable, factory=recorder)

    with pytest.raises(RemoveRefused, match="quorum"):
        remove("cp2", False)
    assert set(members(lab, "cp1")) == {"cp1", "cp2", "cp3"}
    assert {"cp2", "cp3"} <= node_names(kubeconfig)

    recorder.hosts.clear()
    started = time.monotonic()
    result = remove("cp3", True)
    print(f"remove cp3 --unreachable: {time.monotonic() - started:.1f} s", result["hosts"], result["api"])
    assert "cp3" not in recorder.hosts  # never an SSH attempt to the dead host
    assert set(members(lab, "cp1")) == {"cp1", "cp2"}
    assert "cp3" not in node_names(kubeconfig)
    for host in ("cp1", "cp2"):
        assert cp3_ip not in etcd_servers(lab, host)
        assert cp3_ip not in sh(lab, host, f"cat {HAPROXY}")
    assert set(result["changed_hosts"]) == {"cp1", "cp2"}
    kubectl_ok(kubeconfig)


def test_remove_first_control_plane_hands_over(
    lab_two: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from capstan.cli import main
    from capstan.flows.remove_node import remove_node

    lab = lab_two.lab
    secrets = sh(lab, "cp1", f"cat {SECRETS}")
    cp1_ip = lab.ip("cp1")
    before = started_processes(lab, ["cp2", "cp3"])
    started = time.monotonic()
    result: dict[str, Any] = remove_node(spec=str(lab.spec_path), node="cp1")
    with capsys.disabled():
        print(f"remove cp1: {time.monotonic() - started:.1f} s", result["hosts"], result["api"])
    assert result["etcd_member_removed"] and result["node_deleted"] is True
    assert sh(lab, "cp2", f"cat {SECRETS}") == secrets
    assert set(members(lab, "cp2")) == {"cp2", "cp3"}
    for host in ("cp2", "cp3"):
        assert cp1_ip not in etcd_servers(lab, host)
        assert cp1_ip not in sh(lab, host, f"cat {HAPROXY}")
    kubeconfig = result["kubeconfig"]
    assert kubeconfig and "cp1" not in node_names(kubeconfig)
    kubectl_ok(kubeconfig)
    assert leftovers(lab, "cp1") == []
    after = started_processes(lab, ["cp2", "cp3"])
    for host in ("cp2", "cp3"):  # the apiserver and the balancer restarted; etcd, kubelet did not
        assert after[host]["etcd"] == before[host]["etcd"]
        assert after[host]["kubelet"] == before[host]["kubelet"]
        assert after[host]["kube-apiserver"] != before[host]["kube-apiserver"]

    again: dict[str, Any] = remove_node(spec=str(lab.spec_path), node="cp1")
    with capsys.disabled():
        print("again:", {h: i["changed"] for h, i in again["hosts"].items()}, again["api"])
    assert again["changed"] == 0 and again["changed_hosts"] == []
    assert again["etcd_member_removed"] is None and again["node_deleted"] is False

    # The spec after the removal lists cp2 and cp3; one with cp2 alone is refused, naming why.
    only = spec_of(lab, ["cp2"], tmp_path / "one.yaml")
    capsys.readouterr()
    assert main(["remove-node", "-f", str(only), "cp2"]) == 2
    assert "cp2 is the last control plane" in capsys.readouterr().err
    assert set(members(lab, "cp2")) == {"cp2", "cp3"}
