"""Running a phase: one Prefect task per (phase, host), with the phase's concurrency.

Why this shape (see ../shared/reference/prefect-notes.md): Prefect costs a few ms per task and its
SQLite server records ~50 task runs/s, so a task is "one phase on one host", never one command.
Tasks are cached by (inputs, task source, flow run id): retrying a failed flow run skips every
(phase, host) that already completed, while a new run re-checks everything through facts. Only
transport errors are retried in place; a command that fails will fail again.

Failures never stop a parallel phase early: every host finishes, then the phase fails naming each
failed host, and the flow stops before the next phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT
from prefect.futures import PrefectFuture, wait

from capstan.errors import CapstanError, PhaseFailed, TransportError
from capstan.plan.phases import Phase
from capstan.spec.models import Host
from capstan.tasks.session import Session, lookup


@dataclass(frozen=True)
class PhaseOutcome:
    """What one phase did on one host; persisted as the task result, so it never holds secrets."""

    phase: str
    host: str
    changed: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    note: str = ""


PhaseImpl = Callable[[Session, Host], PhaseOutcome]
ClusterPhaseImpl = Callable[[Session], list[PhaseOutcome]]

HOST_PHASES: dict[str, PhaseImpl] = {}
CLUSTER_PHASES: dict[str, ClusterPhaseImpl] = {}


def _check_unique(phase_id: str, fn: Callable[..., Any]) -> None:
    """Phase ids are global: a second implementation would silently replace the first for every
    flow, depending on which module happened to be imported last. Refuse it at import time."""
    known = HOST_PHASES.get(phase_id) or CLUSTER_PHASES.get(phase_id)
    if known is None:
        return
    if (known.__module__, known.__qualname__) != (fn.__module__, fn.__qualname__):
        raise RuntimeError(
            f"phase {phase_id!r} is implemented twice: {known.__module__}.{known.__qualname__} and "
            f"{fn.__module__}.{fn.__qualname__}"
        )


def host_phase_impl(phase_id: str) -> Callable[[PhaseImpl], PhaseImpl]:
    """Register the per-host implementation of ``phase_id``."""

    def register(fn: PhaseImpl) -> PhaseImpl:
        _check_unique(phase_id, fn)
        HOST_PHASES[phase_id] = fn
        return fn

    return register


def cluster_phase_impl(phase_id: str) -> Callable[[ClusterPhaseImpl], ClusterPhaseImpl]:
    """Register the implementation of a phase that runs once on the orchestrator."""

    def register(fn: ClusterPhaseImpl) -> ClusterPhaseImpl:
        _check_unique(phase_id, fn)
        CLUSTER_PHASES[phase_id] = fn
        return fn

    return register


def _retry_transport_errors(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except TransportError:
        return True
    except Exception:
        return False
    return False


@task(
    task_run_name="{phase}[{host}]",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=_retry_transport_errors,
    cache_policy=DEFAULT,
    persist_result=True,
)
def host_phase(phase: str, host: str, run_key: str) -> PhaseOutcome:
    """Run ``phase`` on ``host``. Parameters are names only: secrets stay in the session."""
    session = lookup(run_key)
    started = time.monotonic()
    outcome = HOST_PHASES[phase](session, session.host(host))
    seconds = round(time.monotonic() - started, 3)
    if outcome.changed:
        get_run_logger().info(
            "%s[%s]: %d changed, %d unchanged", phase, host, outcome.changed, outcome.unchanged
        )
    return PhaseOutcome(
        outcome.phase, outcome.host, outcome.changed, outcome.unchanged, seconds, outcome.note
    )


@task(task_run_name="{phase}", cache_policy=DEFAULT, persist_result=True)
def cluster_phase(phase: str, run_key: str) -> list[PhaseOutcome]:
    """Run a phase that happens once, on the orchestrator (addons through the API, the report)."""
    return CLUSTER_PHASES[phase](lookup(run_key))


def _collect(phase: Phase, futures: dict[str, PrefectFuture[PhaseOutcome]]) -> list[PhaseOutcome]:
    wait(list(futures.values()))
    results: list[PhaseOutcome] = []
    failures: list[str] = []
    for host, fut in futures.items():
        state = fut.state
        if state.is_completed():
            results.append(fut.result())
            continue
        try:
            fut.result()
            failures.append(f"{host}: {state.name}")
        except CapstanError as exc:  # our errors name the host already
            failures.append(str(exc) if host in str(exc) else f"{host}: {exc}")
        except Exception as exc:  # a bug: keep its type in the message
            failures.append(f"{host}: {type(exc).__name__}: {exc}")
    if failures:
        raise PhaseFailed(f"phase {phase.id} failed: " + "; ".join(failures))
    return results


def run_phase(phase: Phase, session: Session) -> list[PhaseOutcome]:
    """Run ``phase`` on its hosts with its concurrency; raise ``PhaseFailed`` naming failed hosts."""
    if phase.concurrency == "local":
        if phase.id not in CLUSTER_PHASES:
            raise PhaseFailed(f"phase {phase.id} has no implementation")
        return cluster_phase(phase.id, session.key)
    if phase.id not in HOST_PHASES:
        raise PhaseFailed(f"phase {phase.id} has no implementation")
    hosts = [h.name for h in phase.hosts(session.cluster)]
    if phase.concurrency in ("parallel", "together"):
        futures = {h: host_phase.submit(phase.id, h, session.key) for h in hosts}
        return _collect(phase, futures)
    results = []
    for h in hosts:  # serial and once: one host at a time, stop at the first failure
        results += _collect(phase, {h: host_phase.submit(phase.id, h, session.key)})
    return results
