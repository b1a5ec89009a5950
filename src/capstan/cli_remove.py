"""``capstan remove-node``: the remove-node flow from the command line (mounted by ``capstan.cli._mount``).

An unknown host and the last control plane are refused before Prefect starts; the refusals that need
the cluster's view (etcd quorum, an unreachable host) come from the flow, before it changes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@app.command("remove-node")
def remove_node(
    node: Annotated[str, typer.Argument(help="the host to remove (its name in the spec)")],
    file: Annotated[str, typer.Option("-f", "--file", help="cluster spec: cluster.yaml or block:<name>")],
    unreachable: Annotated[
        bool,
        typer.Option("--unreachable", help="the host is dead: do not contact it (no drain, no reset)"),
    ] = False,
) -> None:
    """Remove one host: drain, etcd member removal, reset, Node deletion, fix-ups on the other hosts."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.flows.source import resolve_spec

    path = Path(file).expanduser()
    spec = str(path.resolve()) if path.exists() else file
    from capstan.flows.remove_node import check_request

    check_request(resolve_spec(spec).cluster, node)  # before Prefect starts
    from capstan.flows.remove_node import remove_node as flow
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()
    result = flow(spec=spec, node=node, unreachable=unreachable)
    for host, info in result["hosts"].items():
        typer.echo(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
    for phase, info in result["api"].items():
        typer.echo(f"{phase}: {info['note']}")
    typer.echo(f"removed: {result['removed']}")
    typer.echo(f"existing hosts changed: {', '.join(result['changed_hosts']) or 'none'}")
    if result["untouched"]:
        typer.echo(f"untouched: {', '.join(result['untouched'])}")
    if result.get("kubeconfig"):
        typer.echo(f"admin kubeconfig (now through the new first control plane): {result['kubeconfig']}")
