"""``capstan reset``: the reset-cluster flow from the command line (mounted by ``capstan.cli._mount``).

It destroys the cluster on the named hosts, so it asks first; ``--yes`` (required when stdin is not a
terminal) skips the question. Unknown hosts and bad specs are reported before Prefect starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from capstan.errors import CapstanError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


def parse_hosts(value: str | None) -> list[str] | None:
    """``a,b`` -> ["a", "b"]; empty or missing -> None (every host)."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise CapstanError("--hosts: expected host names separated by commas")
    return names


@app.command()
def reset(
    file: Annotated[str, typer.Option("-f", "--file", help="cluster spec: cluster.yaml or block:<name>")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    hosts: Annotated[
        str | None, typer.Option("--hosts", help="only these hosts (comma-separated names from the spec)")
    ] = None,
) -> None:
    """Stop and remove everything capstan installed (services, units, binaries, config, data)."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.flows.reset import chosen_hosts
    from capstan.flows.source import resolve_spec

    path = Path(file).expanduser()
    spec = str(path.resolve()) if path.exists() else file
    cluster = resolve_spec(spec).cluster
    names = chosen_hosts(cluster, parse_hosts(hosts))
    if not yes:
        if not sys.stdin.isatty():
            raise CapstanError("reset destroys the cluster: pass --yes to confirm when not on a terminal")
        typer.confirm(
            f"Remove Kubernetes, etcd and all their data of cluster {cluster.name} from {', '.join(names)}?",
            abort=True,
        )
    from capstan.flows.reset import reset_cluster
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()
    result = reset_cluster(spec=spec, hosts=names)
    for host, info in result["hosts"].items():
        typer.echo(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
