"""``capstan approve RUN_ID``: answer a flow run that waits at an approval gate (mounted by ``cli._mount``).

The same answer the Prefect UI's resume form sends (``capstan.flows.approval.Approval``), for operators
on a terminal or a script. It talks to the Prefect server of ``PREFECT_API_URL``; a run that is not
paused is reported with its state, in one line.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from capstan.errors import CapstanError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


def parse_run_id(value: str) -> UUID:
    try:
        return UUID(value.strip())
    except ValueError:
        raise CapstanError(f"RUN_ID: {value!r} is not a flow run id (a UUID)") from None


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="the paused flow run's id (its log line names it)")],
    reject: Annotated[bool, typer.Option("--reject", help="reject the step: the flow run fails")] = False,
    note: Annotated[str, typer.Option("--note", help="why, for the record (the flow logs it)")] = "",
) -> None:
    """Approve (or --reject) the step a paused flow run is waiting for."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    flow_run_id = parse_run_id(run_id)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # Prefect would start a temporary server of its own: nobody waits there
        raise CapstanError("no Prefect server to ask: set PREFECT_API_URL to the server the flow runs on")
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise CapstanError(f"flow run {flow_run_id} not found on the Prefect server") from None
    label = f"flow run {run.name} ({flow_run_id})"
    if run.state is None or not run.state.is_paused():
        state = run.state.name if run.state is not None else "without a state"
        raise CapstanError(f"{label} is not paused: it is {state}")
    try:
        resume_flow_run(flow_run_id, run_input={"approved": not reject, "note": note})
    except NotPausedError:
        raise CapstanError(f"{label} is no longer paused") from None
    except FlowPauseTimeout:
        raise CapstanError(f"{label} can no longer be resumed: its approval timed out") from None
    except RuntimeError as exc:
        raise CapstanError(f"{label}: the server refused the answer: {exc}") from None
    typer.echo(f"{'rejected' if reject else 'approved'} {label}" + (f": {note}" if note else ""))
