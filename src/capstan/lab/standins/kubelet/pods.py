"""Static pods: run one stand-in process per manifest in the static pod path, and keep it running.

Mapping a manifest to a process: the image ``<repo>/<component>:v<version>`` names the executable
``/usr/local/lib/capstan-standins/v<version>/<component>`` (written by the kubeadm stand-in, its
"image pull"); the container ``command`` (+ ``args``) gives the flags. No executable for that image is
an ``ErrImagePull``. A flag naming an absolute path outside every volumeMount is a
``CreateContainerError``: a real container would not see the file.

Reconciliation: a new manifest starts its process; a changed one (sha256 of the file) stops the old
process and starts the new; a removed one stops it; a process that exits is restarted with a doubling
back-off (2 s .. 40 s, reset after a minute of running; a real kubelet starts at 10 s and caps at 5 min).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from capstan.lab.standins import CONTROL_PLANE, executable_path, host_path
from capstan.lab.standins.kubelet import runtime

log = logging.getLogger("kubelet")
LOG_DIR = "/var/log/pods"
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 2.0, 40.0, 60.0


@dataclass
class PodState:
    """What the kubelet knows about one static pod (reported in its mirror pod)."""

    name: str
    sha: str
    pod: dict[str, Any]
    state: str = "Waiting"  # Running | Waiting
    reason: str = "ContainerCreating"
    message: str = ""
    restarts: int = 0
    started_at: float = 0.0
    backoff: float = BACKOFF_START
    next_start: float = 0.0
    record: runtime.Record | None = None

    @property
    def container(self) -> dict[str, Any]:
        containers = (self.pod.get("spec") or {}).get("containers") or [{}]
        first: dict[str, Any] = containers[0]
        return first

    @property
    def image(self) -> str:
        return str(self.container.get("image", ""))


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_manifest(file: Path, data: bytes | None = None) -> tuple[str, dict[str, Any]] | None:
    """(sha256, Pod) of a manifest, or None when it is not a v1 Pod (a real kubelet logs and skips it)."""
    data = file.read_bytes() if data is None else data
    try:
        doc = yaml.load(data, Loader=_LOADER)
    except yaml.YAMLError as exc:
        log.error("static pod %s does not parse: %s", file, exc)
        return None
    if not isinstance(doc, dict) or doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
        log.error("static pod %s is not a v1 Pod", file)
        return None
    if not (doc.get("metadata") or {}).get("name") or not (doc.get("spec") or {}).get("containers"):
        log.error("static pod %s has no metadata.name or no containers", file)
        return None
    return hashlib.sha256(data).hexdigest(), doc


def executable_for(image: str) -> tuple[Path | None, str]:
    """The stand-in executable for an image, or None with the pull error."""
    repo, _, tag = image.rpartition(":")
    component = repo.rsplit("/", 1)[-1]
    if component not in CONTROL_PLANE or not tag.startswith("v"):
        return (
            None,
            f'failed to pull image "{image}": the lab has stand-ins only for {", ".join(CONTROL_PLANE)}',
        )
    exe = executable_path(component, tag)
    if not exe.exists():
        return (
            None,
            f'failed to pull and unpack image "{image}": {exe} not found (no stand-in of that version)',
        )
    return exe, ""


def invisible_paths(pod: dict[str, Any], args: list[str]) -> list[str]:
    """Absolute paths named by flags that lie outside every volumeMount of the container."""
    mounts = [
        str(m.get("mountPath", "")).rstrip("/")
        for m in (pod["spec"]["containers"][0].get("volumeMounts") or [])
    ]
    missing = []
    for arg in args:
        _, eq, value = arg.partition("=")
        for candidate in value.split(",") if eq else []:
            if candidate.startswith("/") and not any(
                candidate == m or candidate.startswith(m + "/") for m in mounts
            ):
                missing.append(candidate)
    return missing


def prepare_volumes(pod: dict[str, Any]) -> str:
    """Set up hostPath volumes as the kubelet does; the type-check failure, or "" when all are fine.

    ``DirectoryOrCreate`` / ``FileOrCreate`` are created when missing; ``Directory`` / ``File`` must exist.
    """
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        host = vol.get("hostPath") or {}
        if not host.get("path"):
            continue
        target, kind = host_path(str(host["path"])), str(host.get("type") or "")
        if kind == "DirectoryOrCreate" and not target.exists():
            target.mkdir(parents=True, mode=0o755)
        elif kind == "FileOrCreate" and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(mode=0o644)
        failed = f'MountVolume.SetUp failed for volume "{vol.get("name")}": hostPath type check failed: '
        if kind in ("Directory", "DirectoryOrCreate") and not target.is_dir():
            return f"{failed}{host['path']} is not a directory"
        if kind in ("File", "FileOrCreate") and not target.is_file():
            return f"{failed}{host['path']} is not a file"
    return ""


class StaticPods:
    """Reconciles the static pod directory with running processes."""

    def __init__(self, manifest_dir: str) -> None:
        self.dir = host_path(manifest_dir)
        self.pods: dict[str, PodState] = {}
        self.adopted = runtime.load_all()
        # manifest sha256 -> what it parsed to: a manifest is parsed again only when its bytes change
        # (parsing every manifest every second was most of an idle control plane kubelet's CPU)
        self.parsed: dict[str, tuple[str, dict[str, Any]] | None] = {}

    def _start(self, st: PodState) -> None:
        exe, error = executable_for(st.image)
        if exe is None:
            st.state, st.reason, st.message = "Waiting", "ErrImagePull", error
            return
        c = st.container
        args = [*(c.get("command") or [])[1:], *(c.get("args") or [])]
        mount_error = prepare_volumes(st.pod)
        if mount_error:
            st.state, st.reason, st.message = "Waiting", "ContainerCreating", mount_error
            return
        hidden = invisible_paths(st.pod, args)
        if hidden:
            st.state, st.reason = "Waiting", "CreateContainerError"
            st.message = f"not visible in the container (outside every volumeMount): {', '.join(hidden)}"
            return
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        env.update({str(e["name"]): str(e.get("value", "")) for e in c.get("env") or [] if "value" in e})
        logs = host_path(f"{LOG_DIR}/kube-system_{st.name}")
        logs.mkdir(parents=True, exist_ok=True)
        try:
            pid, ticks = runtime.spawn([str(exe), *args], env, logs / f"{c.get('name', st.name)}.log")
        except OSError as exc:
            st.state, st.reason, st.message = "Waiting", "RunContainerError", str(exc)
            return
        st.record = runtime.Record(st.name, pid, ticks, st.sha, st.image, time.time(), st.restarts)
        runtime.save(st.record)
        st.state, st.reason, st.message, st.started_at = "Running", "", "", time.time()
        log.info("started static pod %s (%s) pid %d", st.name, st.image, pid)

    def _stop(self, st: PodState) -> None:
        if st.record is not None:
            grace = float((st.pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
            runtime.terminate(st.record, grace)
            runtime.remove(st.name)
            log.info("stopped static pod %s (pid %d)", st.name, st.record.pid)
        st.record, st.state = None, "Waiting"

    def _running(self, st: PodState) -> bool:
        return st.record is not None and runtime.alive(st.record)

    def _desired(self) -> dict[str, tuple[str, dict[str, Any]]]:
        desired: dict[str, tuple[str, dict[str, Any]]] = {}
        if not self.dir.is_dir():
            return desired
        seen: dict[str, tuple[str, dict[str, Any]] | None] = {}
        for file in sorted(self.dir.iterdir()):
            if (
                file.name.startswith(".")
                or file.suffix not in (".yaml", ".yml", ".json")
                or not file.is_file()
            ):
                continue
            try:
                data = file.read_bytes()
            except OSError:
                continue  # removed or replaced between the listing and the read: the next pass sees it
            sha = hashlib.sha256(data).hexdigest()
            parsed = seen[sha] = self.parsed[sha] if sha in self.parsed else read_manifest(file, data)
            if parsed is not None:
                desired[str(parsed[1]["metadata"]["name"])] = parsed
        self.parsed = seen
        return desired

    def sync(self) -> dict[str, PodState]:
        """One reconciliation pass; returns the current state of every static pod."""
        desired = self._desired()
        for name in [n for n in self.pods if n not in desired]:
            self._stop(self.pods.pop(name))
        for name, rec in list(self.adopted.items()):
            if name not in desired or desired[name][0] != rec.manifest_sha:
                runtime.terminate(rec)
                runtime.remove(name)
                del self.adopted[name]
        now = time.time()
        for name, (sha, pod) in desired.items():
            st = self.pods.get(name)
            if st is not None and st.sha != sha:
                self._stop(st)
                st = None
            if st is None:
                st = self.pods[name] = PodState(name, sha, pod)
                adopted = self.adopted.pop(name, None)
                if adopted is not None and runtime.alive(adopted):
                    st.record, st.state, st.reason, st.started_at = adopted, "Running", "", adopted.started_at
                    st.restarts = adopted.restarts
                    continue
            if st.state == "Running" and not self._running(st):
                ran = now - st.started_at
                st.backoff = BACKOFF_START if ran >= BACKOFF_RESET else min(st.backoff * 2, BACKOFF_MAX)
                st.restarts += 1
                st.state, st.reason, st.next_start = "Waiting", "CrashLoopBackOff", now + st.backoff
                st.message = f"back-off {st.backoff:.0f}s restarting failed container {st.name}"
                runtime.remove(name)
                st.record = None
                log.warning("static pod %s exited; restarting in %.0fs", name, st.backoff)
            if st.state != "Running" and now >= st.next_start:
                self._start(st)
                if st.state != "Running":
                    st.next_start = now + BACKOFF_MAX / 4
        return self.pods

    def detach(self) -> None:
        """On kubelet exit: nothing to do, the processes belong to the runtime and keep running."""
        self.pods.clear()
