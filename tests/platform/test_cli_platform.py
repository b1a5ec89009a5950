"""``capstan server`` and ``capstan deploy`` as commands: what they refuse, and a real server start."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from capstan.cli_platform import app
from capstan.platform.deploy import apply_overrides, load_config, parse_overrides
from capstan.platform.server import PlatformError, process_env

REPO = Path(__file__).resolve().parents[2]


def test_server_refuses_to_listen_beyond_loopback_without_authentication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    result = CliRunner().invoke(app, ["server", "--host", "0.0.0.0", "--port", "1"])
    assert isinstance(result.exception, PlatformError)
    assert "PREFECT_SERVER_API_AUTH_STRING" in str(result.exception)
    assert "\n" not in str(result.exception)


def test_deploy_overrides_are_checked_before_anything_is_registered() -> None:
    config = load_config(REPO / "prefect.yaml")
    names = {d["entrypoint"]: "create-cluster" for d in config["deployments"]}
    with pytest.raises(PlatformError, match="--timezone 'Mars/Olympus': not a known IANA timezone"):
        apply_overrides(config, flow_names=names, timezone="Mars/Olympus")
    with pytest.raises(PlatformError, match="expected DEPLOYMENT:KEY=VALUE"):
        parse_overrides(["until=facts"])
    with pytest.raises(PlatformError, match="no deployment named nope"):
        apply_overrides(config, flow_names=names, params=parse_overrides(["nope:until=facts"]))
    out = apply_overrides(
        config,
        flow_names=names,
        timezone="Europe/Berlin",
        params=parse_overrides(["create-cluster/default:until=facts", "default:dry_run=true"]),
    )
    create = next(d for d in out["deployments"] if d["name"] == "default")
    assert create["parameters"] == {"until": "facts", "dry_run": True}
    assert config["deployments"][0].get("parameters") is None  # the loaded file is left alone
    yaml.safe_dump(out)  # what `prefect deploy` reads back


def test_deploy_without_a_server_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        result = CliRunner().invoke(app, ["deploy", "--prefect-file", str(REPO / "prefect.yaml")])
    assert isinstance(result.exception, PlatformError)
    assert "set PREFECT_API_URL" in str(result.exception)


def test_process_env_is_offline_and_logs_flows_at_info() -> None:
    env = process_env(base={"PREFECT_LOGGING_LEVEL": "WARNING"})
    assert env["DO_NOT_TRACK"] == "1"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["PREFECT_LOGGING_LEVEL"] == "INFO"
    assert process_env(base={"PREFECT_LOGGING_LEVEL": "DEBUG"})["PREFECT_LOGGING_LEVEL"] == "DEBUG"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _get(url: str, auth: str | None = None) -> object:
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    # A long timeout: on a loaded machine (CI, three lab tests beside this one) the first requests
    # to a just-started server have taken more than 5 s.
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:
        return json.loads(resp.read())


def test_capstan_server_serves_on_loopback_with_auth_and_analytics_off_and_stops_on_sigint(
    platform: Any, tmp_path: Path
) -> None:
    # Start from a consistent copy of the platform server's database: same schema, no migrations to wait for.
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(platform.home / "prefect.db") as src, sqlite3.connect(home / "prefect.db") as dst:
        src.backup(dst)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)  # the command itself must switch analytics off
    env["PREFECT_SERVER_API_AUTH_STRING"] = "capstan:not-a-real-password"  # what the README tells people
    # Ctrl-C as on a terminal: a process inherits an ignored SIGINT from its parent (a background
    # shell, a test runner's worker), and Python then never raises KeyboardInterrupt.
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from capstan.cli_platform import app; app()"
    )
    argv = [sys.executable, "-c", code, "server"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout or []], daemon=True).start()
    started: list[int] = []
    try:
        deadline = time.monotonic() + 240
        seen: list[str] = []
        while not any(ln.startswith("export PREFECT_API_URL=") for ln in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        started = _children(proc.pid)
        assert f"Prefect UI: http://127.0.0.1:{port}\n" in seen
        assert f"export PREFECT_API_URL=http://127.0.0.1:{port}/api" in "".join(seen)
        assert _get(f"http://127.0.0.1:{port}/api/health") is True
        with pytest.raises(urllib.error.HTTPError, match="401"):  # no credentials: nothing but health
            _get(f"http://127.0.0.1:{port}/api/admin/settings")
        settings = _get(f"http://127.0.0.1:{port}/api/admin/settings", auth="capstan:not-a-real-password")
        assert isinstance(settings, dict) and settings["server"]["analytics_enabled"] is False

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=180) == 0  # a loaded machine: the server finishes its requests first
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in started:  # the prefect server it started, if the command failed to stop it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
