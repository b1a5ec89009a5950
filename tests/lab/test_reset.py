"""reset-cluster on a real two-host cluster made by the create flow, then create again on the same hosts.

One control-plane+etcd host and one worker. Ground truth after the reset is the hosts' own facts (units
and paths gathered over SSH by ``capstan.facts``), and the proof that nothing stale was left behind is a
second ``create_cluster`` on the same hosts ending with every node Ready. A worker whose network is cut
fails the reset naming it while the control plane is reset all the same.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from lab_mirror import mirror_entries

from capstan.errors import PhaseFailed
from capstan.facts import FactsQuery, HostFacts, gather_facts
from capstan.lab import Lab
from capstan.spec import load_spec
from capstan.tasks.reset.plan import reset_targets
from capstan.tasks.session import fabric_transport

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

HOSTS = [("cp1", ["control-plane", "etcd"]), ("w1", ["worker"])]
UNITS = ("kubelet.service", "kube-apiserver-lb.service", "etcd.service", "containerd.service")
MUST_BE_GONE = (
    "/etc/kubernetes", "/etc/kube-lb", "/etc/containerd", "/etc/etcd.env", "/etc/etcdctl.env",
    "/etc/ssl/etcd", "/etc/sysctl.d/99-capstan.conf", "/etc/modules-load.d/capstan.conf",
    "/var/lib/etcd", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/capstan", "/opt/cni/bin",
    "/usr/local/bin/kubeadm", "/usr/local/bin/kubelet", "/usr/local/bin/kubectl", "/usr/local/bin/etcd",
    "/usr/local/bin/etcdctl", "/usr/local/bin/containerd", "/usr/local/bin/runc",
    "/etc/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d",
    "/etc/systemd/system/etcd.service", "/etc/systemd/system/containerd.service",
    "/etc/systemd/system/kube-apiserver-lb.service",
)  # fmt: skip


@pytest.fixture(scope="module")
def cluster(prefect_api: None) -> Iterator[Lab]:
    from capstan.flows.create import create_cluster

    lab = Lab.up(Lab.free_name(f"t{os.getpid()}rs"), HOSTS, mirror_entries=mirror_entries())
    try:
        started = time.monotonic()
        create_cluster(spec=str(lab.spec_path))
        print(f"create: {time.monotonic() - started:.1f} s")
        yield lab
    finally:
        lab.down()


def host_facts(lab: Lab, host: str) -> HostFacts:
    spec = load_spec(lab.spec_path)
    targets = reset_targets(spec, spec.host(host))
    gone = [p for p in MUST_BE_GONE if p != "/var/lib/etcd" or spec.host(host).has("etcd")]
    # (the machine's etcd package made /var/lib/etcd in the lower layer every lab host shares: on a
    # host that never was an etcd member it is the OS's, not capstan's)
    query = FactsQuery(units=UNITS, files=(*gone, *targets.all_paths), binaries=())
    t = fabric_transport(spec, spec.host(host))
    try:
        return gather_facts(t, query)
    finally:
        t.close()


def leftovers(facts: HostFacts) -> list[str]:
    left = [p for p in facts.files if facts.file(p) is not None]
    # capstan's unit files are in MUST_BE_GONE; a unit the OS package ships may stay, disabled and stopped.
    left += [
        u
        for u in UNITS
        if facts.unit(u).enabled or facts.unit(u).active_state in ("active", "activating", "failed")
    ]
    return left


def test_reset_leaves_clean_hosts_and_create_works_again(cluster: Lab) -> None:
    from capstan.flows.create import create_cluster
    from capstan.flows.reset import reset_cluster

    before = host_facts(cluster, "cp1")
    assert before.unit("etcd.service").active and before.unit("kubelet.service").active
    assert before.file("/var/lib/etcd") is not None

    # An unreachable worker fails the run naming it; the control plane is reset all the same.
    cluster.cut("w1")
    try:
        started = time.monotonic()
        with pytest.raises(PhaseFailed, match="w1") as failed:
            reset_cluster(spec=str(cluster.spec_path))
        print(f"reset with w1 cut: {time.monotonic() - started:.1f} s: {failed.value}")
        assert "cp1" not in str(failed.value)
    finally:
        cluster.heal("w1")
    cluster.wait_ssh("w1")
    assert leftovers(host_facts(cluster, "cp1")) == []
    assert leftovers(host_facts(cluster, "w1")) != []

    started = time.monotonic()
    result = reset_cluster(spec=str(cluster.spec_path))
    print(f"reset: {time.monotonic() - started:.1f} s: {json.dumps(result['hosts'])}")
    assert result["hosts"]["cp1"]["changed"] == 0  # nothing left there: a no-op
    assert result["hosts"]["w1"]["changed"] > 0
    for host in ("cp1", "w1"):
        assert leftovers(host_facts(cluster, host)) == [], host

    again = reset_cluster(spec=str(cluster.spec_path), hosts=["w1"])
    assert list(again["hosts"]) == ["w1"] and again["changed"] == 0

    started = time.monotonic()
    create_cluster(spec=str(cluster.spec_path))
    print(f"create again: {time.monotonic() - started:.1f} s")
    res = cluster.exec(
        "cp1",
        ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "get", "nodes", "-o", "json"],
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    nodes = json.loads(res.stdout)["items"]
    ready = {
        n["metadata"]["name"]: any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])
        )
        for n in nodes
    }
    assert ready == {"cp1": True, "w1": True}
