"""Drain on a lab host: lightkube from this machine against the stand-in apiserver, controllers running.

One host (control plane, etcd member and worker) brought up as ``test_standins_api_lab`` does (its
``cp`` fixture): kubeadm init with the stand-ins, calico, the node Ready. The kubelet stand-in keeps real
mirror pods for its static control-plane pods; the controller stand-in runs Deployments, ReplicaSets
and DaemonSets, the scheduler places and "runs" pods. The workloads are set up with the real kubectl on
the host; capstan's drain talks to https://<cp1>:6443 with the admin kubeconfig, as the flows do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from lightkube import Client
from test_standins_api_lab import ControlPlane, cp, wait_for
from test_standins_lab import put

from capstan.kube.access import ApiAccess, parse_kubeconfig
from capstan.kube.drain import DrainBlocked, cordon, drain, drain_or_uncordon, uncordon

pytestmark = pytest.mark.lab

LAB_HOSTS = [("cp1", ["control-plane", "etcd", "worker"])]
__all__ = ["cp"]  # the imported module fixture: the lab above, kubeadm init, calico, cp1 Ready

WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/pause:3.10}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: Pod
metadata: {name: scratch, namespace: default, labels: {app: scratch}}
spec:
  containers: [{name: scratch, image: registry.k8s.io/pause:3.10}]
  volumes: [{name: tmp, emptyDir: {}}]
"""

GUARDED = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      containers: [{name: guarded, image: registry.k8s.io/pause:3.10}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded-pdb, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: guarded}}
"""


@pytest.fixture(scope="module")
def client(cp: ControlPlane) -> Iterator[Client]:
    raw = cp.lab.exec("cp1", ["cat", "/etc/kubernetes/admin.conf"]).stdout.encode()
    access = ApiAccess(
        parse_kubeconfig(raw, "cp1:/etc/kubernetes/admin.conf"), f"https://{cp.lab.ip('cp1')}:6443"
    )
    with access.client(timeout=20) as made:
        yield made


def _pods(cp: ControlPlane, selector: str = "") -> list[dict[str, Any]]:
    args = "get pods -A -o json --field-selector spec.nodeName=cp1" + (f" -l {selector}" if selector else "")
    return list(json.loads(cp.kubectl(args))["items"])


def _names(pods: list[dict[str, Any]]) -> set[str]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods}


def _running(cp: ControlPlane, selector: str, count: int) -> bool:
    pods = [p for p in _pods(cp, selector) if not p["metadata"].get("deletionTimestamp")]
    ready = [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    ]
    return len(pods) == count and len(ready) == count


def _unschedulable(cp: ControlPlane) -> bool:
    return bool(json.loads(cp.kubectl("get node cp1 -o json"))["spec"].get("unschedulable"))


def test_cordon_and_uncordon_are_idempotent(cp: ControlPlane, client: Client) -> None:
    assert cordon(client, "cp1") is True
    assert cordon(client, "cp1") is False
    assert _unschedulable(cp)
    assert uncordon(client, "cp1") is True
    assert uncordon(client, "cp1") is False
    assert not _unschedulable(cp)


def test_drain_evicts_workloads_and_skips_daemonset_and_mirror_pods(cp: ControlPlane, client: Client) -> None:
    put(cp.lab, "cp1", "/root/drain-workloads.yaml", WORKLOADS.encode())
    cp.kubectl("apply -f /root/drain-workloads.yaml")
    try:
        for selector in ("app=web", "app=agent", "app=scratch"):
            wait_for(partial(_running, cp, selector, 1), 180, f"one {selector} pod Running on cp1")
        web = _names(_pods(cp, "app=web")).pop()
        agent = _names(_pods(cp, "app=agent")).pop()
        mirrors = {
            n
            for n, p in ((f"{p['metadata']['namespace']}/{p['metadata']['name']}", p) for p in _pods(cp))
            if "kubernetes.io/config.mirror" in (p["metadata"].get("annotations") or {})
        }
        assert "kube-system/kube-apiserver-cp1" in mirrors

        report = drain(client, "cp1", timeout=180, retry_interval=1)

        assert report.node == "cp1" and report.cordoned and _unschedulable(cp)
        assert web in report.evicted
        assert "default/scratch (no controller: it will not be recreated)" in report.evicted
        assert f"{agent} (DaemonSet)" in report.skipped
        assert {f"{m} (mirror pod)" for m in mirrors} <= set(report.skipped)
        left = _names(_pods(cp))
        assert web not in left and "default/scratch" not in left
        assert agent in left and mirrors <= left
        # the ReplicaSet's replacement waits unscheduled: the node is cordoned
        replacement = json.loads(cp.kubectl("get pods -n default -l app=web -o json"))["items"]
        assert all(not (p.get("spec") or {}).get("nodeName") for p in replacement)
    finally:
        uncordon(client, "cp1")
        cp.kubectl("delete -f /root/drain-workloads.yaml --ignore-not-found --wait=false")


def test_a_budget_that_allows_no_eviction_blocks_and_the_node_is_uncordoned(
    cp: ControlPlane, client: Client
) -> None:
    put(cp.lab, "cp1", "/root/drain-guarded.yaml", GUARDED.encode())
    cp.kubectl("apply -f /root/drain-guarded.yaml")
    try:
        wait_for(lambda: _running(cp, "app=guarded", 2), 180, "2 guarded pods Running on cp1")
        guarded = _names(_pods(cp, "app=guarded"))

        with pytest.raises(DrainBlocked) as caught:
            drain_or_uncordon(client, "cp1", timeout=10, retry_interval=1)

        exc = caught.value
        assert exc.node == "cp1"
        why = "disruption budget default/guarded-pdb allows no eviction"
        why += " (needs 2 healthy pods and has 2 currently)"
        assert sorted(exc.blockers) == sorted(f"{name}: {why}" for name in guarded)
        assert "(node uncordoned)" in str(exc) and "guarded-pdb" in str(exc)
        assert not _unschedulable(cp)
        assert _names(_pods(cp, "app=guarded")) == guarded  # nothing under the budget was evicted
    finally:
        uncordon(client, "cp1")
        cp.kubectl("delete -f /root/drain-guarded.yaml --ignore-not-found --wait=false")
