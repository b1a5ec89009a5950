"""A human approval gate inside a running flow: pause until someone approves or rejects a step.

Why Prefect's in-process pause (``pause_flow_run`` with typed input): the flow keeps its SSH sessions,
locks and memory while it waits, it works for a flow started from the CLI as well as from a deployment,
and the Prefect UI shows the ``Approval`` form on the paused run. ``capstan approve`` sends the same
input from a terminal.

The pause key is derived from the step text, so each step of a run is its own question. Within one
attempt of a run, the same text asked twice gets the first answer again (Prefect refuses a second pause
with the same key), so a gate that must be asked per batch needs one text per batch. A retried run
(``prefect flow-run retry``) asks again: Prefect clears a run's pause keys on retry.

Logged at WARNING: capstan's Prefect defaults drop INFO, and a run blocked on a human must say so.
"""

from __future__ import annotations

import hashlib
import re

from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from pydantic import Field

from capstan.errors import CapstanError

DEFAULT_POLL_SECONDS = 5
"""How often the paused flow looks whether it was resumed (Prefect's own default is 10 s)."""


class Approval(RunInput):
    """The answer to an approval request (the Prefect UI renders these fields as the resume form)."""

    approved: bool = Field(
        default=True, description="Approve the step and let the flow continue; untick to reject it."
    )
    note: str = Field(
        default="", description="Why, for the record: logged by the flow and kept with the run."
    )


class ApprovalRejected(CapstanError):
    """Someone rejected the step: the flow stops here."""

    def __init__(self, step: str, note: str = "") -> None:
        self.step = step
        self.note = note
        super().__init__(f"approval rejected: {step}" + (f" (note: {note})" if note else ""))

    def __reduce__(self) -> tuple[type[ApprovalRejected], tuple[str, str]]:
        return (type(self), (self.step, self.note))


class ApprovalTimeout(CapstanError):
    """Nobody answered within the timeout: the flow stops here."""

    def __init__(self, step: str, timeout: int) -> None:
        self.step = step
        self.timeout = timeout
        super().__init__(
            f"approval timed out: nobody approved or rejected {step!r} within {timeout} s; start the "
            "operation again (or retry the flow run) to be asked again"
        )

    def __reduce__(self) -> tuple[type[ApprovalTimeout], tuple[str, int]]:
        return (type(self), (self.step, self.timeout))


def approval_key(step: str) -> str:
    """A pause key for ``step``: letters, digits and dashes (what Prefect accepts), unique per text."""
    slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")[:48].strip("-") or "step"
    return f"approve-{slug}-{hashlib.sha256(step.encode()).hexdigest()[:8]}"


def waiting_message(step: str, run_id: str) -> str:
    return f"waiting for approval: {step} — approve in the Prefect UI or `capstan approve {run_id}`"


def await_approval(step: str, *, timeout: int = 3600, poll_interval: int = DEFAULT_POLL_SECONDS) -> None:
    """Pause the current flow run until ``step`` is approved; raise when it is rejected or times out."""
    if not step.strip():
        raise CapstanError("await_approval: the step to approve must be named")
    if timeout <= 0:
        raise CapstanError(f"await_approval: timeout must be a positive number of seconds, not {timeout}")
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise CapstanError(f"await_approval({step!r}) was called outside a flow run: nothing to pause")
    logger = get_run_logger()
    logger.warning(waiting_message(step, str(context.flow_run.id)))
    try:
        answer = pause_flow_run(
            wait_for_input=Approval,
            timeout=timeout,
            poll_interval=max(1, min(poll_interval, timeout)),
            key=approval_key(step),
        )
    except FlowPauseTimeout:
        raise ApprovalTimeout(step, timeout) from None
    if not answer.approved:
        raise ApprovalRejected(step, answer.note)
    logger.warning("approved: %s%s", step, f" (note: {answer.note})" if answer.note else "")
