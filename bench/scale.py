"""scale-cluster on lab hosts: add one worker to a cluster of N hosts; wall time, per phase, what it touched.

    .venv/bin/python bench/scale.py [--sizes 5 25]

For each size N: a fresh lab of N + 1 hosts (3 control planes with etcd, the rest workers). The cluster
is created from the lab's spec without the last worker (timed, printed, but not the figure), then
scale-cluster runs with the full spec and adds that worker. The figures: the scale-out's wall time,
its per-phase time (slowest host, from the summary's per-host task durations), the hosts it touched
(it should be the new worker only: adding a worker changes nothing on existing hosts), the Prefect
task runs of its flow run (counted on the server), the orchestrator's peak RSS during the scale-out,
and a converged second scale-out (nothing to add: membership reads only). "other" is the wall time not
spent in host phases: spec and lock, reading membership (Node list, etcd member list, kubeadm-config),
making the bootstrap token valid, waiting for the new Node to be Ready, and Prefect's own bookkeeping.

Runs with Prefect's embedded server, as `capstan scale` does (its server is a subprocess, so not in
the RSS figure); needs root for the lab. Labs are torn down even when a run fails. No asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from capstan.prefect_env import apply_defaults

apply_defaults()
# The bench's own state, out of ~/.capstan and ~/.prefect: the report phase's admin kubeconfig, and the
# embedded server's SQLite database (not shared with other Prefect processes on the machine, so their
# writes do not slow the figures). On a loaded machine the embedded server needs more than Prefect's
# default 20 s to answer the first time.
_HOME = tempfile.mkdtemp(prefix="capstan-bench-scale-")
os.environ.setdefault("CAPSTAN_HOME", _HOME)
os.environ.setdefault("PREFECT_HOME", _HOME)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def phase_times(result: dict[str, Any]) -> dict[str, float]:
    """Per phase, the slowest host's task duration: the phase's share of the wall time."""
    slowest: dict[str, float] = {}
    for info in result["hosts"].values():
        for phase, v in info["phases"].items():
            slowest[phase] = max(slowest.get(phase, 0.0), v["seconds"])
    return slowest


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: "5" to clear_refs), so the next peak is the scale-out's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """VmHWM from /proc (since the last reset); getrusage's lifetime peak where /proc cannot say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_runs(flow_run_id: UUID, expected: int, deadline_s: float = 30.0) -> int:
    """The flow run's task runs as the Prefect server recorded them.

    Task run states reach the server as events, a little after the flow returns: poll (with a
    deadline) until at least the count the summary implies is there, then report what the server has.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while True:
            count = 0
            while True:  # the server answers at most 200 runs per request
                page = client.read_task_runs(flow_run_filter=flt, limit=200, offset=count)
                count += len(page)
                if len(page) < 200:
                    break
            if count >= expected or time.monotonic() > deadline:
                return count
            time.sleep(0.5)


def spec_without(spec_path: Path, drop: str, out: Path) -> Path:
    """The lab's spec without host ``drop``: the cluster as it is before the scale-out."""
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] != drop]
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def timed_scale(spec: str) -> tuple[dict[str, Any], float, str]:
    """One scale-cluster flow run: its summary, wall time and the task runs the server recorded."""
    from capstan.flows.scale import scale_cluster

    started = time.monotonic()
    state = scale_cluster(spec=spec, return_state=True)
    wall = time.monotonic() - started
    result: dict[str, Any] = state.result()
    expected = sum(len(i["phases"]) for i in result["hosts"].values()) + len(result["api"])
    flow_run_id = state.state_details.flow_run_id
    try:
        runs = str(task_runs(flow_run_id, expected)) if flow_run_id is not None else f"{expected} (summary)"
    except Exception as exc:  # the figure is worth more than the count: fall back to the summary's
        runs = f"{expected} (summary; server count failed: {type(exc).__name__})"
    return result, wall, runs


def bench(size: int, workdir: Path) -> None:
    from capstan.flows.create import create_cluster
    from capstan.lab import Lab

    cps = min(3, size)
    topo = [(f"cp{i}", ["control-plane", "etcd"]) for i in range(1, cps + 1)]
    topo += [(f"w{i}", ["worker"]) for i in range(1, size + 1 - cps + 1)]
    added = topo[-1][0]
    lab = Lab.up(Lab.free_name(f"bs{os.getpid() % 1000}"), topo, timeout=300.0)
    try:
        small = spec_without(lab.spec_path, added, workdir / f"cluster-{size}.yaml")
        started = time.monotonic()
        create_cluster(spec=str(small))
        create_s = time.monotonic() - started

        measured = reset_peak_rss()
        result, wall, runs = timed_scale(str(lab.spec_path))
        peak = peak_rss_mb()
        again, again_s, again_runs = timed_scale(str(lab.spec_path))

        phases = phase_times(result)
        other = wall - sum(phases.values())
        per_phase = ", ".join(f"{p} {s:.1f}" for p, s in phases.items())
        touched = result["touched"]
        contacted = sorted(result["hosts"])
        rss = f"{peak:.0f} MB" + ("" if measured else " (process lifetime)")
        converged = f"{again_s:.1f} s ({again['changed']} changes, {again_runs} task runs)"
        print(
            f"| {size} | {wall:.1f} s | {per_phase}, other {other:.1f} | "
            f"{len(touched)} ({', '.join(touched)}; phases ran on {', '.join(contacted)}) | "
            f"{runs} | {rss} | {converged} | {create_s:.1f} s |",
            flush=True,
        )
    finally:
        lab.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 25])
    args = parser.parse_args()
    print(
        "| cluster hosts | scale-out +1 worker | per phase (slowest host, s) | hosts touched "
        "| Prefect task runs | peak RSS | converged re-run | create (not the figure) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for size in args.sizes:
            bench(size, Path(tmp))


if __name__ == "__main__":
    main()
