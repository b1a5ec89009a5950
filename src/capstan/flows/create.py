"""create-cluster: Kubespray's cluster.yml as a Prefect flow.

The phases and their order come from ``capstan.plan.phases.CREATE_PHASES`` (what ``capstan plan``
prints); each runs as one task per host with the phase's concurrency (``capstan.tasks.runner``). A
phase that fails on any host stops the flow after every host of that phase has finished; retrying the
same flow run skips every (phase, host) task that already completed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, cast

from prefect import flow
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

import capstan.tasks.create  # noqa: F401  (registers the phase implementations)
from capstan.errors import CapstanError
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.plan.phases import CREATE_PHASES
from capstan.tasks.runner import PhaseOutcome, run_phase
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister

MAX_PARALLEL_HOSTS = 20


def bounded_runner() -> TaskRunner[PrefectFuture[Any]]:
    """Prefect's thread pool is unbounded by default: 500 hosts would mean 500 SSH sessions at once."""
    return cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_HOSTS))


def summarize(outcomes: list[PhaseOutcome]) -> dict[str, Any]:
    """Per-host change counts by phase (no secrets: counts, notes and durations only)."""
    hosts: dict[str, dict[str, Any]] = defaultdict(lambda: {"changed": 0, "unchanged": 0, "phases": {}})
    for o in outcomes:
        h = hosts[o.host]
        h["changed"] += o.changed
        h["unchanged"] += o.unchanged
        h["phases"][o.phase] = {"changed": o.changed, "unchanged": o.unchanged, "seconds": o.seconds}
    return {"hosts": dict(hosts), "changed": sum(h["changed"] for h in hosts.values())}


def _run_key() -> str:
    ctx = get_run_context()
    flow_run = getattr(ctx, "flow_run", None)
    if flow_run is None:  # pragma: no cover - always inside a flow run
        raise CapstanError("create-cluster must run as a Prefect flow")
    return str(flow_run.id)


def run_create(
    spec: str,
    *,
    until: str | None = None,
    dry_run: bool = False,
    factory: TransportFactory = fabric_transport,
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic.

    ``spec`` is a cluster.yaml path or a cluster spec block (``block:<name>``, see
    ``capstan.flows.source``); the run holds the cluster's lock (``capstan.flows.lock``) throughout.
    """
    source = resolve_spec(spec)
    cluster = source.cluster
    ids = [p.id for p in CREATE_PHASES]
    if until is not None and until not in ids:
        raise CapstanError(f"--until: unknown phase {until!r} (phases: {', '.join(ids)})")
    with cluster_lock(cluster.name):
        session = register(
            Session(
                _run_key(),
                cluster,
                factory=factory,
                dry_run=dry_run,
                private_key=source.private_key,
                phases=tuple(CREATE_PHASES),
            )
        )
        outcomes: list[PhaseOutcome] = []
        walls: dict[str, float] = {}
        try:
            for phase in CREATE_PHASES:
                session.memo["outcomes"] = list(outcomes)
                started = time.monotonic()
                outcomes += run_phase(phase, session)
                walls[phase.id] = round(time.monotonic() - started, 3)
                if phase.id == until:
                    break
            kubeconfig = session.memo.get("kubeconfig")
        finally:
            unregister(session.key)
    summary = summarize(outcomes)
    summary["phase_seconds"] = walls  # wall time of each phase, Prefect's task bookkeeping included
    if until is None or until == "report":
        summary["kubeconfig"] = kubeconfig
    return summary


@flow(
    name="create-cluster",
    task_runner=bounded_runner(),
    persist_result=True,
    log_prints=True,
)
def create_cluster(spec: str, until: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Create (or converge) the cluster that ``spec`` describes.

    Args:
        spec: the cluster spec: `block:<name>` (a capstan cluster spec block, with its SSH
            credentials block) or the absolute path of cluster.yaml on the worker.
        until: stop after this phase (e.g. "os-prep"); all phases when empty.
        dry_run: gather facts and report what would change, without changing anything.
    """
    return run_create(spec, until=until, dry_run=dry_run)
