"""The approval gate against a real Prefect server: a flow pauses, ``capstan approve`` answers it.

The flow runs in this process (the ``prefect_api`` test server, loopback); a helper thread polls the
API until the run is Paused and then runs the real ``capstan approve`` CLI as a subprocess against the
same server, as an operator on another terminal would.
"""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL

from capstan.errors import CapstanError
from capstan.flows.approval import (
    Approval,
    ApprovalRejected,
    ApprovalTimeout,
    approval_key,
    await_approval,
    waiting_message,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

CAPSTAN = str(Path(sys.executable).parent / "capstan")


@flow(name="approval-gate-test")
def gate(step: str, timeout: int = 120) -> str:
    await_approval(step, timeout=timeout, poll_interval=1)
    return "went on"


@flow(name="approval-twice-test")
def twice(step: str) -> str:
    await_approval(step, timeout=120, poll_interval=1)
    await_approval(step, timeout=120, poll_interval=1)  # the same gate: answered already
    return "went on"


def _find_run(name: str) -> FlowRun | None:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return runs[0] if runs else None


def _capstan(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.run([CAPSTAN, *args], capture_output=True, text=True, timeout=300, env=env)


class Answer:
    """In a thread: wait until the named run is Paused (deadline), then run ``capstan approve`` once."""

    def __init__(self, run_name: str, *extra: str, deadline: float = 240) -> None:
        self.run_name, self.extra, self.deadline = run_name, extra, deadline
        self.result: subprocess.CompletedProcess[str] | None = None
        self.run_id = ""
        self.error = ""
        ctx = contextvars.copy_context()  # the test server's settings live in context variables
        self.thread = threading.Thread(target=ctx.run, args=(self._answer,), daemon=True)
        self.thread.start()

    def _answer(self) -> None:
        end = time.monotonic() + self.deadline
        while time.monotonic() < end:
            run = _find_run(self.run_name)
            if run is not None and run.state is not None and run.state.is_paused():
                self.run_id = str(run.id)
                self.result = _capstan("approve", self.run_id, *self.extra)
                return
            time.sleep(0.5)
        self.error = f"{self.run_name} never paused within {self.deadline:.0f} s"

    def join(self) -> subprocess.CompletedProcess[str]:
        self.thread.join(timeout=self.deadline + 150)
        assert not self.error, self.error
        assert self.result is not None, "capstan approve did not run"
        return self.result


def _run(step: str, run_name: str, **kw: Any) -> Any:
    return gate.with_options(flow_run_name=run_name)(step, **kw, return_state=True)


def test_a_paused_flow_continues_once_capstan_approve_answers() -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    answer = Answer(name, "--note", "cp1 looks healthy")
    state = _run("upgrade control plane cp1", name)
    done = answer.join()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"approved flow run {name} ({answer.run_id}): cp1 looks healthy"
    assert state.is_completed(), state.message
    assert state.result() == "went on"


def test_a_rejected_step_fails_the_flow_with_the_step_and_the_note() -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    answer = Answer(name, "--reject", "--note", "wait for the change window")
    state = _run("upgrade workers batch 1", name)
    done = answer.join()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"rejected flow run {name}")
    assert state.is_failed()
    with pytest.raises(ApprovalRejected) as caught:
        state.result()
    assert (
        str(caught.value) == "approval rejected: upgrade workers batch 1 (note: wait for the change window)"
    )
    assert "ApprovalRejected" in (state.message or "") or "approval rejected" in (state.message or "")


def test_the_same_step_asked_twice_in_one_run_takes_the_first_answer() -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    answer = Answer(name)
    started = time.monotonic()
    state = twice.with_options(flow_run_name=name)("drain w1", return_state=True)
    assert answer.join().returncode == 0
    assert state.is_completed(), state.message
    assert time.monotonic() - started < 120  # the second gate did not wait for its timeout


def test_approving_a_run_that_is_not_paused_names_its_state() -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    answer = Answer(name)
    assert _run("rotate certificates", name).is_completed()
    assert answer.join().returncode == 0
    run = _find_run(name)
    assert run is not None
    done = _capstan("approve", str(run.id))
    assert done.returncode == 2
    assert done.stderr.strip() == f"capstan: error: flow run {name} ({run.id}) is not paused: it is Completed"


def test_an_unanswered_approval_times_out_with_a_clear_error() -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    expected = "approval timed out: nobody approved or rejected 'remove node w2' within 2 s"
    with pytest.raises(ApprovalTimeout, match=expected):
        gate.with_options(flow_run_name=name)("remove node w2", timeout=2)
    run = _find_run(name)
    # The server rewrites the final state of a run whose pause expired ("... never resumed"); the
    # caller gets ApprovalTimeout itself and the run's log carries its message.
    assert run is not None and run.state is not None and run.state.is_failed()


def test_an_unknown_run_id_is_one_line() -> None:
    ghost = uuid.uuid4()
    done = _capstan("approve", str(ghost))
    assert done.returncode == 2
    assert done.stderr.strip() == f"capstan: error: flow run {ghost} not found on the Prefect server"


def test_outside_a_flow_run_there_is_nothing_to_pause() -> None:
    with pytest.raises(CapstanError, match="outside a flow run"):
        await_approval("x")


def test_keys_are_what_prefect_accepts_and_differ_per_step() -> None:
    keys = {approval_key(s) for s in ("upgrade cp1", "upgrade-cp1", "Upgrade CP1!", "ü" * 80)}
    assert len(keys) == 4
    assert all(k.replace("-", "").isalnum() and k.isascii() for k in keys)
    assert waiting_message("s", "abc").endswith("approve in the Prefect UI or `capstan approve abc`")
    assert set(Approval.model_fields) == {"approved", "note"}
    assert all(f.description for f in Approval.model_fields.values())
