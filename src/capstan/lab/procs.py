"""Running commands and handling the processes a lab starts, by recorded PID only.

Why this care: the lab shares the machine with other labs and other people's processes, so it never
kills by name. A PID alone can be reused once its process is gone, so every PID is recorded with its
start time (``/proc/<pid>/stat`` field 22) and checked before a signal is sent. A zombie counts as
gone: after a host's PID 1 is killed its ``unshare`` parent may stay a zombie until whoever is its
parent (this process, or the machine's init once the starting CLI has exited) reaps it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence

from capstan.errors import LabError
from capstan.lab.state import ProcRef


def run(
    argv: Sequence[str], *, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a root-namespace tool (ip, nft, mount); a failure is a LabError naming the command."""
    try:
        res = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LabError(
            f"`{argv[0]}` is not installed (the lab needs iproute2, nftables, util-linux)"
        ) from None
    if check and res.returncode != 0:
        tail = " | ".join(res.stderr.strip().splitlines()[-3:])
        raise LabError(f"`{' '.join(argv)}` exited {res.returncode}: {tail}")
    return res


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def ref(pid: int) -> ProcRef:
    """Record a live process; LabError if it is already gone."""
    start = start_time(pid)
    if start is None:
        raise LabError(f"process {pid} exited before it could be recorded")
    return ProcRef(pid, start)


def alive(p: ProcRef | None) -> bool:
    """True while the recorded process exists, is the same process, and is not a zombie."""
    if p is None:
        return False
    fields = _stat(p.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == p.start


def kill(p: ProcRef | None, sig: int = signal.SIGKILL) -> None:
    if alive(p):
        assert p is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)


def wait_gone(procs: Iterable[ProcRef | None], timeout: float) -> list[ProcRef]:
    """Poll until every process is gone; return those still alive at the deadline."""
    pending = [p for p in procs if p is not None]
    deadline = time.monotonic() + timeout
    while True:
        pending = [p for p in pending if alive(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.01)


def kill_all(procs: Iterable[ProcRef | None], timeout: float = 5.0) -> None:
    """SIGKILL the recorded processes and wait for them; LabError if any survives the deadline."""
    targets = [p for p in procs if p is not None]
    for p in targets:
        kill(p)
    left = wait_gone(targets, timeout)
    if left:
        raise LabError(f"processes {', '.join(str(p.pid) for p in left)} did not exit within {timeout:g}s")


def kill_chains(chains: Iterable[tuple[ProcRef | None, ProcRef | None]], timeout: float = 5.0) -> None:
    """Stop (PID 1, holder) pairs: SIGKILL each PID 1 and let its unshare holder reap it and exit.

    Killing both at once would leave PID 1 a zombie for the machine's init to collect later; the
    holders are killed too only if they have not exited by the deadline.
    """
    pairs = list(chains)
    for init, _ in pairs:
        kill(init)
    holders = wait_gone([outer for _, outer in pairs], timeout)
    kill_all([*holders, *(init for init, _ in pairs)], timeout)


def ns_inode(pid: int, kind: str) -> int | None:
    """Inode of ``/proc/<pid>/ns/<kind>``: tells which namespace a process is in."""
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def pids_in_ns(kind: str, inode: int) -> list[int]:
    """Every live (non-zombie) process whose ``kind`` namespace has this inode."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if ns_inode(pid, kind) == inode:
            fields = _stat(pid)
            if fields is not None and fields[0] not in ("Z", "X"):
                found.append(pid)
    return found
