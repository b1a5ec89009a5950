"""Event-driven scale-out: a Prefect automation that runs ``scale-cluster/api`` when asked by an event.

Another system (a capacity alert, an inventory hook) emits the custom event ``capstan.scale.requested``
about the resource ``capstan.cluster.<name>``; the server's triggers service matches it and runs the
deployment with ``spec`` set to the cluster's spec (by default the block ``block:<name>``). The spec is
fixed in the automation, not taken from the event: whoever can emit events could otherwise point the
worker at any file or block. What to add is therefore decided by the spec block (edit it first, then
emit the event); the event only says "now".

One automation per cluster, named ``capstan-scale-<name>``. :func:`ensure_scale_automation` is
idempotent: it creates the automation, or brings an existing one of that name back to the wanted
trigger and action (and enabled), and removes duplicates of the name (two callers racing). It needs a
server with its triggers and actions services running (``prefect server start`` runs them; an
ephemeral server does not keep running between calls, so use a real one).

From the command line (mounted by ``capstan.cli``): ``capstan automation --cluster prod``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from capstan.platform.server import PlatformError

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

EVENT = "capstan.scale.requested"
RESOURCE_PREFIX = "capstan.cluster."
DEPLOYMENT = "scale-cluster/api"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


@dataclass(frozen=True)
class Ensured:
    """What :func:`ensure_scale_automation` did: ``created``, ``updated`` or ``unchanged``."""

    name: str
    id: str
    status: str
    deployment_id: str


def automation_name(cluster: str) -> str:
    return f"capstan-scale-{cluster}"


def resource_id(cluster: str) -> str:
    return f"{RESOURCE_PREFIX}{cluster}"


def desired(cluster: str, spec: str, deployment_id: str) -> AutomationCore:
    """The automation for ``cluster``: one matching event, one run of the deployment, fixed ``spec``."""
    from datetime import timedelta
    from uuid import UUID

    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    trigger = EventTrigger(
        expect={EVENT},
        match={"prefect.resource.id": resource_id(cluster)},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )
    action = RunDeployment(source="selected", deployment_id=UUID(deployment_id), parameters={"spec": spec})
    return AutomationCore(
        name=automation_name(cluster),
        description=f"Run {DEPLOYMENT} with spec={spec} when {EVENT} is emitted for {resource_id(cluster)}.",
        enabled=True,
        trigger=trigger,
        actions=[action],
    )


def _comparable(auto: Any) -> dict[str, Any]:
    keys = {
        "name",
        "description",
        "enabled",
        "trigger",
        "actions",
        "actions_on_trigger",
        "actions_on_resolve",
    }
    dumped: dict[str, Any] = auto.model_dump(mode="json", include=keys)
    dumped["trigger"].pop("id", None)  # assigned by the server
    return dumped


def check_cluster_name(cluster: str) -> None:
    if not _NAME.match(cluster):
        raise PlatformError(
            f"--cluster {cluster!r}: use the cluster's metadata.name (lower-case, digits, dashes)"
        )


def ensure_scale_automation(
    cluster: str, *, spec: str | None = None, deployment: str = DEPLOYMENT
) -> Ensured:
    """Create or update the automation ``capstan-scale-<cluster>`` (see the module docstring)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    check_cluster_name(cluster)
    spec = spec or f"block:{cluster}"
    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise PlatformError(
                f"--deployment {deployment}: not found on the server at "
                f"{str(client.api_url).rstrip('/')} (run `capstan deploy`)"
            ) from None
        want = desired(cluster, spec, str(dep.id))
        existing = client.read_automations_by_name(want.name)
        if not existing:
            return Ensured(want.name, str(client.create_automation(want)), "created", str(dep.id))
        keep, *extra = sorted(existing, key=lambda a: str(a.id))
        for dup in extra:
            client.delete_automation(dup.id)
        if _comparable(keep) == _comparable(want) and not extra:
            return Ensured(want.name, str(keep.id), "unchanged", str(dep.id))
        client.update_automation(keep.id, want)
        return Ensured(want.name, str(keep.id), "updated", str(dep.id))


def delete_scale_automation(cluster: str) -> int:
    """Delete every automation named ``capstan-scale-<cluster>``; return how many there were."""
    from prefect.client.orchestration import get_client

    check_cluster_name(cluster)
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(automation_name(cluster))
        for auto in found:
            client.delete_automation(auto.id)
        return len(found)


# ---- command line (mounted into ``capstan`` by capstan.cli._mount) -------------------------------

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@app.command()
def automation(
    cluster: Annotated[str, typer.Option("--cluster", help="the cluster's metadata.name (event resource)")],
    spec: Annotated[
        str | None, typer.Option("--spec", help="spec the run gets (default: block:<cluster>)")
    ] = None,
    deployment: Annotated[str, typer.Option("--deployment", help="deployment to run")] = DEPLOYMENT,
    delete: Annotated[bool, typer.Option("--delete", help="remove the automation instead")] = False,
) -> None:
    """Scale out on an event: run scale-cluster/api when capstan.scale.requested names this cluster."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.platform.deploy import current_api_url

    current_api_url()  # an automation on an ephemeral server would vanish with it: refuse clearly
    if delete:
        gone = delete_scale_automation(cluster)
        typer.echo(f"{automation_name(cluster)}: deleted {gone}")
        return
    done = ensure_scale_automation(cluster, spec=spec, deployment=deployment)
    typer.echo(f"{done.name}: {done.status} ({done.id})")
    typer.echo(f"trigger: event {EVENT} with resource id {resource_id(cluster)} -> {deployment}")
