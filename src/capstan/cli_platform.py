"""``capstan deploy`` / ``server`` / ``worker``: capstan on a Prefect server, in three commands.

A typer app the main CLI mounts; every user error is a ``CapstanError`` (one line, exit 2 through
``capstan.cli.main``). Prefect is imported inside the commands, so ``capstan --help`` stays fast.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

app = typer.Typer(
    help="Run capstan's flows on a Prefect server: deploy them, or start a local server and worker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _interrupt_on_sigterm() -> None:
    """systemd and `kill` send SIGTERM: stop the child the same way as on Ctrl-C (never orphan it)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@app.command()
def deploy(
    prefect_file: Annotated[
        Path | None, typer.Option("--prefect-file", help="default: ./prefect.yaml, else capstan's own")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="timezone of every schedule (e.g. Europe/Berlin)")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="DEPLOYMENT:KEY=VALUE default parameter (repeatable)"),
    ] = None,
) -> None:
    """Create the work pool if missing, register capstan's blocks and every deployment in prefect.yaml."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.platform.deploy import deploy as run_deploy

    for dep in run_deploy(prefect_file, timezone=timezone, params=param or []):
        typer.echo(f"{dep.full_name}: {dep.id}")


@app.command()
def server(
    host: Annotated[str, typer.Option("--host", help="address to bind (loopback unless you add auth)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="port of the API and UI")] = 4200,
    home: Annotated[
        Path | None, typer.Option("--home", help="PREFECT_HOME (database, results); default ~/.prefect")
    ] = None,
) -> None:
    """Start a local Prefect server (SQLite, analytics off) in the foreground; prints the UI URL."""
    from capstan.platform.server import process_env, start_server, stop, wait_healthy

    env = process_env(home=home.expanduser() if home is not None else None)
    proc = start_server(host, port, env)
    _interrupt_on_sigterm()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    try:
        wait_healthy(f"{url}/api", proc)
        typer.echo(f"Prefect UI: {url}")
        typer.echo(f"export PREFECT_API_URL={url}/api   # for capstan, workers and `capstan deploy`")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(proc)


@app.command()
def worker(
    pool: Annotated[str, typer.Option("--pool", help="work pool to take runs from")] = "capstan",
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many runs at once")] = None,
) -> None:
    """Start a Prefect process worker for capstan's pool in the foreground (needs PREFECT_API_URL)."""
    from capstan.platform.deploy import current_api_url
    from capstan.platform.server import process_env, start_worker, stop

    current_api_url()  # a worker without a server would poll an ephemeral one: refuse clearly
    proc = start_worker(pool, process_env(), limit=limit)
    _interrupt_on_sigterm()
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(proc)
