"""The API stand-in serves a list again from memory only while nothing under its prefix changed.

``Registry`` on ``MemoryStorage`` (whose ``stamp`` has the same contract as etcd's, which
``test_standin_apiserver_etcd.py`` checks on a real etcd): every kind of change is seen by the next
list, and an unchanged collection is not read from storage again.
"""

from __future__ import annotations

from capstan.lab.standins.apiserver.registry import Registry
from capstan.lab.standins.apiserver.resources import core
from capstan.lab.standins.apiserver.storage import KV, MemoryStorage

CM = core("configmaps")


class CountingStorage(MemoryStorage):
    """MemoryStorage that counts full list reads."""

    def __init__(self) -> None:
        super().__init__()
        self.lists = 0

    def list(self, prefix: str) -> tuple[list[KV], int]:
        self.lists += 1
        return super().list(prefix)


def _cm(name: str, value: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": {"v": value}}


def _registry(storage: MemoryStorage) -> Registry:
    reg = Registry(storage)
    for ns in ("a", "b"):
        reg.create(core("namespaces"), "", {"metadata": {"name": ns}})
    return reg


def _names(reg: Registry, namespace: str = "") -> dict[str, str]:
    objs, _ = reg.items(CM, namespace)
    return {o["metadata"]["name"]: o["data"]["v"] for o in objs}


def test_an_unchanged_list_is_not_read_again_and_every_change_is_seen() -> None:
    storage = CountingStorage()
    reg = _registry(storage)
    reg.create(CM, "a", _cm("one", "1"))
    reg.create(CM, "a", _cm("two", "2"))
    assert _names(reg) == {"one": "1", "two": "2"}
    reads = storage.lists
    assert _names(reg) == {"one": "1", "two": "2"}
    assert storage.lists == reads  # served from memory

    reg.update(CM, "a", "one", _cm("one", "1b"))  # an update
    assert _names(reg) == {"one": "1b", "two": "2"}
    reg.delete(CM, "a", "two")  # a delete alone: the newest mod_revision may stay, the count drops
    assert _names(reg) == {"one": "1b"}
    reg.delete(CM, "a", "one")  # a delete and a create between two lists: same count, newer revision
    reg.create(CM, "a", _cm("three", "3"))
    assert _names(reg) == {"three": "3"}
    reg.delete(CM, "a", "three")
    assert _names(reg) == {}


def test_namespaces_and_the_whole_collection_are_kept_apart() -> None:
    reg = _registry(MemoryStorage())
    reg.create(CM, "a", _cm("one", "1"))
    reg.create(CM, "b", _cm("two", "2"))
    assert _names(reg, "a") == {"one": "1"}
    assert _names(reg, "b") == {"two": "2"}
    assert _names(reg) == {"one": "1", "two": "2"}
    reg.create(CM, "b", _cm("three", "3"))
    assert _names(reg, "a") == {"one": "1"}
    assert _names(reg) == {"one": "1", "two": "2", "three": "3"}


def test_the_list_revision_is_the_store_revision_of_each_read() -> None:
    storage = MemoryStorage()
    reg = _registry(storage)
    reg.create(CM, "a", _cm("one", "1"))
    _, first = reg.items(CM)
    reg.create(core("secrets"), "a", {"metadata": {"name": "s"}, "data": {}})  # elsewhere in the store
    _, second = reg.items(CM)
    assert second > first
    assert reg.list(CM)["metadata"]["resourceVersion"] == str(second)


def test_stamp_counts_keys_and_finds_the_newest_revision() -> None:
    storage = MemoryStorage()
    assert storage.stamp("/x/") == (0, 0, 1)
    r1 = storage.create("/x/a", b"1")
    r2 = storage.create("/x/b", b"2")
    storage.create("/y/c", b"3")
    count, newest, rev = storage.stamp("/x/")
    assert (count, newest) == (2, r2) and rev > r2
    r3 = storage.update("/x/a", b"1b", r1)
    assert storage.stamp("/x/")[:2] == (2, r3)
    storage.delete("/x/a")
    assert storage.stamp("/x/")[:2] == (1, r2)
