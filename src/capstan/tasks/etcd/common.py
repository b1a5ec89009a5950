"""What the backup and restore flows share: the run key and the phases' notes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from capstan.errors import CapstanError
from capstan.tasks.etcd.model import decode_note
from capstan.tasks.runner import PhaseOutcome
from capstan.tasks.session import Session


def run_key(what: str) -> str:
    """The flow run's id: the key of its session and part of every task's cache key."""
    from prefect.context import get_run_context

    flow_run = getattr(get_run_context(), "flow_run", None)
    if flow_run is None:  # pragma: no cover - always inside a flow run
        raise CapstanError(f"{what} must run as a Prefect flow")
    return str(flow_run.id)


def remember(session: Session, outcomes: Iterable[PhaseOutcome]) -> None:
    """Keep each outcome's note where later phases of this run can read it."""
    for o in outcomes:
        session.memo[f"note:{o.phase}:{o.host}"] = decode_note(o.note)


def note_of(session: Session, phase: str, host: str) -> dict[str, Any]:
    value = session.memo.get(f"note:{phase}:{host}")
    if not isinstance(value, dict):
        raise CapstanError(f"{host}: phase {phase} left no result for this run")
    return value
