"""Suite-wide fixtures.

``prefect_api``: a temporary Prefect server (SQLite, loopback) of this test process for every test
that runs a flow. The flow-run heartbeat is switched off: it adds a fixed second to each flow run and
only serves zombie detection, which tests do not need.

Under pytest-xdist (``make test``) the controller migrates ONE template database before the workers
start (``pytest_configure``: ``prefect server database upgrade``), and each worker's server starts on
a copy of it with migrations off. Why: three workers each migrating a fresh database at once on two
busy cores took minutes (one harness took 5.5 minutes to answer in CI); a copy takes milliseconds.
Each worker keeps its own server and database, as with Prefect's harness: one server shared by the
three workers was tried and SQLite answered "database is locked" under their combined writes. The
server is started the way Prefect's harness starts its own (uvicorn on ``create_app``, ephemeral
services, no UI), stopped by its PID at the end of the worker's session. Without xdist (``make
unit``, a single file) Prefect's harness itself is used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capstan.prefect_env import apply_defaults

apply_defaults()

TEMPLATE_DB = "CAPSTAN_TEST_PREFECT_TEMPLATE_DB"
"""Set by the xdist controller for its workers: a migrated Prefect database to start from."""
STARTUP_TIMEOUT = 300.0
_TEMPLATE = pytest.StashKey[Path]()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return  # an xdist worker, or no workers at all
    if os.environ.get(TEMPLATE_DB):
        return  # already given
    from capstan.platform import server as srv

    home = Path(tempfile.mkdtemp(prefix="capstan-test-prefect-"))
    db = home / "template.db"
    env = srv.process_env(home=home, extra={"PREFECT_SERVER_DATABASE_CONNECTION_URL": _sqlite_url(db)})
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        srv.prefect_argv("server", "database", "upgrade", "-y"),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    config.stash[_TEMPLATE] = home
    if done.returncode == 0 and db.exists():
        os.environ[TEMPLATE_DB] = str(db)  # the workers, started after this hook, inherit it
    else:  # the workers fall back to Prefect's harness; say why once
        print(f"capstan tests: no template Prefect database ({done.returncode}): {done.stderr[-500:]}")


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_TEMPLATE, None)
    if home is None:
        return
    os.environ.pop(TEMPLATE_DB, None)
    shutil.rmtree(home, ignore_errors=True)


def _start_from_template(template: Path, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A server like the one Prefect's harness starts, on a copy of the migrated template."""
    import prefect

    from capstan.platform import server as srv
    from capstan.platform.server import PlatformError

    db = home / "prefect.db"
    shutil.copyfile(template, db)
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = srv.process_env(
        home=home,
        extra={
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": _sqlite_url(db),
            "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        },
    )
    env.pop("PREFECT_API_URL", None)
    argv = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
        "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    with (home / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        srv.wait_healthy(api_url, proc, timeout=STARTUP_TIMEOUT)
    except PlatformError as exc:
        srv.stop(proc)
        tail = (home / "server.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"{exc}\n{tail}")
    return proc, api_url


def _drain_clients() -> None:
    """Send what Prefect's clients still hold before the server goes (as the harness does)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):
            logs: Any = APILogWorker.instance().drain()
            if hasattr(logs, "__await__"):
                await logs
        events: Any = EventsWorker.drain_all()
        if hasattr(events, "__await__"):
            await events

    with contextlib.suppress(Exception):
        run_coro_as_sync(drain())


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    template = os.environ.get(TEMPLATE_DB)
    if template and Path(template).exists():
        import prefect.context

        from capstan.platform import server as srv

        proc, api_url = _start_from_template(Path(template), tmp_path_factory.mktemp("prefect-server"))
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(
                    temporary_settings(
                        updates={PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
                    )
                )
                # as Prefect's harness does: threads started from a context copied earlier see it too
                global_settings = getattr(prefect.context, "_temporary_global_settings_context", None)
                if global_settings is not None:
                    stack.enter_context(global_settings(prefect.context.get_settings_context()))
                yield
                _drain_clients()
        finally:
            srv.stop(proc)
        return

    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=int(STARTUP_TIMEOUT)),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
