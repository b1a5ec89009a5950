"""Which snapshot a restore uses, and how its bytes reach a member.

``SNAPSHOT`` may be a snapshot name (``etcd-20261129T020000Z``), ``<host>:<path>`` of a file on an etcd
host, or a path on the orchestrator. Without it the newest snapshot is taken, wherever it is: the
off-host copies and every reachable member's dated directories are listed and the newest name wins,
the off-host copy on a tie (it does not depend on a member that is about to be wiped).

Before anything changes, the chosen file is read in full and its sha256 compared with the ``.sha256``
recorded beside it when it was taken: a copy that rotted is refused here, naming where it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from capstan.errors import TransportError
from capstan.tasks.etcd.model import (
    SHA_FILE,
    SNAPSHOT_FILE,
    SnapshotError,
    is_snapshot_name,
    newest,
    parse_sha256_file,
    snapshot_name,
)
from capstan.tasks.etcd.offhost import Destination, open_store, snapshot_rel
from capstan.tasks.etcd.remote import file_size, list_snapshots, read_chunks, read_sha256_file, sha256_of
from capstan.tasks.session import Session


@dataclass(frozen=True)
class Source:
    """A located, verified snapshot. ``kind``: "store" (off-host), "host" or "file" (orchestrator)."""

    name: str
    sha256: str
    size: int
    kind: str
    where: str
    host: str = ""
    label: str = ""

    def asdict(self) -> dict[str, object]:
        return asdict(self)


def _digest(chunks: Iterator[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    for data in chunks:
        h.update(data)
        n += len(data)
    return h.hexdigest(), n


def _from_store(dest: Destination, cluster: str, name: str) -> Source | None:
    store = open_store(dest)
    rel, sha_rel = snapshot_rel(cluster, name), snapshot_rel(cluster, name, SHA_FILE)
    if not (store.exists(rel) and store.exists(sha_rel)):
        return None
    want = parse_sha256_file(b"".join(store.read(sha_rel)).decode(errors="replace"), store.location(sha_rel))
    got, size = _digest(store.read(rel))
    if got != want:
        raise SnapshotError(
            f"{store.location(rel)}: sha256 {got[:16]} does not match its .sha256 ({want[:16]}): refusing it"
        )
    return Source(name, want, size, "store", rel, label=store.location(rel))


def _from_host(session: Session, host: str, path: str, name: str) -> Source | None:
    t = session.transport(host)
    got = sha256_of(t, path)
    if got is None:
        return None
    want = read_sha256_file(t, f"{path}.sha256") or got  # a hand-picked file without one vouches for itself
    if got != want:
        raise SnapshotError(
            f"{host}: {path}: sha256 {got[:16]} does not match its .sha256 ({want[:16]}): refusing it"
        )
    size = file_size(t, path) or 0
    return Source(name, want, size, "host", path, host=host, label=f"{host}:{path}")


def _from_file(path: Path, now: datetime) -> Source:
    if not path.is_file():
        raise SnapshotError(f"{path}: no such snapshot file")
    got, size = _digest(_read_file(path))
    sidecar = path.with_name(path.name + ".sha256")
    want = parse_sha256_file(sidecar.read_text(), str(sidecar)) if sidecar.is_file() else got
    if got != want:
        raise SnapshotError(f"{path}: sha256 {got[:16]} does not match {sidecar} ({want[:16]}): refusing it")
    return Source(_name_for(str(path), now), want, size, "file", str(path.resolve()), label=str(path))


def _name_for(path: str, now: datetime) -> str:
    """A file in one of our dated directories keeps that name; any other file is staged as taken now."""
    parent = Path(path).parent.name
    return parent if is_snapshot_name(parent) else snapshot_name(now)


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(8 * 1024 * 1024):
            yield data


def _on_hosts(session: Session, base: str) -> dict[str, list[str]]:
    """Complete snapshot names per reachable etcd host (an unreachable one is left out here)."""
    found: dict[str, list[str]] = {}
    for h in session.cluster.etcd_hosts:
        try:
            found[h.name] = [s.name for s in list_snapshots(session.transport(h.name), base) if s.complete]
        except TransportError:
            continue
    return found


def locate(
    session: Session, request: str | None, dest: Destination | None, base: str, now: datetime | None = None
) -> Source:
    """Find and verify the snapshot to restore (see the module docstring for the forms of ``request``)."""
    cluster = session.cluster.name
    now = now or datetime.now(UTC)
    if request and not is_snapshot_name(request):
        host, sep, path = request.partition(":")
        if sep and not request.startswith("/") and host in {h.name for h in session.cluster.etcd_hosts}:
            found = _from_host(session, host, path, _name_for(path, now))
            if found is None:
                raise SnapshotError(f"{host}: {path}: no such snapshot file")
            return found
        return _from_file(Path(request).expanduser(), now)
    store_names: list[str] = []
    if dest is not None:
        listed = open_store(dest).snapshots(cluster)
        if listed is None and request is None:
            raise SnapshotError(f"destination {dest.label} cannot be listed: name the snapshot to restore")
        store_names = listed or []
    hosts = _on_hosts(session, base)
    name = request or newest(store_names + [n for names in hosts.values() for n in names])
    where = f"{dest.label}/{cluster}" if dest else "no off-host destination"
    if name is None:
        raise SnapshotError(f"no snapshot found ({where}; none complete in {base} on any etcd host)")
    if dest is not None:
        found_store = _from_store(dest, cluster, name)
        if found_store is not None:
            return found_store
    for host, names in hosts.items():
        if name in names:
            found_host = _from_host(session, host, f"{base}/{name}/{SNAPSHOT_FILE}", name)
            if found_host is not None:
                return found_host
    raise SnapshotError(
        f"snapshot {name} not found ({where}; not in {base} on {', '.join(hosts) or 'no host'})"
    )


def chunks(session: Session, source: Source, dest: Destination | None) -> Iterator[bytes]:
    """Stream the located snapshot from where it is."""
    if source.kind == "store":
        if dest is None:
            raise SnapshotError(f"{source.label}: the off-host destination is no longer configured")
        return open_store(dest).read(source.where)
    if source.kind == "host":
        return read_chunks(session.transport(source.host), source.where, source.size)
    return _read_file(Path(source.where))
