"""The stand-in "container runtime" for static pods: detached processes recorded under /run.

Why detached: a real kubelet's containers belong to the runtime, not to the kubelet, so stopping or
restarting the kubelet (an upgrade does) leaves the apiserver running; only ``kubeadm reset`` (through
the CRI) or a changed manifest removes them. The stand-in starts each process in its own session and
records it in ``/run/capstan-standins/pods/<pod>.json`` (pid plus the kernel's start time, so a reused
pid is never mistaken for it); a restarted kubelet adopts what is still running. ``/run`` is a tmpfs,
so a rebooted host starts clean, like a runtime after a reboot.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from capstan.lab.standins import host_path

STATE_DIR = "/run/capstan-standins/pods"


@dataclass
class Record:
    """One running static pod process."""

    pod: str
    pid: int
    start_ticks: int
    manifest_sha: str
    image: str
    started_at: float
    restarts: int = 0


def state_dir() -> Path:
    return host_path(STATE_DIR)


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (/proc/<pid>/stat field 22); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(rec: Record) -> bool:
    return start_ticks(rec.pid) == rec.start_ticks


def save(rec: Record) -> None:
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{rec.pod}.tmp"
    tmp.write_text(json.dumps(asdict(rec)))
    tmp.replace(folder / f"{rec.pod}.json")


def remove(pod: str) -> None:
    (state_dir() / f"{pod}.json").unlink(missing_ok=True)


def load_all() -> dict[str, Record]:
    out: dict[str, Record] = {}
    folder = state_dir()
    if not folder.is_dir():
        return out
    for file in sorted(folder.glob("*.json")):
        try:
            rec = Record(**json.loads(file.read_text()))
        except (OSError, ValueError, TypeError):
            file.unlink(missing_ok=True)
            continue
        out[rec.pod] = rec
    return out


def terminate(rec: Record, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: a container stop."""
    if not alive(rec):
        return
    try:
        os.kill(rec.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while alive(rec):
        if time.monotonic() >= deadline:
            try:
                os.kill(rec.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
        with contextlib.suppress(ChildProcessError):
            os.waitpid(rec.pid, os.WNOHANG)  # reap when it is our own child
        time.sleep(0.05)


def spawn(argv: list[str], env: dict[str, str], log_file: Path) -> tuple[int, int]:
    """Start ``argv`` as a runtime-owned process: new session, parent is PID 1, not the kubelet.

    ``setsid --fork`` detaches it, so a ``systemctl stop/restart kubelet`` (which stops the kubelet's
    process tree) leaves it running, as containers outlive a real kubelet. Returns (pid, start ticks).
    """
    # sh reports the pid that exec keeps on stdout (a pipe), then becomes argv writing to the log.
    shim = 'echo $$; exec "$@" >>"$0" 2>&1 </dev/null'
    launcher = subprocess.Popen(
        ["setsid", "--fork", "sh", "-c", shim, str(log_file), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert launcher.stdout is not None
    reported = launcher.stdout.read().decode().strip()
    launcher.wait()
    if not reported.isdigit():
        raise OSError(f"could not start {argv[0]}: no pid reported")
    pid = int(reported)
    return pid, start_ticks(pid) or 0


def kill_all(grace: float = 10.0) -> list[str]:
    """Stop every recorded static pod process (what ``kubeadm reset`` asks the runtime to do)."""
    stopped = []
    for rec in load_all().values():
        if alive(rec):
            terminate(rec, grace)
            stopped.append(rec.pod)
        remove(rec.pod)
    return stopped
