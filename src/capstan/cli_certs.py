"""``capstan certs check|renew``: certificate expiry and renewal from the command line.

Mounted on the main CLI as the ``certs`` sub-app (``app.add_typer(capstan.cli_certs.certs, name="certs")``).
Like ``capstan backup``, each runs its flow here against the Prefect API; the flow prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)
certs = typer.Typer(
    help="Certificate expiry (check) and renewal of the expiring leaves (renew).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(certs, name="certs")

SpecOpt = Annotated[str, typer.Option("-f", "--file", help="cluster spec: cluster.yaml or block:<name>")]
WithinOpt = Annotated[
    int | None,
    typer.Option(
        "--within", help="days: flag/renew what expires within them (default: spec.pki.renewWithinDays)"
    ),
]


def _spec_arg(file: str) -> str:
    """An existing file is passed on as an absolute path (the flow may run elsewhere); a block as is."""
    path = Path(file).expanduser()
    return str(path.resolve()) if path.exists() else file


def _start(spec: str, within: int | None) -> None:
    from capstan.errors import CapstanError
    from capstan.prefect_env import apply_defaults, quiet_console_tracebacks

    if within is not None and within < 0:
        raise CapstanError(f"--within: {within}: must be zero or more days")
    apply_defaults()
    from capstan.flows.source import resolve_spec

    resolve_spec(spec)  # a bad spec is reported before Prefect starts
    quiet_console_tracebacks()


@certs.command()
def check(file: SpecOpt, within: WithinOpt = None) -> None:
    """Expiry of every certificate on every host (Kubernetes, etcd, kubeconfigs); exit 1 if any flagged."""
    spec = _spec_arg(file)
    _start(spec, within)
    from capstan.flows.certs import certs_check

    result = certs_check(spec=spec, within_days=within)
    flagged = result["flagged"]
    typer.echo(
        f"{len(result['certificates'])} certificates, {len(flagged)} within {result['within_days']} days"
    )
    for where in flagged:
        typer.echo(f"  renew: {where}")
    if flagged:
        raise typer.Exit(1)


@certs.command()
def renew(file: SpecOpt, within: WithinOpt = None) -> None:
    """Re-issue the leaves expiring within the threshold (CAs kept), restart one node at a time."""
    spec = _spec_arg(file)
    _start(spec, within)
    from capstan.flows.certs import certs_renew

    result = certs_renew(spec=spec, within_days=within)
    for host, info in result["hosts"].items():
        restarted = ", ".join(info["restarted"]) or "nothing"
        typer.echo(f"{host}: {info['changed']} changed, restarted {restarted}")
