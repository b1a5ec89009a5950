"""kube-controller-manager stand-in: a health endpoint and one small reconcile loop.

Each pass (every --node-monitor-period, at most 2 s): node lifecycle (a node whose kubelet stopped
reporting, by Ready-condition heartbeat or node Lease, for --node-monitor-grace-period gets Ready
"Unknown" and the unreachable taint; its pods lose Ready, and get it back when the node does, since no
kubelet runs containers here), a default ServiceAccount per namespace, PodDisruptionBudget status,
the workload controllers (``workloads.py``) and kubelet CSRs (``csr.py``). A failing pass is logged
and retried; the loop never exits on an API error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from ..common import flags as fl
from ..common import kubetime
from ..common.client import ApiError, KubeClient
from ..common.health import serve_health, serving_context
from ..common.kubeconfig import KubeconfigError
from . import csr
from .eviction import budget
from .workloads import Workloads

log = logging.getLogger("kube-controller-manager")
Obj = dict[str, Any]
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}

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
    """Marks silent nodes Unknown, from heartbeats observed on this process's own clock (as the real one)."""

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
            elif not silent and ready is not None and ready.get("status") == "True":
                self._clear_taint(node)
            state = "True" if (ready or {}).get("status") == "True" and not silent else "False"
            self._pods_follow(name, state, pods)

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
        fresh = self.api.get(f"/api/v1/nodes/{name}")
        taints = list((fresh.get("spec") or {}).get("taints") or [])
        if not any(t.get("key") == UNREACHABLE["key"] for t in taints):
            taints.append({**UNREACHABLE, "timeAdded": stamp})
            meta = {"resourceVersion": fresh["metadata"]["resourceVersion"]}
            self.api.patch(f"/api/v1/nodes/{name}", {"metadata": meta, "spec": {"taints": taints}})

    def _clear_taint(self, node: Obj) -> None:
        taints = list((node.get("spec") or {}).get("taints") or [])
        kept = [t for t in taints if t.get("key") != UNREACHABLE["key"]]
        if len(kept) != len(taints):
            meta = {"resourceVersion": node["metadata"]["resourceVersion"]}
            self.api.patch(
                f"/api/v1/nodes/{node['metadata']['name']}",
                {"metadata": meta, "spec": {"taints": kept or None}},
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


def run(
    api: KubeClient, grace: float, period: float, signer: csr.Signer | None, stop: threading.Event
) -> None:
    nodes, workloads = NodeLifecycle(api, grace), Workloads(api)
    steps = (
        nodes.sync,
        lambda: _service_accounts(api),
        workloads.sync,
        lambda: _pdb_status(api),
        lambda: csr.sync(api, signer),
    )
    while not stop.is_set():
        for step in steps:
            try:
                step()
            except ApiError as exc:
                log.warning("reconcile step failed (retrying next pass): %s", exc)
        stop.wait(period)


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
        api = KubeClient.from_kubeconfig(f.get_str("kubeconfig"))
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
    run(api, grace, max(period, 0.2), signer, stop)
    health.shutdown()
    return 0
