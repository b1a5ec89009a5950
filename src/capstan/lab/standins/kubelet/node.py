"""The Node object: registration, status reports, the node Lease, and mirror pods.

As a real kubelet: the Node is created once with its labels (``kubernetes.io/hostname``, os/arch and
``--node-labels``) and taints (``--register-with-taints``); when it already exists only the default
labels are reconciled (``--node-labels`` are not re-applied). Registration is attempted until it
succeeds and never again afterwards, so a Node deleted while the kubelet runs stays deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capstan.lab.standins.kubeadm.rest import Api, RestError
from capstan.lab.standins.kubelet.pods import PodState

log = logging.getLogger("kubelet")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(file: str, default: str = "") -> str:
    try:
        return Path(file).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def _memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


class NodeAgent:
    """Talks to the API for one node."""

    def __init__(
        self, api: Api, name: str, ip: str, version: str, runtime_version: str, config: dict[str, Any]
    ):
        self.api = api
        self.name = name
        self.ip = ip
        self.version = "v" + version.removeprefix("v")
        self.runtime_version = runtime_version
        self.config = config
        self.registered = False
        self.ready_since = ""
        self.last_ready: bool | None = None
        self.mirrors: dict[str, str] = {}  # pod -> the manifest sha its mirror reflects
        self.mirror_status: dict[str, str] = {}  # pod -> the status its mirror was last given (JSON)
        self.lease_error = ""

    def default_labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": ARCH,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": ARCH,
        }

    def register(self, labels: dict[str, str], taints: list[dict[str, str]]) -> bool:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {**labels, **self.default_labels()},
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {"taints": taints} if taints else {},
        }
        try:
            self.api.post("/api/v1/nodes", body)
            log.info("successfully registered node %s", self.name)
        except RestError as exc:
            if exc.status != 409:
                log.warning("unable to register node %s with the API server: %s", self.name, exc)
                return False
            try:
                self.api.patch(f"/api/v1/nodes/{self.name}", {"metadata": {"labels": self.default_labels()}})
            except RestError as exc2:
                log.warning("unable to reconcile the existing node %s: %s", self.name, exc2)
                return False
            log.info("node %s was previously registered", self.name)
        self.registered = True
        return True

    def status(self, ready: bool, message: str) -> dict[str, Any]:
        now = stamp()
        if ready != self.last_ready:
            self.ready_since, self.last_ready = now, ready
        max_pods = str(self.config.get("maxPods", 110))
        resources = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_ki()}Ki",
            "pods": max_pods,
            "ephemeral-storage": "10Gi",
        }

        def cond(kind: str, status: bool, reason: str, msg: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": "True" if status else "False",
                "reason": reason,
                "message": msg,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self.ready_since,
            }

        return {
            "addresses": [
                {"type": "InternalIP", "address": self.ip},
                {"type": "Hostname", "address": self.name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond(
                    "MemoryPressure",
                    False,
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond(
                    "Ready",
                    ready,
                    "KubeletReady" if ready else "KubeletNotReady",
                    "kubelet is posting ready status" if ready else message,
                ),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": int(self.config.get("port", 10250))}},
            "nodeInfo": {
                "architecture": ARCH,
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "containerRuntimeVersion": self.runtime_version,
                "kernelVersion": platform.release(),
                "kubeProxyVersion": "",
                "kubeletVersion": self.version,
                "machineID": _read("/etc/machine-id"),
                "operatingSystem": "linux",
                "osImage": _os_image(),
                "systemUUID": _read("/etc/machine-id"),
            },
        }

    def heartbeat(self, ready: bool, message: str) -> bool:
        try:
            self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": self.status(ready, message)})
        except RestError as exc:
            log.warning("error updating node status: %s", exc)
            return False
        return True

    def renew_lease(self) -> bool:
        """Renew (or create) the node's Lease; False when that failed (the caller retries sooner)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": now}
        try:
            self.api.patch(path, {"spec": spec})
            return True
        except RestError as exc:
            if exc.status != 404:
                log.warning("failed to renew the node lease: %s", exc)
                return False
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            try:
                self.api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)
                return True
            except RestError as exc2:
                if str(exc2) != self.lease_error:  # once per distinct error: it repeats every heartbeat
                    log.warning("failed to create the node lease: %s", exc2)
                self.lease_error = str(exc2)
                return False

    def sync_mirrors(self, pods: dict[str, PodState]) -> None:
        """Mirror pods (``<pod>-<node>`` in kube-system) with the static pods' states.

        A mirror is created again when its manifest changed; its status is sent when it differs from
        what was last sent (called every second, this sends nothing on a steady node)."""
        base = "/api/v1/namespaces/kube-system/pods"
        for name in [n for n in self.mirrors if n not in pods]:
            with contextlib.suppress(RestError):
                self.api.delete(f"{base}/{name}-{self.name}")
            del self.mirrors[name]
            self.mirror_status.pop(name, None)
        for name, st in pods.items():
            mirror = f"{name}-{self.name}"
            status = self._pod_status(st)
            text = json.dumps(status, sort_keys=True)
            try:
                if self.mirrors.get(name) != st.sha:
                    self.mirror_status.pop(name, None)
                    self._recreate(base, mirror, st)
                    self.mirrors[name] = st.sha
                if self.mirror_status.get(name) != text:
                    self.api.patch(f"{base}/{mirror}/status", {"status": status})
                    self.mirror_status[name] = text
            except RestError as exc:
                log.debug("mirror pod %s: %s", mirror, exc)

    def _recreate(self, base: str, mirror: str, st: PodState) -> None:
        with contextlib.suppress(RestError):
            self.api.delete(f"{base}/{mirror}")
        meta = dict(st.pod.get("metadata") or {})
        annotations = {
            **(meta.get("annotations") or {}),
            "kubernetes.io/config.mirror": st.sha[:32],
            "kubernetes.io/config.hash": st.sha[:32],
            "kubernetes.io/config.source": "file",
        }
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": mirror,
                "namespace": "kube-system",
                "labels": meta.get("labels") or {},
                "annotations": annotations,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": "", "controller": True}
                ],
            },
            "spec": {**(st.pod.get("spec") or {}), "nodeName": self.name},
        }
        self.api.post(base, body)

    def _pod_status(self, st: PodState) -> dict[str, Any]:
        running = st.state == "Running"
        started = datetime.fromtimestamp(st.started_at or 0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = (
            {"running": {"startedAt": started}}
            if running
            else {"waiting": {"reason": st.reason, "message": st.message}}
        )
        ok = "True" if running else "False"
        return {
            "phase": "Running" if running else "Pending",
            "hostIP": self.ip,
            "podIP": self.ip,
            "startTime": started,
            "conditions": [
                {"type": t, "status": ok} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": st.container.get("name", st.name),
                    "image": st.image,
                    "ready": running,
                    "restartCount": st.restarts,
                    "started": running,
                    "state": state,
                }
            ],
        }


def hostname() -> str:
    return socket.gethostname().lower()
