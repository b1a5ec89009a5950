"""capstan's own known_hosts file: trust on first use, refuse any change afterwards.

Each cluster keeps its own file (never ``~/.ssh/known_hosts``) so a second Prefect worker with the
same state verifies hosts the same way, and so clusters cannot vouch for each other's hosts. The
format is OpenSSH's, so ``ssh -o UserKnownHostsFile=...`` can share it.

Many hosts connect in parallel and may record their keys at the same moment, so recording takes
a per-file thread lock plus an ``flock`` (other processes), re-reads the file under the lock and
rewrites it atomically (temp file + rename). This module is pure Python: it deals in key type and
base64 blob strings, and ``fabric.py`` adapts paramiko keys to it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from capstan.errors import HostKeyError

__all__ = ["HostKey", "KnownHosts", "fingerprint", "known_hosts_name"]

log = logging.getLogger("capstan.remote")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH (and paramiko) file a host under: ``addr`` on port 22, else ``[addr]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(blob_b64: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a base64 public key blob."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class HostKey:
    """One public host key: its type (``ssh-ed25519``) and base64 blob."""

    keytype: str
    blob: str

    def __str__(self) -> str:
        return f"{self.keytype} {fingerprint(self.blob)}"


def _matches(pattern_field: str, name: str) -> bool:
    if pattern_field.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = pattern_field.split("|", 3)
            mac = hmac.new(base64.b64decode(salt_b64), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(hash_b64))
        except ValueError:
            return False
    return name in pattern_field.split(",")


class KnownHosts:
    """A known_hosts file capstan reads and appends to; a missing file is an empty one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def lookup(self, name: str) -> list[HostKey]:
        """Keys recorded for ``name`` (exact names and hashed entries; markers are skipped)."""
        return self._parse(self._read(), name)

    def verify_or_record(self, name: str, key: HostKey, *, label: str | None = None) -> bool:
        """Accept ``key`` for ``name``: True if it was recorded now, False if already known.

        Raises ``HostKeyError`` (naming ``label`` or ``name``) when the file holds any other key
        for this name: a host is never given a second key automatically.
        """
        who = label or name
        with _lock_for(self.path), self._flock():
            known = self._parse(self._read(), name)
            if key in known:
                return False
            if known:
                raise HostKeyError(who, self.mismatch_message(name, key, known))
            self._append(f"{name} {key.keytype} {key.blob}\n")
        log.info("recorded host key for %s (%s)", who, key)
        return True

    def mismatch_message(self, name: str, offered: HostKey, known: list[HostKey]) -> str:
        old = ", ".join(str(k) for k in known)
        return (
            f"host key changed: {name} offered {offered} but {self.path} has {old}; refusing to "
            f"connect (if the host was really reinstalled, delete its line from {self.path})"
        )

    def _read(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""

    @staticmethod
    def _parse(text: str, name: str) -> list[HostKey]:
        keys: list[HostKey] = []
        for raw in text.splitlines():
            fields = raw.split()
            if len(fields) < 3 or fields[0].startswith("#") or fields[0].startswith("@"):
                continue
            if _matches(fields[0], name):
                keys.append(HostKey(fields[1], fields[2]))
        return keys

    def _flock(self) -> _FileLock:
        return _FileLock(self.path.with_name(self.path.name + ".lock"))

    def _append(self, line: str) -> None:
        text = self._read()
        if text and not text.endswith("\n"):
            text += "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text + line)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _FileLock:
    """An exclusive ``flock`` on a side file, so other processes sharing the state wait their turn."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
