"""The ``capstan`` command line.

User errors (any ``CapstanError``, and bad command-line usage) end as one line on stderr and exit code
2, never a traceback. Heavy imports (Prefect, Fabric) happen inside the commands that need them, so
``capstan plan`` and ``--help`` stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from capstan.errors import CapstanError

app = typer.Typer(
    name="capstan",
    help="Kubernetes cluster lifecycle on your own machines, as Prefect flows of SSH tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
import_app = typer.Typer(
    help="Import an existing inventory into a capstan cluster spec.", no_args_is_help=True
)
app.add_typer(import_app, name="import")

SpecOpt = Annotated[Path, typer.Option("-f", "--file", help="cluster spec (cluster.yaml)")]


@app.command()
def plan(
    file: SpecOpt,
    out: Annotated[Path | None, typer.Option("--out", help="write rendered files and PKI here")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Print the create-cluster DAG for a spec; --out writes every rendered file per host. Touches no host."""
    from capstan.plan import create_plan
    from capstan.plan.show import plan_json, plan_tree
    from capstan.spec import load_spec

    if fmt not in ("text", "json"):
        raise CapstanError(f"--format: expected text or json, not {fmt!r}")
    cluster = load_spec(file)
    phases = create_plan(cluster)
    if fmt == "json":
        typer.echo(plan_json(cluster, phases))
    else:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 120).print(plan_tree(cluster, phases))
    if out is not None:
        from capstan.plan.output import write_plan_output

        written = write_plan_output(cluster, out)
        typer.echo(f"wrote {written} files under {out}", err=fmt == "json")


@app.command()
def create(
    file: SpecOpt,
    until: Annotated[str | None, typer.Option("--until", help="stop after this phase")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would change")] = False,
) -> None:
    """Create (or converge) the cluster: the create-cluster flow, run here against the Prefect API."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.spec import load_spec

    load_spec(file)  # a bad spec is reported before Prefect starts
    from capstan.flows.create import create_cluster
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()

    result = create_cluster(spec=str(file.resolve()), until=until, dry_run=dry_run)
    for host, info in result["hosts"].items():
        phases = ", ".join(f"{p}({v['changed']})" for p, v in info["phases"].items() if v["changed"])
        typer.echo(
            f"{host}: {info['changed']} changed, {info['unchanged']} unchanged"
            + (f": {phases}" if phases else "")
        )
    if result.get("kubeconfig"):
        typer.echo(f"admin kubeconfig (0600): {result['kubeconfig']}")


@app.command()
def versions() -> None:
    """List the supported Kubernetes versions and the component versions pinned for each."""
    from rich.console import Console
    from rich.table import Table

    from capstan.versions import table_rows

    rows = table_rows()
    table = Table(title="Supported Kubernetes versions (sha256-pinned)")
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    # Piped output is not truncated to 80 columns: it is read by scripts and tests.
    Console(width=None if sys.stdout.isatty() else 250).print(table)


@app.command()
def defaults(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="show a spec with its defaults")] = None,
) -> None:
    """Print a spec with every default filled in (the production defaults, documented in one place)."""
    import yaml

    from capstan.spec import load_spec, parse_spec

    if file is not None:
        cluster = load_spec(file)
    else:
        host = {"name": "cp1", "address": "192.0.2.11", "roles": ["control-plane", "etcd", "worker"]}
        base = {"apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "example"}}
        cluster = parse_spec({**base, "spec": {"hosts": [host]}})
    data = cluster.model_dump(mode="json", by_alias=True)
    typer.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@import_app.command("kubespray")
def import_kubespray(
    inventory: Annotated[Path, typer.Argument(help="inventory.ini or hosts.yaml")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the spec")] = Path(
        "cluster.yaml"
    ),
    group_vars: Annotated[Path | None, typer.Option("--group-vars", help="group_vars directory")] = None,
    name: Annotated[str | None, typer.Option("--name", help="cluster name (metadata.name)")] = None,
) -> None:
    """Convert a Kubespray inventory (and its group_vars) into cluster.yaml; unmapped keys are listed."""
    from capstan.importers.kubespray import cli_main

    raise typer.Exit(cli_main(inventory, group_vars, output, name))


def _add_lab() -> None:
    try:
        from capstan.lab.cli import app as lab_app
    except ImportError:  # the lab is optional at import time (e.g. a partial install)
        return
    app.add_typer(lab_app, name="lab", help="A local lab of real hosts in network namespaces.")


def _mount(module: str) -> None:
    """Add the top-level commands of a feature's own typer app (``capstan backup``, ``capstan deploy``)."""
    import importlib

    try:
        sub = importlib.import_module(module).app
    except (ImportError, AttributeError):
        return
    app.registered_commands.extend(sub.registered_commands)


_add_lab()
try:
    from capstan.cli_certs import certs as _certs

    app.add_typer(_certs, name="certs")
except ImportError:  # pragma: no cover - a partial install
    pass
for _module in ("capstan.cli_etcd", "capstan.cli_platform", "capstan.cli_reset", "capstan.cli_scale"):
    _mount(_module)
_mount("capstan.cli_upgrade")
_mount("capstan.cli_remove")
_mount("capstan.platform.automation")  # capstan automation
_mount("capstan.cli_approve")  # capstan approve


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, mapping user errors to one line and exit code 2."""
    try:
        # Without standalone mode, click returns a command's exit code (typer.Exit) instead of exiting.
        code = app(args=argv, prog_name="capstan", standalone_mode=False)
    except CapstanError as exc:
        print(f"capstan: error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("capstan: aborted", file=sys.stderr)
        return 2
    except NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            print(exc.ctx.get_help())
        return 0
    except UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        print(f"capstan: error: {exc.format_message()}{where}", file=sys.stderr)
        return 2
    except ClickException as exc:
        print(f"capstan: error: {exc.format_message()}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
