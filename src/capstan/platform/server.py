"""A local Prefect server (and worker) started the way capstan wants them: loopback, offline, quiet.

Processes are started in their own session so stopping one stops what it spawned, and are stopped by
their PID (SIGINT, then SIGTERM, then SIGKILL, each with a deadline): a Prefect worker ignores SIGTERM
for a while, and nothing else on the machine is touched.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from capstan.errors import CapstanError
from capstan.prefect_env import DEFAULTS

DEFAULT_PORT = 4200
AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"


class PlatformError(CapstanError):
    """The Prefect server, worker or deployment step failed; the message says which and why."""


def prefect_argv(*args: str) -> list[str]:
    """``prefect ...`` with this interpreter's Prefect (the one capstan is installed with)."""
    return [sys.executable, "-m", "prefect", *args]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def process_env(
    *,
    api_url: str | None = None,
    home: Path | None = None,
    base: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a Prefect process capstan starts: the user's, plus capstan's safe defaults.

    Logs are kept at INFO (capstan's CLI default is WARNING, which would ship no flow logs to the UI).
    """
    env = dict(os.environ if base is None else base)
    for key, value in DEFAULTS.items():
        env.setdefault(key, value)
    if env.get("PREFECT_LOGGING_LEVEL") == DEFAULTS["PREFECT_LOGGING_LEVEL"]:
        env["PREFECT_LOGGING_LEVEL"] = "INFO"
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    env.update(extra or {})
    return env


def server_argv(host: str, port: int) -> list[str]:
    return prefect_argv("server", "start", "--host", host, "--port", str(port), "--analytics-off")


def check_exposure(host: str, env: Mapping[str, str]) -> None:
    """Refuse to serve beyond loopback without authentication: blocks hold SSH keys."""
    if not is_loopback(host) and not env.get(AUTH_ENV):
        raise PlatformError(
            f"--host {host}: the Prefect API has no authentication and returns block secrets (SSH keys); "
            f"set {AUTH_ENV} (or put an authenticating proxy in front and bind 127.0.0.1)"
        )


def start_server(
    host: str,
    port: int,
    env: Mapping[str, str],
    *,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    check_exposure(host, env)
    out = log.open("ab") if log is not None else None  # None: this terminal
    try:
        return subprocess.Popen(
            server_argv(host, port),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()


def start_worker(
    pool: str,
    env: Mapping[str, str],
    *,
    log: Path | None = None,
    limit: int | None = None,
) -> subprocess.Popen[bytes]:
    args = ["worker", "start", "--pool", pool, "--type", "process"]
    if limit is not None:
        args += ["--limit", str(limit)]
    out = log.open("ab") if log is not None else None  # None: this terminal
    try:
        return subprocess.Popen(
            prefect_argv(*args),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return bool(resp.status == 200 and resp.read().strip() == b"true")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 90.0) -> None:
    """Poll ``/api/health`` until it answers (a brand-new database takes ~10 s to migrate)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PlatformError(f"the Prefect server exited with code {proc.returncode} before answering")
        if api_healthy(api_url):
            return
        time.sleep(0.25)
    raise PlatformError(f"the Prefect server at {api_url} did not answer within {timeout:g} s")


def stop(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> int:
    """Stop a process this module started (and its session), escalating SIGINT, SIGTERM, SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)  # its own session/group: started with start_new_session=True
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    rc = proc.wait()
    return rc
