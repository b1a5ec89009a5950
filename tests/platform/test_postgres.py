"""Prefect on PostgreSQL: the server capstan starts, with its database in Postgres instead of SQLite.

Why: on a busy machine SQLite serialises every write of the Prefect server, and the notes in
../shared/reference/prefect-notes.md measured it recording about 50 task runs a second. Postgres is the
documented way out. This test makes sure nothing in capstan's way of starting the server and deploying
ties it to SQLite.

A throwaway PostgreSQL 15 from Debian's binaries is used: initdb and pg_ctl run as the ``postgres``
user, the data directory is temporary, the server listens on 127.0.0.1 and a free port with password
authentication, and pg_ctl stops it at the end. Prefect connects with
``PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://...`` (asyncpg comes with Prefect).
capstan's deployments are registered against it, and one flow runs with a task per host and an
artifact. The run is then read back through the API and straight from Postgres.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from capstan.platform import server as srv

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_unavailable() -> str | None:
    for tool in ("initdb", "pg_ctl", "createdb", "psql"):
        if not (PG_BIN / tool).exists() and not (tool == "psql" and shutil.which("psql")):
            return f"needs PostgreSQL 15 ({PG_BIN / tool}; Debian: apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "needs the postgres user (Debian's postgresql package creates it)"
    if os.geteuid() != 0:
        return "needs root to run initdb and pg_ctl as the postgres user"
    return None


@dataclass
class Postgres:
    port: int
    user: str
    password: str
    database: str
    data: Path

    @property
    def url(self) -> str:
        """The SQLAlchemy URL Prefect's server takes (a secret: never logged by this test)."""
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def psql(self, sql: str) -> str:
        psql = shutil.which("psql") or str(PG_BIN / "psql")
        res = subprocess.run(
            [
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                self.database,
                "-tAc",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()


def as_postgres(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="capstan-pg-"))  # not under pytest's 0700 root: postgres must enter
    pg = Postgres(free_port(), "prefect", secrets.token_urlsafe(18), "prefect", root / "data")
    started = False
    try:
        ids = pwd.getpwnam("postgres")
        os.chown(root, ids.pw_uid, ids.pw_gid)
        pwfile = root / "pw"
        pwfile.write_text(pg.password + "\n")
        os.chown(pwfile, ids.pw_uid, ids.pw_gid)
        pwfile.chmod(0o600)
        res = as_postgres(
            PG_BIN / "initdb", "-D", pg.data, "-U", pg.user, f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        assert res.returncode == 0, res.stdout + res.stderr
        options = f"-c listen_addresses=127.0.0.1 -p {pg.port} -k {root} -c fsync=off"
        res = as_postgres(
            PG_BIN / "pg_ctl", "-D", pg.data, "-o", options, "-l", root / "postgres.log", "-w", "-t", "120",
            "start",
        )  # fmt: skip
        started = res.returncode == 0
        assert started, res.stdout + res.stderr + (root / "postgres.log").read_text()
        created = subprocess.run(
            [PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, pg.database],
            env={**os.environ, "PGPASSWORD": pg.password},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        yield pg
    finally:
        if started:
            res = as_postgres(PG_BIN / "pg_ctl", "-D", pg.data, "-m", "fast", "-w", "-t", "60", "stop")
            assert res.returncode == 0, res.stdout + res.stderr
        shutil.rmtree(root, ignore_errors=True)


CHECK_FLOW = """
import sys

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact


@task(task_run_name="{phase}[{host}]")
def phase_on(phase: str, host: str) -> str:
    return f"{phase} on {host}"


@flow(name="postgres-check")
def check(hosts: list[str]) -> list[str]:
    done = [phase_on(p, h) for p in ("facts", "etcd") for h in hosts]
    create_markdown_artifact(key="postgres-check", markdown=f"{len(done)} tasks")
    return done


state = check(["cp1", "w1"], return_state=True)
print(state.state_details.flow_run_id)
sys.exit(0 if state.is_completed() else 1)
"""


def test_prefect_server_on_postgres_records_deployments_and_runs(postgres: Postgres, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from capstan.platform.deploy import deploy

    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = srv.process_env(
        api_url=api_url, home=home, extra={"PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url}
    )
    server = srv.start_server("127.0.0.1", port, env, log=tmp_path / "server.log")
    try:
        srv.wait_healthy(api_url, server, timeout=300)  # a new database: every migration runs first

        # The flow runs in its own process: a run's task runs reach the server only as events, and
        # this test process may already hold Prefect's events client for another test's server.
        script = tmp_path / "check_flow.py"
        script.write_text(CHECK_FLOW)
        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            deployed = {d.full_name for d in deploy(REPO / "prefect.yaml", timezone="UTC", env=env)}
        ran = subprocess.run(
            [sys.executable, str(script)],
            env={**env, "PREFECT_API_URL": api_url},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        run_id = ran.stdout.strip().splitlines()[-1]
        assert "create-cluster/default" in deployed

        # Straight from Postgres: the server wrote there, not to a SQLite file in PREFECT_HOME.
        assert postgres.psql(f"select state_type from flow_run where id = '{run_id}'") == "COMPLETED"
        names = set(postgres.psql("select name from deployment").split("\n"))
        assert {d.partition("/")[2] for d in deployed} <= names
        assert not list(home.rglob("prefect.db*"))
        deadline = time.monotonic() + 120  # task runs are recorded from events, asynchronously
        tasks: set[str] = set()
        while time.monotonic() < deadline:
            tasks = set(
                postgres.psql(f"select name from task_run where flow_run_id = '{run_id}'").split("\n")
            )
            if {"facts[cp1]", "facts[w1]", "etcd[cp1]", "etcd[w1]"} <= tasks:
                break
            time.sleep(0.5)
        assert {"facts[cp1]", "facts[w1]", "etcd[cp1]", "etcd[w1]"} <= tasks
        assert postgres.psql(f"select key from artifact where flow_run_id = '{run_id}'") == "postgres-check"
        assert postgres.password not in (tmp_path / "server.log").read_text()
    finally:
        srv.stop(server)
