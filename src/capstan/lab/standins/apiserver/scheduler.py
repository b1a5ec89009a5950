"""kube-scheduler stand-in: a health endpoint and a loop that places Pending pods.

Each pass (every second) takes the pods with no ``spec.nodeName`` for the default scheduler, filters
nodes as ``scheduling.py`` says (schedulable unless tolerated, taints incl. the not-ready/unreachable
ones, nodeSelector, required node affinity) and binds each pod to the least-loaded node through the
pods/binding subresource, as the real scheduler does. SIMPLIFICATION: there is no container runtime
behind the lab's kubelets, so the scheduler then marks the pod Running itself (pods "run" by status
only), Ready when its node is Ready. With --leader-elect (kubeadm's manifests set it) only the holder
of the kube-system/kube-scheduler Lease schedules (``common/leader.py``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

import yaml

from ..common import flags as fl
from ..common import kubetime
from ..common.client import ApiError, KubeClient
from ..common.health import serve_health, serving_context
from ..common.kubeconfig import KubeconfigError
from ..common.leader import LeaderElector
from .scheduling import why_not

log = logging.getLogger("kube-scheduler")
Obj = dict[str, Any]
_STRINGS = (
    "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "config", "tls-cert-file",
    "tls-private-key-file", "feature-gates", "v", "leader-elect-lease-duration", "kube-api-qps",
    "kube-api-burst",
)  # fmt: skip
FLAGS = (
    *(fl.Flag(n) for n in _STRINGS),
    fl.Flag("leader-elect", boolean=True),
    fl.Flag("profiling", boolean=True),
    fl.Flag("version", boolean=True),
    fl.Flag("bind-address", "0.0.0.0"),
    fl.Flag("secure-port", "10259"),
)


def _running_status(pod: Obj, node: Obj) -> Obj:
    now = kubetime.stamp()
    addrs = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
    node_ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )
    states = {"PodScheduled": True, "Initialized": True, "ContainersReady": node_ready, "Ready": node_ready}
    conds = [
        {"type": t, "status": "True" if ok else "False", "lastTransitionTime": now}
        for t, ok in states.items()
    ]
    containers = [
        {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": "",
            "ready": node_ready,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    status: Obj = {"phase": "Running", "conditions": conds, "startTime": now, "containerStatuses": containers}
    if addrs.get("InternalIP"):
        status["hostIP"] = addrs["InternalIP"]
        if (pod.get("spec") or {}).get("hostNetwork"):
            status["podIP"] = addrs["InternalIP"]
    return status


def schedule_once(api: KubeClient) -> int:
    """One pass; returns how many pods were bound.

    Only when a pod waits for a node are all pods and nodes listed (to spread the load): the pass
    runs every second, and most passes have nothing to place.
    """
    if not api.items("/api/v1/pods", {"fieldSelector": "spec.nodeName="}):
        return 0
    pods = api.items("/api/v1/pods")
    nodes = api.items("/api/v1/nodes")
    load = {n["metadata"]["name"]: 0 for n in nodes}
    for p in pods:
        bound = (p.get("spec") or {}).get("nodeName")
        if bound in load:
            load[bound] += 1
    placed = 0
    for pod in pods:
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        if (
            spec.get("nodeName")
            or meta.get("deletionTimestamp")
            or (pod.get("status") or {}).get("phase") != "Pending"
        ):
            continue
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            continue
        reasons: dict[str, int] = {}
        fits = []
        for n in nodes:
            why = why_not(pod, n)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
            else:
                fits.append(n)
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if not fits:
            detail = ", ".join(f"{c} {r}" for r, c in sorted(reasons.items()))
            msg = (
                f"0/{len(nodes)} nodes are available: {detail}."
                if nodes
                else "no nodes available to schedule pods"
            )
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}
            old = [
                c
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ]
            if not old or old[0].get("message") != msg:
                api.patch(
                    path + "/status",
                    {"status": {"conditions": [dict(cond, lastTransitionTime=kubetime.stamp())]}},
                )
            continue
        target = min(fits, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
        name = target["metadata"]["name"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": name},
        }
        try:
            api.post(path + "/binding", binding)
        except ApiError as exc:
            if exc.status in (404, 409):
                continue  # deleted or bound by someone else meanwhile
            raise
        api.patch(path + "/status", {"status": _running_status(pod, target)})
        load[name] += 1
        placed += 1
        log.info("bound %s/%s to %s", meta["namespace"], meta["name"], name)
    return placed


def _kubeconfig_from(f: fl.Flags) -> str:
    if f.get_str("kubeconfig"):
        return f.get_str("kubeconfig")
    if f.get_str("config"):
        try:
            with open(f.get_str("config")) as fh:
                doc = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise fl.FlagError(f"--config {f.get_str('config')}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "KubeSchedulerConfiguration":
            raise fl.FlagError(f"--config {f.get_str('config')}: kind must be KubeSchedulerConfiguration")
        path = (doc.get("clientConnection") or {}).get("kubeconfig")
        if isinstance(path, str) and path:
            return path
    raise fl.FlagError("--kubeconfig (or --config with clientConnection.kubeconfig) is required")


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
        api = KubeClient.from_kubeconfig(_kubeconfig_from(f), keep_alive=True)
        context = serving_context(
            f.get_str("tls-cert-file"), f.get_str("tls-private-key-file"), "kube-scheduler"
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
    log.info("kube-scheduler stand-in v%s, health on :%d", version, health.server_address[1])
    elector = LeaderElector(api, "kube-scheduler") if f.get_bool("leader-elect") else None
    while not stop.is_set():
        try:
            if elector is None or elector.leading():
                schedule_once(api)
        except ApiError as exc:
            log.warning("scheduling pass failed (retrying): %s", exc)
        stop.wait(1.0)
    if elector:
        elector.release()
    health.shutdown()
    return 0
