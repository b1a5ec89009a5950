"""Who used the machine's CPU during a stretch of time: CPU seconds per kind of process, from /proc.

Why: on this two-core machine a 30-host create is CPU-bound on the lab's side, and the question is
which part of the lab (sshd and the commands it runs, the API server or kubelet stand-ins, etcd, the
systemd emulator, the Prefect server) takes the cycles. A process's own time plus the time of its
children it reaped (``cutime``/``cstime``) is attributed to its kind, so a short-lived command run
over SSH is counted under the sshd that forked it once it has exited.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

KINDS = (  # first match wins: an apiserver's flags name the kubelet, so it comes first
    ("kube-apiserver", "apiserver stand-in"),
    ("kube-controller-manager", "controller-manager stand-in"),
    ("kube-scheduler", "scheduler stand-in"),
    ("kubeadm", "kubeadm stand-in"),
    ("kubelet", "kubelet stand-in"),
    ("systemctl", "systemd emulator"),
    ("prefect", "prefect server"),
    ("uvicorn", "prefect server"),
)


def kind_of(pid: str, comm: str) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    if comm.startswith(("python", "kube", "systemctl")) or "python" in cmdline[:60]:
        for needle, kind in KINDS:
            if needle in cmdline:
                return kind
        return f"python: {cmdline[:70]}"
    return comm


def snapshot() -> dict[int, tuple[str, int]]:
    """pid -> (kind, own + reaped children's CPU ticks), for every process now alive."""
    out: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        out[int(entry.name)] = (kind_of(entry.name, comm), ticks)
    return out


def spent(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> Counter[str]:
    """CPU seconds per kind between two snapshots (processes born in between count from zero)."""
    used: Counter[str] = Counter()
    for pid, (kind, ticks) in after.items():
        prior = before.get(pid)
        base = prior[1] if prior is not None and prior[0] == kind else 0
        used[kind] += max(0, ticks - base) / TICK
    return used


def top(used: Counter[str], n: int = 10) -> str:
    return ", ".join(f"{kind} {secs:.1f}" for kind, secs in used.most_common(n) if secs >= 0.05)
