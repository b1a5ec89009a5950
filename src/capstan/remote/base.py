"""The one seam between capstan and a host: the ``Transport`` protocol and its ``Result``.

Everything above this layer (facts, ops, tasks) talks to hosts only through ``Transport``, so unit
tests swap in ``FakeTransport`` and nothing but ``remote/fabric.py`` knows that SSH exists.

Commands come in two shapes on purpose: a sequence of words is *data* and is quoted with
``shlex.join`` (a file name with a space or a ``;`` cannot turn into a second command), while a
``str`` is a *trusted* POSIX sh script written by capstan itself and run with ``sh -c``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Argv", "Result", "Transport", "describe_command", "failed_argv", "put_argv", "render_command"]

Argv = Sequence[str] | str
"""A command: words to quote (``["systemctl", "restart", "kubelet"]``) or a trusted sh script."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Atomic replace for transports that move file content over stdin: a temp file next to the target
# (same filesystem, so the final rename is atomic), mode and owner set before it becomes visible.
_PUT_SCRIPT = r"""set -e
p=$1
tmp=$(mktemp "$p.capstan-XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
chmod "$2" "$tmp"
if [ -n "$3" ] && [ -n "$4" ]; then chown "$3:$4" "$tmp"
elif [ -n "$3" ]; then chown "$3" "$tmp"
elif [ -n "$4" ]; then chgrp "$4" "$tmp"; fi
mv -f "$tmp" "$p"
trap - EXIT
"""


@dataclass(frozen=True)
class Result:
    """What a finished command returned. Output is text (UTF-8, undecodable bytes replaced)."""

    exit_code: int
    stdout: str = ""
    stderr: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@runtime_checkable
class Transport(Protocol):
    """A connection to one host that can run commands and move whole files.

    Implementations raise ``ConnectError``/``TransportTimeout`` (retryable) when the host cannot be
    talked to, ``HostKeyError`` when it is not who it claims to be, and ``CommandFailed`` when a
    command ran and exited non-zero while ``check`` is true.
    """

    @property
    def host(self) -> str:
        """The name used in errors and logs (the inventory name, not necessarily the address)."""
        ...

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
        """Run a command; ``timeout=None`` means the transport's default command timeout."""
        ...

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
        """Replace ``path`` atomically: temp file in the same directory, chmod/chown, rename."""
        ...

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        """Read a whole remote file (``CommandFailed`` when it cannot be read)."""
        ...

    def close(self) -> None:
        """Drop the connection; a later call may open a new one."""
        ...


def render_command(argv: Argv, *, sudo: bool = False, env: Mapping[str, str] | None = None) -> str:
    """Turn a command into the one line a remote shell will parse.

    ``env`` goes through ``env NAME=value`` *after* sudo so sudo's environment scrubbing cannot
    drop it; a script runs under ``sh -c`` so it means the same whatever the login shell is.
    """
    words: list[str] = []
    if sudo:
        words += ["sudo", "-n", "--"]
    if env:
        for name in env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        words += ["env", *(f"{k}={v}" for k, v in sorted(env.items()))]
    if isinstance(argv, str):
        words += ["sh", "-c", argv]
    else:
        if not argv:
            raise ValueError("empty argv")
        words += list(argv)
    return shlex.join(words)


def describe_command(argv: Argv, limit: int = 120) -> str:
    """A short one-line form of a command for error messages and logs (scripts are shortened)."""
    text = argv if isinstance(argv, str) else shlex.join(argv)
    first = " ".join(text.strip().split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


def put_argv(path: str, *, mode: int, owner: str | None, group: str | None) -> list[str]:
    """The command that atomically replaces ``path`` with whatever arrives on stdin."""
    return ["sh", "-c", _PUT_SCRIPT, "capstan-put", path, f"{mode:04o}", owner or "", group or ""]


def failed_argv(argv: Argv) -> list[str] | str:
    """What ``CommandFailed`` should name: the words, or a one-line summary of a script.

    Error messages stay on one line, so multi-line scripts are collapsed and shortened.
    """
    if isinstance(argv, str) or any("\n" in word for word in argv):
        return describe_command(argv, 160)
    return list(argv)
