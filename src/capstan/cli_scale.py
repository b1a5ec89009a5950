"""``capstan scale``: the scale-cluster flow from the command line (mounted by ``capstan.cli._mount``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@app.command()
def scale(
    file: Annotated[str, typer.Option("-f", "--file", help="cluster spec: cluster.yaml or block:<name>")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would change")] = False,
) -> None:
    """Add every host of the spec that is not part of the cluster yet (workers and control planes)."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.flows.source import resolve_spec

    path = Path(file).expanduser()
    spec = str(path.resolve()) if path.exists() else file
    resolve_spec(spec)  # a bad spec is reported before Prefect starts
    from capstan.flows.scale import scale_cluster
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()
    result = scale_cluster(spec=spec, dry_run=dry_run)
    added = ", ".join(result["added"]) or "none"
    typer.echo(f"added: {added}")
    typer.echo(f"touched: {', '.join(result['touched']) or 'none'}")
    if result.get("etcd_added"):
        typer.echo(f"etcd members added: {', '.join(result['etcd_added'])}")
    if result.get("etcd_servers_changed"):
        typer.echo(f"apiserver --etcd-servers updated on: {', '.join(result['etcd_servers_changed'])}")
    if result["lb_refreshed"]:
        typer.echo(f"load balancers updated on: {', '.join(result['lb_refreshed'])}")
    if result["untouched"]:
        typer.echo(f"untouched: {', '.join(result['untouched'])}")
    for host, info in result["hosts"].items():
        typer.echo(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
