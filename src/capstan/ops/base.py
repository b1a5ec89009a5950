"""The vocabulary of host operations: steps, planned operations and their results.

pyinfra's model: an operation reads facts, compares them with the desired state and yields only
the steps still needed to close the gap. Here an operation is a plain pure function
``(facts, desired...) -> Op``; an ``Op`` with no steps is converged (its ``note`` may say why, e.g.
"already set" or "skipped: no modprobe"). Nothing in this module talks to a host: planning is pure,
so tests assert on steps and ``--dry-run`` is simply "print the steps".

Steps carry no secrets in anything that is printed: ``PutFile`` shows path, size and mode, never
content; ``Command`` words are shown, so secrets must travel in ``stdin`` or a put file instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Command", "Op", "OpResult", "PutFile", "Step", "any_changed", "script"]


@dataclass(frozen=True)
class Command:
    """Run ``argv`` (words, quoted for the shell) or a trusted sh script (``str``) on the host.

    Privileged by default (``sudo=True``; transports skip sudo when already root). ``env`` is for
    non-secret settings such as ``DEBIAN_FRONTEND``.
    """

    argv: tuple[str, ...] | str
    sudo: bool = True
    env: tuple[tuple[str, str], ...] = ()
    stdin: bytes | None = field(default=None, repr=False)
    timeout: float | None = None

    def __str__(self) -> str:
        text = self.argv if isinstance(self.argv, str) else shlex.join(self.argv)
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return f"{prefix} {text}" if prefix else text


@dataclass(frozen=True)
class PutFile:
    """Replace ``path`` atomically with ``content`` (the transport writes a temp file and renames)."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str | None = "root"
    group: str | None = "root"

    def __str__(self) -> str:
        who = f" {self.owner or ''}:{self.group or ''}" if self.owner or self.group else ""
        return f"put {self.path} ({len(self.content)} bytes, mode {self.mode:04o}{who})"


Step = Command | PutFile


@dataclass(frozen=True)
class Op:
    """One planned operation: a human description and the steps still needed (empty = converged)."""

    description: str
    steps: tuple[Step, ...] = ()
    note: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def __str__(self) -> str:
        state = "changed" if self.changed else "ok"
        return f"{self.description}: {state}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class OpResult:
    """What ``apply`` did (or, on a dry run, would do) on one host."""

    changed: bool
    steps: tuple[Step, ...]
    description: str
    dry_run: bool = False
    ops: tuple[Op, ...] = ()

    @property
    def changed_count(self) -> int:
        return sum(1 for op in self.ops if op.changed)

    @property
    def unchanged_count(self) -> int:
        return sum(1 for op in self.ops if not op.changed)


def any_changed(ops: Iterable[Op]) -> bool:
    """True if any of ``ops`` will change something (e.g. to decide on a service restart)."""
    return any(op.changed for op in ops)


def script(
    body: str, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> Command:
    """A ``Command`` running a fixed sh script with its variable parts passed as ``$1``, ``$2``...

    Keeping data out of the script text means a URL or path can never change what the script does.
    """
    return Command(
        ("sh", "-c", body, "capstan", *args),
        env=tuple(sorted((env or {}).items())),
        timeout=timeout,
    )
