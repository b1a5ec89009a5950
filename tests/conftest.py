"""Suite-wide fixtures.

``prefect_api``: a Prefect server (SQLite, loopback) for every test that runs a flow. The flow-run
heartbeat is switched off: it adds a fixed second to each flow run and only serves zombie detection,
which tests do not need.

Under pytest-xdist (``make test``), the controller process starts ONE ``prefect server start`` for all
workers (``pytest_configure``) and stops it by its PID when the run ends (``pytest_unconfigure``); each
worker's ``prefect_api`` waits for it to answer and points Prefect's settings at it. Why: each worker
starting its own temporary server meant three database migrations and three sets of server services
on two busy cores at the start of the run (one harness took 5.5 minutes to answer in CI), and the
idle servers kept costing CPU throughout. Tests never share names: lab and cluster names carry the
worker's PID and flow runs are looked up by id or by a unique name. Without xdist (``make unit``, a
single file), Prefect's own test harness starts a temporary server as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from capstan.prefect_env import apply_defaults

apply_defaults()

SHARED_API = "CAPSTAN_TEST_PREFECT_API_URL"
"""Set by the xdist controller for its workers: the URL of the Prefect server they share."""
SHARED_HOME = "CAPSTAN_TEST_PREFECT_HOME"
"""... and that server's PREFECT_HOME (its log is server.log there)."""
STARTUP_TIMEOUT = 300.0
_SERVER = pytest.StashKey[tuple[subprocess.Popen[bytes], Path]]()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return  # an xdist worker, or no workers at all
    if os.environ.get(SHARED_API):
        return  # already given
    from capstan.platform import server as srv

    home = Path(tempfile.mkdtemp(prefix="capstan-test-prefect-"))
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = srv.process_env(
        api_url=api_url,
        home=home,
        extra={
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
            # three workers write at once: wait for SQLite's write lock instead of answering 503
            "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
        },
    )
    proc = srv.start_server("127.0.0.1", port, env, log=home / "server.log")
    config.stash[_SERVER] = (proc, home)
    os.environ[SHARED_API] = api_url  # the workers, started after this hook, inherit both
    os.environ[SHARED_HOME] = str(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    started = config.stash.get(_SERVER, None)
    if started is None:
        return
    from capstan.platform import server as srv

    proc, home = started
    srv.stop(proc)
    os.environ.pop(SHARED_API, None)
    os.environ.pop(SHARED_HOME, None)
    shutil.rmtree(home, ignore_errors=True)


def _server_log_tail() -> str:
    with contextlib.suppress(OSError):
        return (Path(os.environ.get(SHARED_HOME, "/nonexistent")) / "server.log").read_text(errors="replace")[
            -2000:
        ]
    return ""


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    shared = os.environ.get(SHARED_API)
    if shared:
        import prefect.context

        from capstan.platform import server as srv
        from capstan.platform.server import PlatformError

        try:
            srv.wait_healthy(shared, None, timeout=STARTUP_TIMEOUT)
        except PlatformError as exc:
            pytest.fail(f"{exc}\n{_server_log_tail()}")
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                temporary_settings(updates={PREFECT_API_URL: shared, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
            )
            # as Prefect's harness does: threads started from a context copied earlier see it too
            global_settings = getattr(prefect.context, "_temporary_global_settings_context", None)
            if global_settings is not None:
                stack.enter_context(global_settings(prefect.context.get_settings_context()))
            yield
        return

    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=int(STARTUP_TIMEOUT)),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
