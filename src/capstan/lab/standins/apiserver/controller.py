"""kube-controller-manager stand-in: a health endpoint and one small reconcile loop.

Each pass (every --node-monitor-period, at most 2 s): node lifecycle (a node whose kubelet stopped
reporting, by Ready-condition heartbeat or node Lease, for --node-monitor-grace-period gets Ready
"Unknown"; its pods lose Ready, and get it back when the node does, since no kubelet runs containers
here), a default ServiceAccount per namespace, PodDisruptionBudget status, the workload controllers
(``workloads.py``), kubelet CSRs (``csr.py``) and, when --controllers names it, the bootstrap signer
(``bootstrapsigner.py``). The node lifecycle controller's NoSchedule taints follow each node's
conditions (not-ready, unreachable, memory/disk/pid pressure, network-unavailable, and unschedulable
for a cordoned node) on a faster cadence of their own, since the real one reacts to every Node change
at once. SIMPLIFICATION: no NoExecute taints and no taint-based eviction. A failing pass is logged and
retried; the loop never exits on an API error. With --leader-elect (kubeadm's manifests set it) only
the holder of the kube-system/kube-controller-manager Lease acts (``common/leader.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..common import flags as fl
from ..common import kubetime
from ..common.client import ApiError, KubeClient
from ..common.health import serve_health, serving_context
from ..common.kubeconfig import KubeconfigError
from ..common.leader import LeaderElector
from . import bootstrapsigner, csr
from .eviction import budget
from .workloads import Workloads

log = logging.getLogger("kube-controller-manager")
Obj = dict[str, Any]
TAINT_FOR_CONDITION = {
    ("Ready", "False"): "node.kubernetes.io/not-ready",
    ("Ready", "Unknown"): "node.kubernetes.io/unreachable",
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MANAGED_TAINTS = frozenset({*TAINT_FOR_CONDITION.values(), UNSCHEDULABLE})
TAINT_PERIOD = 0.5
OFF_BY_DEFAULT = frozenset({"bootstrapsigner", "tokencleaner"})

_STRINGS = (
    "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "cluster-signing-cert-file",
    "cluster-signing-key-file", "root-ca-file", "service-account-private-key-file", "controllers",
    "cluster-cidr",
    "cluster-name", "requestheader-client-ca-file", "client-ca-file", "tls-cert-file", "tls-private-key-file",
    "feature-gates", "node-cidr-mask-size", "service-cluster-ip-range", "v", "terminated-pod-gc-threshold",
    "kube-api-qps", "kube-api-burst", "configure-cloud-routes", "pod-eviction-timeout",
    "leader-elect-lease-duration",
)  # fmt: skip
FLAGS = (
    *(fl.Flag(n) for n in _STRINGS),
    *(
        fl.Flag(n, boolean=True)
        for n in ("leader-elect", "use-service-account-credentials", "allocate-node-cidrs")
    ),
    fl.Flag("profiling", boolean=True),
    fl.Flag("version", boolean=True),
    fl.Flag("bind-address", "0.0.0.0"),
    fl.Flag("secure-port", "10257"),
    fl.Flag("node-monitor-grace-period", "40s"),
    fl.Flag("node-monitor-period", "5s"),
    fl.Flag("cluster-signing-duration", "8760h"),
)


class NodeLifecycle:
    """Marks silent nodes Unknown, from heartbeats observed on this process's own clock (as the real one),
    and keeps every node's condition taints in step with its conditions."""

    def __init__(self, api: KubeClient, grace: float) -> None:
        self.api = api
        self.grace = grace
        self.seen: dict[str, tuple[str, float]] = {}

    def sync(self) -> None:
        leases = {
            lease["metadata"]["name"]: (lease.get("spec") or {}).get("renewTime", "")
            for lease in self.api.items("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        }
        pods = self.api.items("/api/v1/pods")
        now = time.monotonic()
        nodes = self.api.items("/api/v1/nodes")
        self.seen = {k: v for k, v in self.seen.items() if k in {n["metadata"]["name"] for n in nodes}}
        for node in nodes:
            name = node["metadata"]["name"]
            ready = next(
                (c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                None,
            )
            beat = f"{(ready or {}).get('lastHeartbeatTime', '')}|{leases.get(name, '')}"
            last = self.seen.get(name)
            if last is None or last[0] != beat:
                self.seen[name] = (beat, now)
                last = self.seen[name]
            silent = now - last[1] > self.grace
            if silent and ready is not None and ready.get("status") != "Unknown":
                self._mark_unknown(node)
                log.info("node %s stopped posting status: Ready=Unknown", name)
            state = "True" if (ready or {}).get("status") == "True" and not silent else "False"
            self._pods_follow(name, state, pods)
        self.taint_pass()

    def taint_pass(self) -> None:
        """Bring every node's condition taints in line with its conditions."""
        for node in self.api.items("/api/v1/nodes"):
            want = wanted_taints(node)
            if want is None:
                continue
            have = list((node.get("spec") or {}).get("taints") or [])
            new = updated_taints(have, want)
            if new != have:
                meta = {"resourceVersion": node["metadata"]["resourceVersion"]}
                try:
                    self.api.patch(
                        f"/api/v1/nodes/{node['metadata']['name']}",
                        {"metadata": meta, "spec": {"taints": new or None}},
                    )
                except ApiError as exc:
                    if exc.status not in (404, 409):  # gone, or changed meanwhile: the next pass
                        raise

    def _mark_unknown(self, node: Obj) -> None:
        name, stamp = node["metadata"]["name"], kubetime.stamp()
        conditions = []
        for c in (node.get("status") or {}).get("conditions") or []:
            c = dict(c)
            c.update(status="Unknown", lastTransitionTime=stamp)
            c.update(reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
            conditions.append(c)
        rv = node["metadata"]["resourceVersion"]
        self.api.patch(
            f"/api/v1/nodes/{name}/status",
            {"metadata": {"resourceVersion": rv}, "status": {"conditions": conditions}},
        )

    def _pods_follow(self, node: str, state: str, pods: list[Obj]) -> None:
        for pod in pods:
            st = pod.get("status") or {}
            if (pod.get("spec") or {}).get("nodeName") != node or st.get("phase") != "Running":
                continue
            conds = st.get("conditions") or []
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == state:
                continue
            new = [
                dict(c, status=state, lastTransitionTime=kubetime.stamp())
                if c.get("type") in ("Ready", "ContainersReady")
                else c
                for c in conds
            ]
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            self.api.patch(
                path,
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": {"conditions": new}},
            )


def wanted_taints(node: Obj) -> set[str] | None:
    """The condition taint keys ``node`` should carry (None: no Ready condition yet, leave it alone)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Ready" for c in conditions):
        return None
    keys = {TAINT_FOR_CONDITION.get((c.get("type"), c.get("status")), "") for c in conditions} - {""}
    if (node.get("spec") or {}).get("unschedulable"):
        keys.add(UNSCHEDULABLE)
    return keys


def updated_taints(have: list[Obj], want: set[str]) -> list[Obj]:
    """``have`` without the managed NoSchedule taints not in ``want``, plus the missing ones appended."""

    def managed(t: Obj) -> bool:
        return t.get("effect") == "NoSchedule" and t.get("key") in MANAGED_TAINTS

    kept = [t for t in have if not managed(t) or t.get("key") in want]
    present = {t.get("key") for t in kept if managed(t)}
    return kept + [{"key": k, "effect": "NoSchedule"} for k in sorted(want - present)]


def controller_enabled(name: str, controllers: list[str]) -> bool:
    """--controllers as the real one reads it: ``*`` = the on-by-default ones, ``foo``/``-foo`` override."""
    star = False
    for item in controllers:
        if item == name:
            return True
        if item == f"-{name}":
            return False
        star = star or item == "*"
    return star and name not in OFF_BY_DEFAULT


def _service_accounts(api: KubeClient) -> None:
    have = {
        sa["metadata"]["namespace"]
        for sa in api.items("/api/v1/serviceaccounts")
        if sa["metadata"]["name"] == "default"
    }
    for ns in api.items("/api/v1/namespaces"):
        name = ns["metadata"]["name"]
        if name not in have and (ns.get("status") or {}).get("phase", "Active") == "Active":
            try:
                api.post(f"/api/v1/namespaces/{name}/serviceaccounts", {"metadata": {"name": "default"}})
            except ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise


def _pdb_status(api: KubeClient) -> None:
    pods = api.items("/api/v1/pods")
    scales = {
        o["metadata"]["uid"]: int((o.get("spec") or {}).get("replicas", 1))
        for plural in ("replicasets", "statefulsets")
        for o in api.items(f"/apis/apps/v1/{plural}")
    }
    for pdb in api.items("/apis/policy/v1/poddisruptionbudgets"):
        meta = pdb["metadata"]
        mine = [p for p in pods if p["metadata"]["namespace"] == meta["namespace"]]
        numbers: Obj = budget(pdb, mine, scales)
        numbers["observedGeneration"] = meta.get("generation", 1)
        current = pdb.get("status") or {}
        if any(current.get(k) != v for k, v in numbers.items()):
            path = (
                f"/apis/policy/v1/namespaces/{meta['namespace']}/poddisruptionbudgets/{meta['name']}/status"
            )
            api.patch(path, {"status": numbers})


def _every(
    period: float,
    steps: list[Callable[[], object]],
    stop: threading.Event,
    leading: Callable[[], bool] = lambda: True,
) -> None:
    """Run ``steps`` in order every ``period`` seconds while ``leading()``; a failing step does not
    stop the others."""
    while not stop.is_set():
        for step in steps if leading() else []:
            try:
                step()
            except ApiError as exc:
                log.warning("reconcile step failed (retrying next pass): %s", exc)
        stop.wait(period)


def run(
    api: KubeClient,
    grace: float,
    period: float,
    signer: csr.Signer | None,
    stop: threading.Event,
    controllers: list[str] | None = None,
    leading: Callable[[], bool] = lambda: True,
) -> None:
    enabled = controllers or ["*"]
    nodes, workloads = NodeLifecycle(api, grace), Workloads(api)
    steps: list[Callable[[], object]] = [
        nodes.sync,
        lambda: _service_accounts(api),
        workloads.sync,
        lambda: _pdb_status(api),
        lambda: csr.sync(api, signer),
    ]
    if controller_enabled("bootstrapsigner", enabled):
        steps.append(lambda: bootstrapsigner.sync(api))
    threading.Thread(
        target=_every, args=(TAINT_PERIOD, [nodes.taint_pass], stop, leading), name="node-taints", daemon=True
    ).start()
    _every(period, steps, stop, leading)


def main(argv: list[str], version: str) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(levelname).1s%(asctime)s %(process)d %(name)s] %(message)s",
    )
    try:
        f = fl.parse(argv, FLAGS)
        if f.get_bool("version"):
            print(f"Kubernetes v{version}")
            return 0
        for arg in f.unknown:
            log.warning("flag %s is not modelled by the stand-in and is ignored", arg.split("=", 1)[0])
        if not f.get_str("kubeconfig"):
            raise fl.FlagError("--kubeconfig is required (the stand-in has no in-cluster configuration)")
        api = KubeClient.from_kubeconfig(f.get_str("kubeconfig"), keep_alive=True)
        grace, period = (
            f.get_duration("node-monitor-grace-period"),
            min(f.get_duration("node-monitor-period"), 2.0),
        )
        signer = None
        cert, key = f.get_str("cluster-signing-cert-file"), f.get_str("cluster-signing-key-file")
        if bool(cert) != bool(key):
            raise fl.FlagError("--cluster-signing-cert-file and --cluster-signing-key-file go together")
        if cert:
            signer = csr.Signer(cert, key, f.get_duration("cluster-signing-duration"))
        context = serving_context(
            f.get_str("tls-cert-file"), f.get_str("tls-private-key-file"), "kube-controller-manager"
        )
        health = serve_health(f.get_str("bind-address"), f.get_int("secure-port"), context=context)
    except (fl.FlagError, KubeconfigError, OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "kube-controller-manager stand-in v%s (pid %d), health on :%d",
        version,
        os.getpid(),
        health.server_address[1],
    )
    elector = LeaderElector(api, "kube-controller-manager") if f.get_bool("leader-elect") else None
    leading = elector.leading if elector else (lambda: True)
    run(api, grace, max(period, 0.2), signer, stop, f.get_list("controllers"), leading)
    if elector:
        elector.release()
    health.shutdown()
    return 0
