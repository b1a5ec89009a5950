"""Starting a host's PID-1 chain, entering a host, and waiting for its sshd.

The chain is ``nsenter --net`` (exec) -> ``unshare --fork --kill-child`` (holds the PID namespace) ->
``hostinit.sh`` (becomes PID 1: the systemctl emulator). Both the unshare process and PID 1 are
recorded with their start times; killing PID 1 takes the whole PID namespace down at once, which is
what a power cut looks like to the services inside. ``nsenter --net`` is used rather than
``ip netns exec`` because the latter remounts /sys and hides /sys/fs/cgroup from the host.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from capstan.errors import LabError
from capstan.lab import procs
from capstan.lab.state import HostState, ProcRef

HOSTINIT = Path(__file__).with_name("hostinit.sh")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "HOME": "/root"}


def host_dir(lab_dir: Path, host: str) -> Path:
    return lab_dir / "hosts" / host


def spawn(lab_dir: Path, root: Path, host: HostState) -> subprocess.Popen[bytes]:
    """Start the host; it reports its PID 1 in ``<host dir>/pid`` (see :func:`wait_started`)."""
    hdir = host_dir(lab_dir, host.name)
    (hdir / "pid").unlink(missing_ok=True)
    env = {**BASE_ENV, "CL_HOST": host.name, "CL_DIR": str(hdir), "CL_HIDE": str(root)}
    argv = [
        "nsenter",
        f"--net=/run/netns/{host.netns}",
        "unshare",
        "--mount",
        "--uts",
        "--ipc",
        "--pid",
        "--fork",
        "--kill-child",
        "/bin/bash",
        str(HOSTINIT),
    ]
    with open(lab_dir / "log" / f"{host.name}.log", "ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_started(lab_dir: Path, host: HostState, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Record the chain's PIDs once hostinit has reported PID 1 (poll, bounded by ``deadline``)."""
    pidfile = host_dir(lab_dir, host.name) / "pid"
    while True:
        if pidfile.exists():
            host.outer = procs.ref(proc.pid)
            host.init = procs.ref(int(pidfile.read_text()))
            return
        if proc.poll() is not None:
            raise LabError(
                f"host {host.name} failed to boot (exit {proc.returncode}); see {_log(lab_dir, host)}"
            )
        if time.monotonic() >= deadline:
            raise LabError(f"host {host.name} did not start in time; see {_log(lab_dir, host)}")
        time.sleep(0.01)


def _log(lab_dir: Path, host: HostState) -> Path:
    return lab_dir / "log" / f"{host.name}.log"


def nsenter_argv(init: ProcRef) -> list[str]:
    """Enter every namespace of the host and its root directory, as a login on the machine would see."""
    return ["nsenter", "-t", str(init.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w"]


def run_in(
    host: HostState,
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60.0,
) -> subprocess.CompletedProcess[str]:
    if host.init is None or not procs.alive(host.init):
        raise LabError(f"host {host.name} is not running")
    full = [*nsenter_argv(host.init), *argv]
    try:
        return subprocess.run(
            full,
            input=input,
            capture_output=True,
            text=True,
            env={**BASE_ENV, **(env or {})},
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"host {host.name}: `{' '.join(argv)}` did not finish within {timeout}s") from None


def sshd_answers(ip: str, timeout: float = 0.5) -> bool:
    """True if something on ip:22 accepts a connection and sends an SSH banner."""
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_sshd(hosts: Sequence[HostState], timeout: float) -> None:
    """Poll each host's port 22 until it answers with a banner; LabError naming the laggards."""
    pending = list(hosts)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [h for h in pending if not sshd_answers(h.ip, timeout=0.2)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(h.name for h in pending)
            raise LabError(f"sshd did not answer within {timeout:g}s on {names}")
        time.sleep(0.02)
