"""File-system operations: whole files, directories, and single lines in files.

A file is uploaded only when its sha256 differs from the one in the facts (content is never
fetched back); mode and owner are fixed with ``chmod``/``chown`` without re-uploading. Something
that is in the way (a directory where a file should be) is a ``PlanError``: capstan will not
delete it on its own.
"""

from __future__ import annotations

import hashlib
import re

from capstan.errors import PlanError
from capstan.facts.model import FileInfo, HostFacts
from capstan.ops.base import Command, Op, PutFile, Step

__all__ = ["directory", "file", "fix_attributes", "line", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fix_attributes(
    path: str, info: FileInfo, *, mode: int | None, owner: str | None, group: str | None
) -> list[Step]:
    """``chmod``/``chown`` steps for an existing path whose mode or owner differ (None = don't care)."""
    steps: list[Step] = []
    if mode is not None and info.mode != mode:
        steps.append(Command(("chmod", f"{mode:04o}", path)))
    want_owner = owner is not None and info.owner != owner
    want_group = group is not None and info.group != group
    if want_owner or want_group:
        spec = f"{owner}:{group}" if owner and group else (owner or f":{group}")
        steps.append(Command(("chown", spec, path)))
    return steps


def file(
    facts: HostFacts,
    path: str,
    content: bytes | str,
    *,
    mode: int = 0o644,
    owner: str | None = "root",
    group: str | None = "root",
    description: str | None = None,
) -> Op:
    """Ensure ``path`` is a regular file with exactly ``content``, ``mode`` and owner.

    Needs ``path`` in the facts query's ``files``.
    """
    data = content.encode() if isinstance(content, str) else content
    desc = description or f"file {path}"
    info = facts.file(path)
    if info is not None and not info.is_file:
        raise PlanError(f"{facts.host}: {path} should be a file but is a {info.kind}")
    if info is None or info.sha256 != sha256_hex(data):
        return Op(desc, (PutFile(path, data, mode, owner, group),))
    steps = fix_attributes(path, info, mode=mode, owner=owner, group=group)
    return Op(desc, tuple(steps), "" if steps else "content, mode and owner match")


def directory(
    facts: HostFacts,
    path: str,
    *,
    mode: int = 0o755,
    owner: str | None = "root",
    group: str | None = "root",
) -> Op:
    """Ensure ``path`` is a directory (parents created as needed) with ``mode`` and owner.

    Needs ``path`` in the facts query's ``files``.
    """
    desc = f"directory {path}"
    info = facts.file(path)
    if info is None:
        argv = ["install", "-d", "-m", f"{mode:04o}"]
        if owner:
            argv += ["-o", owner]
        if group:
            argv += ["-g", group]
        return Op(desc, (Command((*argv, path)),))
    if not info.is_dir:
        raise PlanError(f"{facts.host}: {path} should be a directory but is a {info.kind}")
    steps = fix_attributes(path, info, mode=mode, owner=owner, group=group)
    return Op(desc, tuple(steps), "" if steps else "exists with mode and owner")


def line(
    facts: HostFacts,
    path: str,
    text: str,
    *,
    present: bool = True,
    match: str | None = None,
    mode: int = 0o644,
    owner: str | None = "root",
    group: str | None = "root",
) -> Op:
    """Ensure the line ``text`` is in ``path`` (or, with ``present=False``, that it is not).

    ``match`` is a regex: with ``present``, every line it matches is replaced by ``text`` (so
    ``key = old`` becomes ``key = new``) and ``text`` is appended when nothing matches; without,
    every matching line is removed. Without ``match`` only the exact line counts. An existing
    file keeps its mode and owner. Needs ``path`` in the facts query's ``contents``.
    """
    if "\n" in text:
        raise PlanError(f"{facts.host}: line for {path} must be a single line")
    desc = f"line in {path}: {text}" if present else f"no line in {path} matching {match or text}"
    info = facts.file(path)
    if info is not None and not info.is_file:
        raise PlanError(f"{facts.host}: {path} should be a file but is a {info.kind}")
    old = facts.content(path) or b""
    lines = old.decode("utf-8", "surrogateescape").splitlines()
    rx = re.compile(match) if match else None

    def hit(candidate: str) -> bool:
        return bool(rx.search(candidate)) if rx else candidate == text

    if present:
        new = [text if hit(x) else x for x in lines]
        if not any(hit(x) for x in lines):
            new.append(text)
    else:
        new = [x for x in lines if not hit(x)]
    data = ("\n".join(new) + "\n").encode("utf-8", "surrogateescape") if new else b""
    if data == old or (info is None and not new):
        return Op(desc, (), "already as wanted")
    if info is not None:
        mode = info.mode if info.mode is not None else mode
        owner, group = info.owner or owner, info.group or group
    return Op(desc, (PutFile(path, data, mode, owner, group),))
