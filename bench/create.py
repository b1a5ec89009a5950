"""create-cluster on lab hosts: 3 control planes plus workers; wall time per phase, total, converged re-run.

    .venv/bin/python bench/create.py [--sizes 3 10 30]

For each size: a fresh lab, create (each phase's wall time as the flow saw it, and the slowest host's
task duration), then a converged re-run; also the number of (phase, host) Prefect task runs, the
orchestrator's CPU seconds and the whole machine's busy CPU seconds (the difference is the lab's
hosts: their sshd, systemd emulator, etcd, API server stand-ins; and the Prefect server), the CPU
seconds the hypervisor gave other guests meanwhile ("stolen": on a shared VM the same run is that
much slower), and the
orchestrator's peak RSS during the two runs; CPU seconds by kind of process (``proc_cpu``) during
the create, a few seconds of the converged lab left idle, and the re-run; SSH round trips per host
(commands and file transfers, counted in this process) for the create and the re-run. No asserts.
Runs with Prefect's embedded server, as `capstan create` does; its start-up (a one-off per process, or
none with a long-running server) is measured first and printed apart. Needs root for the lab.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import proc_cpu

from capstan.prefect_env import apply_defaults

apply_defaults()


def phase_times(result: dict[str, Any]) -> dict[str, float]:
    slowest: dict[str, float] = {}
    for info in result["hosts"].values():
        for phase, v in info["phases"].items():
            slowest[phase] = max(slowest.get(phase, 0.0), v["seconds"])
    return slowest


def warm_up() -> float:
    """Start the embedded Prefect server with a trivial flow run; the seconds it took."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def nothing() -> None:
        return None

    started = time.monotonic()
    nothing()
    return time.monotonic() - started


def cpu_seconds() -> float:
    """User + system CPU of this process (the orchestrator: capstan, Prefect's client, SSH)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_fields() -> list[int]:
    with open("/proc/stat") as fh:
        return [int(x) for x in fh.readline().split()[1:]] + [0] * 8


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, from /proc/stat): lab hosts included,
    time the hypervisor gave to other guests ("steal") not."""
    f = _cpu_fields()
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq


def stolen_seconds() -> float:
    """CPU seconds the hypervisor ran other guests while this machine wanted to run (/proc/stat
    "steal"): when it is large, every figure of the run is slower than the machine itself is."""
    return _cpu_fields()[7] / os.sysconf("SC_CLK_TCK")


def reset_peak_rss() -> None:
    """Start the peak-RSS count afresh (Linux: clear_refs 5), so packing the lab's mirror is not in it."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RoundTrips:
    """Counts the SSH round trips (commands, file puts and gets) the orchestrator makes per host.

    Wraps FabricTransport's three methods in this process only: the commands still run for real.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        from capstan.remote.fabric import FabricTransport

        for name in ("run", "put", "get"):
            setattr(FabricTransport, name, self._counting(getattr(FabricTransport, name)))

    def _counting(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def counted(transport: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.counts[transport.host] += 1
            return method(transport, *args, **kwargs)

        return counted

    def take(self) -> str:
        """``mean (max)`` per host since the last call, workers and control planes apart."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
        parts = []
        for kind, prefix in (("workers", "w"), ("control planes", "cp")):
            mine = [n for h, n in counts.items() if h.startswith(prefix)]
            if mine:
                parts.append(f"{kind} {sum(mine) / len(mine):.1f} (max {max(mine)})")
        return ", ".join(parts)


def walls(result: dict[str, Any]) -> str:
    return ", ".join(f"{p} {s:.1f}" for p, s in result.get("phase_seconds", {}).items())


def bench(size: int, idle: float, trips: RoundTrips) -> None:
    from capstan.flows.create import create_cluster
    from capstan.lab import Lab

    cps = min(3, size)
    topo = [(f"cp{i}", ["control-plane", "etcd"]) for i in range(1, cps + 1)]
    topo += [(f"w{i}", ["worker"]) for i in range(1, size - cps + 1)]
    lab = Lab.up(Lab.free_name(f"bc{os.getpid() % 1000}"), topo)
    try:
        reset_peak_rss()
        procs = proc_cpu.snapshot()
        started, cpu, busy, stolen = time.monotonic(), cpu_seconds(), machine_busy_seconds(), stolen_seconds()
        trips.take()
        first = create_cluster(spec=str(lab.spec_path))
        create_trips = trips.take()
        total, total_cpu = time.monotonic() - started, cpu_seconds() - cpu
        total_busy, create_procs = machine_busy_seconds() - busy, proc_cpu.spent(procs, proc_cpu.snapshot())
        total_stolen = stolen_seconds() - stolen
        busy, procs = machine_busy_seconds(), proc_cpu.snapshot()
        time.sleep(idle)  # the converged cluster left alone: what the lab costs by itself
        idle_busy, idle_procs = machine_busy_seconds() - busy, proc_cpu.spent(procs, proc_cpu.snapshot())
        procs = proc_cpu.snapshot()
        started, cpu, busy, stolen = time.monotonic(), cpu_seconds(), machine_busy_seconds(), stolen_seconds()
        second = create_cluster(spec=str(lab.spec_path))
        rerun_trips = trips.take()
        rerun, rerun_cpu = time.monotonic() - started, cpu_seconds() - cpu
        rerun_busy, rerun_procs = machine_busy_seconds() - busy, proc_cpu.spent(procs, proc_cpu.snapshot())
        rerun_stolen = stolen_seconds() - stolen
        tasks = sum(len(info["phases"]) for info in first["hosts"].values())
        peak = peak_rss_mb()
        phases = ", ".join(f"{p} {s:.1f}" for p, s in phase_times(first).items())
        rephases = ", ".join(f"{p} {s:.1f}" for p, s in phase_times(second).items())
        again = (
            f"{rerun:.1f} s ({second['changed']} changes; CPU: orchestrator {rerun_cpu:.1f} s, "
            f"machine {rerun_busy:.1f} s, stolen {rerun_stolen:.1f} s)"
        )
        made = (
            f"{total:.1f} s (CPU: orchestrator {total_cpu:.1f} s, machine {total_busy:.1f} s, "
            f"stolen {total_stolen:.1f} s)"
        )
        print(f"| {size} | {made} | {again} | {tasks} | {peak:.0f} MB |")
        print(f"|   | create per phase (wall, s): {walls(first)} | | | |")
        print(f"|   | create per phase (slowest host task, s): {phases} | | | |")
        print(f"|   | re-run per phase (wall, s): {walls(second)} | | | |")
        print(f"|   | re-run per phase (slowest host task, s): {rephases} | | | |", flush=True)
        print(f"  SSH round trips per host, create: {create_trips}; re-run: {rerun_trips}")
        print(f"  CPU-s by process kind, create: {proc_cpu.top(create_procs)}")
        idle_top = proc_cpu.top(idle_procs)
        print(f"  CPU-s by process kind, {idle:g} s idle (machine {idle_busy:.1f}): {idle_top}")
        print(f"  CPU-s by process kind, re-run: {proc_cpu.top(rerun_procs)}", flush=True)
    finally:
        lab.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--idle", type=float, default=15.0, help="seconds to watch the converged lab idle")
    args = parser.parse_args()
    print(f"embedded Prefect server start-up and a first flow run: {warm_up():.1f} s")
    print("| hosts | create | converged re-run | host-phase tasks | peak RSS |")
    print("|---|---|---|---|---|")
    trips = RoundTrips()
    for size in args.sizes:
        bench(size, args.idle, trips)


if __name__ == "__main__":
    main()
