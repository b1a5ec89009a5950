"""A real Prefect platform for the tests in this folder: server, worker, deployments, a lab.

``platform``: a persistent ``prefect server start`` on 127.0.0.1 and a free port, with its own
PREFECT_HOME (SQLite) in a temporary directory, analytics off; a real ``prefect worker`` on the
``capstan`` process pool; every deployment of the repository's prefect.yaml registered by ``capstan
deploy``'s own code (schedules in Asia/Kolkata, a +05:30 zone, so a wrong timezone cannot pass by
luck). This test process talks to that server (PREFECT_API_URL) during every test that uses it
(``_on_the_platform``). Started by the fixture, stopped by PID when the worker's session ends (the
folder is not a Python package, so "package" scope lasts the session). Never the ephemeral server: it
loses task-run history, which resuming depends on.

``platform_lab``: two lab hosts (cp1 control-plane+etcd, w1 worker), for flows that reach hosts.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from capstan.platform import server as srv

REPO = Path(__file__).resolve().parents[2]
TIMEZONE = "Asia/Kolkata"
LOCK_TIMEOUT = 15  # seconds a second run waits for a busy cluster before failing (worker env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Platform:
    api_url: str
    home: Path
    env: dict[str, str]
    logs: Path
    deployments: dict[str, str] = field(default_factory=dict)  # "flow/name" -> id
    timezone: str = TIMEZONE
    lock_timeout: int = LOCK_TIMEOUT
    prefect_file: Path = REPO / "prefect.yaml"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call, as another system would make it (no Prefect client): 503 (SQLite busy) and
        429 are retried until a deadline, as any caller of the API should."""
        data = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + 60
        while True:
            req = urllib.request.Request(
                f"{self.api_url}{path}",
                data=data,
                method=method,
                headers={"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    raw = resp.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503) or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def prefect(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            srv.prefect_argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def flow_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", f"/flow_runs/{run_id}")
        return result

    def wait_final(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        """Poll a flow run until it is in a final state (or fail with its last state)."""
        deadline = time.monotonic() + timeout
        run = self.flow_run(run_id)
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(0.5)
        pytest.fail(f"flow run {run_id} still {run['state']['name']} after {timeout:g} s")

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
        result: list[dict[str, Any]] = self.api("POST", "/task_runs/filter", body)
        return result

    def task_runs_with(self, run_id: str, names: set[str], timeout: float = 60) -> list[dict[str, Any]]:
        """The run's task runs once those named are recorded: the server records task runs from
        events in batches (up to a second behind the run), so a run can end before they show."""
        found: list[dict[str, Any]] = []

        def recorded() -> bool:
            found[:] = self.task_runs(run_id)
            return names <= {t["name"] for t in found}

        self.wait_for(f"task runs {sorted(names)} of flow run {run_id}", recorded, timeout)
        return found


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        srv.stop(proc)


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from capstan.platform.deploy import deploy

    root = tmp_path_factory.mktemp("prefect-platform")
    home, logs = root / "home", root / "logs"
    home.mkdir()
    logs.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = srv.process_env(
        api_url=api_url,
        home=home,
        extra={
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            # SQLite on a busy 2-core machine: wait for the write lock instead of answering 503.
            "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
            "CAPSTAN_CLUSTER_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        },
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(srv.start_server("127.0.0.1", port, env, log=logs / "server.log"))
        srv.wait_healthy(api_url, procs[0], timeout=240)
        plat = Platform(api_url, home, env, logs)
        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for dep in deploy(REPO / "prefect.yaml", timezone=TIMEZONE, env=env):
                plat.deployments[dep.full_name] = dep.id
            worker_dir = root / "worker"
            worker_dir.mkdir()
            procs.append(
                subprocess.Popen(
                    srv.prefect_argv("worker", "start", "--pool", "capstan", "--limit", "4"),
                    env=env,
                    cwd=worker_dir,
                    stdout=(logs / "worker.log").open("ab"),
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            yield plat
    finally:
        _stop_all(procs)


@pytest.fixture(autouse=True)
def _on_the_platform(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test of this folder that uses ``platform`` talks to that server from this process.

    Why per test: the folder has no ``__init__.py``, so its "package" fixtures live as long as the
    session of the xdist worker. A worker may run a file of this folder, then a lab test that first
    requests the session's ``prefect_api`` (whose settings go on top of the platform's), then come
    back here: the platform is still up, but this process would talk to the other server (a CI run
    found a deployment "not found" that way; a warning this fixture used to print confirmed it).
    Leftover Prefect client contexts, which would pin a client to another server, are set aside too.
    """
    if "platform" not in request.fixturenames:
        yield
        return
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    plat: Platform = request.getfixturevalue("platform")
    sync_var: Any = prefect.context.SyncClientContext.__var__
    async_var: Any = prefect.context.AsyncClientContext.__var__
    sync_token, async_token = sync_var.set(None), async_var.set(None)
    try:
        with temporary_settings(updates={PREFECT_API_URL: plat.api_url}):
            yield
    finally:
        async_var.reset(async_token)
        sync_var.reset(sync_token)


@functools.cache
def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, mounts, nft)"
    for tool in ("ip", "nft", "nsenter", "unshare", "ssh", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"lab tests need `{tool}`"
    return None


@pytest.fixture(scope="package")
def platform_lab() -> Iterator[Any]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from capstan.lab import Lab

    lab = Lab.up(Lab.free_name(f"p{os.getpid()}"), [("cp1", ["control-plane", "etcd"]), ("w1", ["worker"])])
    try:
        yield lab
    finally:
        lab.down()
