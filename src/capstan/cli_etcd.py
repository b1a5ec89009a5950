"""``capstan backup`` and ``capstan restore``: the etcd backup and restore flows from the command line.

Mounted on the main CLI with ``app.add_typer(capstan.cli_etcd.app)`` (no name: the two commands sit
at the top level). Like ``capstan create``, each runs its flow here against the Prefect API and prints
what happened; ``--plan`` prints the phases and touches no host.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from capstan.errors import CapstanError
from capstan.plan.phases import CONCURRENCY_TEXT, PlannedPhase

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)

SpecOpt = Annotated[str, typer.Option("-f", "--file", help="cluster spec: cluster.yaml or block:<name>")]
DestOpt = Annotated[
    str | None,
    typer.Option(
        "--destination", help="off-host copies: a directory or block:<slug>/<name> (default: the spec's)"
    ),
]
PlanOpt = Annotated[bool, typer.Option("--plan", help="print the phases and their hosts; touch nothing")]
_CONCURRENCY = {**CONCURRENCY_TEXT, "once": "once, on one member chosen at run time"}


def _spec_arg(file: str) -> str:
    """An existing file is passed on as an absolute path (the flow may run elsewhere); a block as is."""
    path = Path(file).expanduser()
    return str(path.resolve()) if path.exists() else file


def _start(spec: str, destination: str | None) -> Any:
    """Check what can be checked before Prefect starts: the spec and the destinations."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.flows.source import resolve_spec
    from capstan.tasks.etcd.offhost import parse_destination

    cluster = resolve_spec(spec).cluster
    if cluster.spec.etcd.backup.destination:
        parse_destination(cluster.spec.etcd.backup.destination)
    if destination and destination.strip():
        parse_destination(destination, "--destination")
    return cluster


def plan_text(title: str, phases: list[PlannedPhase]) -> str:
    lines = [title]
    for i, pp in enumerate(phases, 1):
        lines.append(f"{i:>2}. {pp.phase.title} ({pp.phase.id}) - {_CONCURRENCY[pp.phase.concurrency]}")
        lines.append(f"    {pp.phase.summary}")
        if pp.hosts:
            lines.append(f"    {', '.join(pp.hosts)}")
    return "\n".join(lines)


@app.command()
def backup(
    file: SpecOpt,
    retention: Annotated[
        int | None, typer.Option("--retention", help="dated snapshots kept per member (default: the spec's)")
    ] = None,
    destination: DestOpt = None,
    plan: PlanOpt = False,
) -> None:
    """Snapshot etcd from one healthy member, keep the newest N on the members, copy it off-host."""
    spec = _spec_arg(file)
    cluster = _start(spec, destination)
    if plan:
        from capstan.flows.backup import backup_plan

        typer.echo(plan_text(f"backup-etcd {cluster.name}", backup_plan(cluster)))
        return
    from capstan.flows.backup import backup_etcd
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()
    result = backup_etcd(spec=spec, retention=retention, destination=destination)
    snap = result["snapshot"]
    for host, why in result["skipped"].items():
        typer.echo(f"skipped member {host}: {why}")
    typer.echo(
        f"snapshot {snap['name']}: revision {snap['revision']}, {snap['keys']} keys, {snap['size']} bytes, "
        f"sha256 {snap['sha256']}"
    )
    for where in result["copies"]:
        typer.echo(f"  copy: {where}")
    if not result["offhost"]:
        typer.echo("  no off-host copy: set spec.etcd.backup.destination or pass --destination")
    for host, names in result["removed"].items():
        if names:
            typer.echo(f"  {host}: removed {', '.join(names)}")
    pruned = result.get("offhost_retention") or {}
    if pruned.get("removed"):
        typer.echo(f"  off-host {pruned['where']}: removed {', '.join(pruned['removed'])}")


@app.command()
def restore(
    file: SpecOpt,
    snapshot: Annotated[
        str | None,
        typer.Argument(help="etcd-YYYYmmddTHHMMSSZ, HOST:PATH or a local file (default: the newest)"),
    ] = None,
    destination: DestOpt = None,
    health_timeout: Annotated[
        float, typer.Option("--health-timeout", help="seconds each member may take to become healthy")
    ] = 120.0,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    plan: PlanOpt = False,
) -> None:
    """Replace every etcd member's data with one snapshot (apiservers are stopped meanwhile)."""
    spec = _spec_arg(file)
    cluster = _start(spec, destination)
    if plan:
        from capstan.flows.restore import restore_plan

        typer.echo(plan_text(f"restore-etcd {cluster.name}", restore_plan(cluster)))
        return
    members = ", ".join(h.name for h in cluster.etcd_hosts)
    what = snapshot or "the newest snapshot"
    if not yes:
        if not sys.stdin.isatty():
            raise CapstanError("restore replaces all etcd data: pass --yes to confirm when not on a terminal")
        typer.confirm(f"Replace the etcd data of cluster {cluster.name} ({members}) with {what}?", abort=True)
    from capstan.flows.restore import restore_etcd
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()
    result = restore_etcd(
        spec=spec, snapshot=snapshot, destination=destination, health_timeout=health_timeout
    )
    snap = result["snapshot"]
    typer.echo(
        f"restored {snap['name']} from {snap['from']}: revision {snap['revision']}, {snap['keys']} keys, "
        f"new cluster token {result['token']}"
    )
    for host, info in result["members"].items():
        typer.echo(f"  {host}: {info['data_dir']} restored, old data {info['previous_removed']} removed")
    for host, state in result["apiservers"].items():
        if state != "none":
            typer.echo(f"  {host}: control plane back, /readyz ok")
