"""Which snapshot a restore takes, against scripted members and a real off-host directory."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from capstan.errors import ConnectError
from capstan.remote.fake import FakeTransport
from capstan.spec import load_spec
from capstan.spec.models import Cluster, Host
from capstan.tasks.etcd.model import SnapshotError, sha256_line
from capstan.tasks.etcd.offhost import DirStore, parse_destination, snapshot_rel
from capstan.tasks.etcd.source import locate
from capstan.tasks.session import Session

HA = Path(__file__).resolve().parents[2] / "examples" / "ha.yaml"
BASE = "/var/backups/etcd"
OLD, NEW = "etcd-20261128T020000Z", "etcd-20261129T020000Z"
DATA = b"snapshot bytes"
SHA = hashlib.sha256(DATA).hexdigest()


def member(name: str, snapshots: dict[str, bytes], files: dict[str, bytes] | None = None) -> FakeTransport:
    """A member whose backup dir holds ``snapshots`` (name -> content), each with its .sha256, and
    other ``files`` (path -> content) without one."""
    t = FakeTransport(name, default=None)
    for path, d in (files or {}).items():
        t.on(f"sha256sum -- {path}", f"{hashlib.sha256(d).hexdigest()}  {path}\n")
        t.on(f"cat -- {path}.sha256", "", exit_code=1)
        t.on(f"stat -c %s -- {path}", f"{len(d)}\n")
    listing = "".join(
        f"complete\t{n}\t{len(d)}\t{hashlib.sha256(d).hexdigest()}\t{{}}\n" for n, d in snapshots.items()
    )
    t.on(re.compile("capstan-list"), listing)
    for n, d in snapshots.items():
        path = f"{BASE}/{n}/snapshot.db"
        t.on(f"sha256sum -- {path}", f"{hashlib.sha256(d).hexdigest()}  {path}\n")
        t.on(f"cat -- {path}.sha256", sha256_line(hashlib.sha256(d).hexdigest()))
        t.on(f"stat -c %s -- {path}", f"{len(d)}\n")
    t.on(re.compile(r"^sha256sum -- "), "", exit_code=1)
    t.on(re.compile(r"^test -e "), "", exit_code=1)
    return t


def session(hosts: dict[str, FakeTransport]) -> Session:
    cluster: Cluster = load_spec(HA)

    def factory(c: Cluster, h: Host) -> FakeTransport:
        return hosts[h.name]

    return Session("test", cluster, factory=factory)


def offhost(tmp_path: Path, snapshots: dict[str, bytes], cluster: str = "prod") -> DirStore:
    store = DirStore(tmp_path)
    for n, d in snapshots.items():
        store.write(snapshot_rel(cluster, n), [d])
        store.write(
            snapshot_rel(cluster, n, "snapshot.db.sha256"),
            [sha256_line(hashlib.sha256(d).hexdigest()).encode()],
        )
    return store


def test_the_newest_snapshot_wins_wherever_it_is(tmp_path: Path) -> None:
    offhost(tmp_path, {OLD: b"old"})
    s = session({"cp1": member("cp1", {}), "cp2": member("cp2", {NEW: DATA}), "cp3": member("cp3", {})})
    found = locate(s, None, parse_destination(str(tmp_path)), BASE)
    assert (found.name, found.kind, found.host, found.sha256, found.size) == (
        NEW,
        "host",
        "cp2",
        SHA,
        len(DATA),
    )


def test_on_a_tie_the_off_host_copy_is_used_and_verified(tmp_path: Path) -> None:
    offhost(tmp_path, {NEW: DATA})
    s = session({h: member(h, {NEW: DATA}) for h in ("cp1", "cp2", "cp3")})
    found = locate(s, None, parse_destination(str(tmp_path)), BASE)
    assert (found.kind, found.where, found.sha256) == ("store", snapshot_rel("prod", NEW), SHA)
    assert found.label == str(tmp_path / "prod" / NEW / "snapshot.db")


def test_an_unreachable_member_does_not_hide_the_others(tmp_path: Path) -> None:
    down = member("cp1", {NEW: DATA}).go_down(ConnectError("cp1", "no route to host"))
    s = session({"cp1": down, "cp2": member("cp2", {OLD: DATA}), "cp3": member("cp3", {})})
    found = locate(s, None, None, BASE)
    assert (found.name, found.host) == (OLD, "cp2")


def test_a_rotten_off_host_copy_is_refused_naming_it(tmp_path: Path) -> None:
    store = offhost(tmp_path, {NEW: DATA})
    (tmp_path / "prod" / NEW / "snapshot.db").write_bytes(DATA + b"!")
    s = session({h: member(h, {}) for h in ("cp1", "cp2", "cp3")})
    with pytest.raises(
        SnapshotError, match=rf"^{re.escape(store.location(snapshot_rel('prod', NEW)))}: sha256 "
    ):
        locate(s, NEW, parse_destination(str(tmp_path)), BASE)


def test_a_named_snapshot_that_exists_nowhere_is_refused(tmp_path: Path) -> None:
    s = session({h: member(h, {OLD: DATA}) for h in ("cp1", "cp2", "cp3")})
    with pytest.raises(SnapshotError, match=rf"snapshot {NEW} not found .*not in {BASE} on cp1, cp2, cp3"):
        locate(s, NEW, parse_destination(str(tmp_path)), BASE)
    with pytest.raises(SnapshotError, match="no snapshot found"):
        locate(session({h: member(h, {}) for h in ("cp1", "cp2", "cp3")}), None, None, BASE)


def test_host_colon_path_names_a_file_on_a_member(tmp_path: Path) -> None:
    t = member("cp3", {}, {"/root/snap.db": DATA})
    s = session({"cp1": member("cp1", {}), "cp2": member("cp2", {}), "cp3": t})
    found = locate(s, "cp3:/root/snap.db", None, BASE)
    assert (found.kind, found.host, found.where, found.sha256) == ("host", "cp3", "/root/snap.db", SHA)
    assert found.name.startswith("etcd-")  # staged on the members under a dated name
    with pytest.raises(SnapshotError, match=r"^cp3: /root/none\.db: no such snapshot file"):
        locate(s, "cp3:/root/none.db", None, BASE)
