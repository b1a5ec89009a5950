"""Lists of stored objects, served again from memory while nothing under their prefix changed.

Why: the controller-manager and scheduler stand-ins poll (they do not watch) and list every pod and
node each second or two; on a 30-node lab that was ~1 MB of JSON from etcd, decoded, per list, and
the lab's busiest process at idle. A keys-only read (``Storage.stamp``: the count and the newest
mod_revision, which any create, update or delete changes) says whether the last list still holds.
The decoded objects are shared between callers: they must be read, never modified.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .storage import KV, Storage

Obj = dict[str, Any]
Key = tuple[str, str, str]


class ListCache:
    """Per (prefix, apiVersion, kind): the last list's (count, newest mod_revision) and objects."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lists: dict[Key, tuple[tuple[int, int], list[Obj]]] = {}
        self._lock = threading.Lock()

    def listed(self, key: Key, decode: Callable[[KV], Obj]) -> tuple[list[Obj], int]:
        """Every object under ``key[0]`` (decoded by ``decode``) and the store revision of the read."""
        prefix = key[0]
        count, newest, rev = self.storage.stamp(prefix)
        with self._lock:
            hit = self._lists.get(key)
        if hit is not None and hit[0] == (count, newest):
            return hit[1], rev
        kvs, rev = self.storage.list(prefix)
        objs = [decode(kv) for kv in kvs]
        seen = (len(kvs), max((kv.mod_revision for kv in kvs), default=0))
        with self._lock:
            self._lists[key] = (seen, objs)
        return objs, rev
