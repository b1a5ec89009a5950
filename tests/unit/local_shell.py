"""``LocalShell``: a Transport that runs commands on this machine with ``sh``, for host-side scripts
that tests run for real (snapshot transfer, fact gathers). ``sudo`` is ignored: tests run as the
user they run as."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from capstan.errors import CommandFailed
from capstan.remote.base import Argv, Result, render_command


class LocalShell:
    """Counts its runs; ``before_run`` (if given) is called with the command text before each one."""

    def __init__(self, host: str = "local", before_run: Callable[[str], None] | None = None) -> None:
        self.host = host
        self.runs = 0
        self.commands: list[str] = []
        self.before_run = before_run

    def run(
        self,
        argv: Argv,
        *,
        sudo: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> Result:
        self.runs += 1
        command = render_command(argv, env=env)
        self.commands.append(command)
        if self.before_run is not None:
            self.before_run(command)
        proc = subprocess.run(["sh", "-c", command], input=stdin or b"", capture_output=True, timeout=60)
        res = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if check and not res.ok:
            raise CommandFailed(self.host, str(argv), res.exit_code, res.stderr)
        return res

    def put(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
        sudo: bool = False,
    ) -> None:
        Path(path).write_bytes(data)
        os.chmod(path, mode)

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        return Path(path).read_bytes()

    def close(self) -> None:
        pass
