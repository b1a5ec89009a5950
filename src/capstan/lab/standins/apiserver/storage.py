"""The storage interface of the API stand-in, and an in-memory implementation for unit tests.

Why an interface: the real apiserver's storage is etcd and so is the stand-in's (``etcd.py``); the
semantics that matter to clients (a revision per write, compare-and-swap on the revision, a range
read of a key prefix) are the same in a dict guarded by a lock, which lets the HTTP and verb layers
be tested without starting etcd. Production never uses ``MemoryStorage``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KV:
    """One stored key: its bytes and etcd's revisions (mod_revision becomes resourceVersion)."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int


class StorageError(Exception):
    """Base of storage failures."""


class KeyExists(StorageError):
    """A create found the key already present."""


class RevisionMismatch(StorageError):
    """A compare-and-swap found another mod_revision (or no key at all)."""


class Unavailable(StorageError):
    """No storage endpoint answered."""


class Storage(Protocol):
    """What the verb layer needs from etcd."""

    def get(self, key: str) -> KV | None:
        """The key's current value, or None."""
        ...

    def list(self, prefix: str) -> tuple[list[KV], int]:
        """Every key under ``prefix`` (sorted) and the store revision of the read."""
        ...

    def stamp(self, prefix: str) -> tuple[int, int, int]:
        """(keys under ``prefix``, their highest mod_revision, the store revision of the read).

        The first two change whenever anything under ``prefix`` does (a create or update raises the
        highest mod_revision, a delete lowers the count), so a list can be served again from memory.
        """
        ...

    def create(self, key: str, value: bytes) -> int:
        """Write a new key; KeyExists if present. Returns the new mod_revision."""
        ...

    def update(self, key: str, value: bytes, mod_revision: int) -> int:
        """Replace the key only if its mod_revision is still ``mod_revision``; RevisionMismatch if not."""
        ...

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        """Delete the key (only at ``mod_revision`` when given); False if it was not there."""
        ...

    def healthy(self) -> bool:
        """True when the store answers."""
        ...


class MemoryStorage:
    """A dict with etcd's revision semantics; for unit tests of the layers above storage."""

    def __init__(self) -> None:
        self._data: dict[str, KV] = {}
        self._rev = 1
        self._lock = threading.Lock()
        self.up = True

    def _check(self) -> None:
        if not self.up:
            raise Unavailable("memory storage switched off")

    def get(self, key: str) -> KV | None:
        with self._lock:
            self._check()
            return self._data.get(key)

    def list(self, prefix: str) -> tuple[list[KV], int]:
        with self._lock:
            self._check()
            items = [kv for k, kv in sorted(self._data.items()) if k.startswith(prefix)]
            return items, self._rev

    def stamp(self, prefix: str) -> tuple[int, int, int]:
        with self._lock:
            self._check()
            mine = [kv.mod_revision for k, kv in self._data.items() if k.startswith(prefix)]
            return len(mine), max(mine, default=0), self._rev

    def create(self, key: str, value: bytes) -> int:
        with self._lock:
            self._check()
            if key in self._data:
                raise KeyExists(key)
            self._rev += 1
            self._data[key] = KV(key, value, self._rev, self._rev)
            return self._rev

    def update(self, key: str, value: bytes, mod_revision: int) -> int:
        with self._lock:
            self._check()
            old = self._data.get(key)
            if old is None or old.mod_revision != mod_revision:
                raise RevisionMismatch(key)
            self._rev += 1
            self._data[key] = KV(key, value, self._rev, old.create_revision)
            return self._rev

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        with self._lock:
            self._check()
            old = self._data.get(key)
            if old is None:
                return False
            if mod_revision is not None and old.mod_revision != mod_revision:
                raise RevisionMismatch(key)
            self._rev += 1
            del self._data[key]
            return True

    def healthy(self) -> bool:
        return self.up
