"""Off-host snapshot copies: a directory on the orchestrator, or a Prefect filesystem block.

``spec.etcd.backup.destination`` (or the flow's override) is either a path (``/srv/etcd-backups``) or
``block:<block-type-slug>/<block-name>`` (``block:local-file-system/etcd-backups``). Either way a
snapshot lands at ``<cluster>/<etcd-YYYYmmddTHHMMSSZ>/snapshot.db`` with ``snapshot.db.sha256`` beside it.

A ``LocalFileSystem`` block is a directory with a name in Prefect: it is written like a plain directory,
streamed chunk by chunk, files 0600 in 0700 directories. Any other writable filesystem block
(``RemoteFileSystem``, the cloud collections' buckets) goes through the block's own ``write_path`` and
``read_path``, which take whole files, so such a copy holds one snapshot in memory; listing its
snapshots (for ``restore`` without a name) works for directories and LocalFileSystem blocks only.

Retention at the destination (``prune``) follows the same rule as on the members: the newest N by the
UTC stamp in the name, plus always the copy this run just wrote. It only ever looks inside
``<cluster>/``, only at real directories with snapshot names, and only deletes the files capstan writes
there; a directory that still holds anything else stays. Blocks that cannot list their files are not
pruned, and the result says so (the flow logs a warning) rather than doing nothing quietly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from capstan.errors import CapstanError
from capstan.tasks.etcd.model import (
    META_FILE,
    SHA_FILE,
    SNAPSHOT_FILE,
    is_snapshot_name,
    retention_victims,
)

_BLOCK = re.compile(r"^block:([a-z0-9][a-z0-9-]*)/([a-z0-9][a-z0-9-]*)$")
_READ = 8 * 1024 * 1024
_OURS = (SHA_FILE, f"{SHA_FILE}.part", SNAPSHOT_FILE, f"{SNAPSHOT_FILE}.part", META_FILE)
"""The files capstan writes into a snapshot directory (``.part`` while streaming; ``snapshot.json``
only on members, but a member's directory copied here by hand carries it)."""


@dataclass(frozen=True)
class Destination:
    """A parsed destination: ``kind`` "dir" (``where`` is a path) or "block" (``where`` is slug/name)."""

    kind: str
    where: str

    @property
    def label(self) -> str:
        return f"block:{self.where}" if self.kind == "block" else self.where


def parse_destination(text: str, field: str = "spec.etcd.backup.destination") -> Destination:
    """Validate a destination; errors name ``field``."""
    value = text.strip()
    if value.startswith("block:"):
        if not _BLOCK.match(value):
            raise CapstanError(
                f"{field}: {value!r} is not block:<block-type-slug>/<block-name> "
                "(lowercase letters, digits and dashes)"
            )
        return Destination("block", value.removeprefix("block:"))
    path = Path(value).expanduser()
    if not value or not path.is_absolute():
        raise CapstanError(f"{field}: {value!r} must be an absolute directory or block:<slug>/<name>")
    return Destination("dir", str(path))


def snapshot_rel(cluster: str, name: str, filename: str = SNAPSHOT_FILE) -> str:
    return f"{cluster}/{name}/{filename}"


class Store(Protocol):
    """Where off-host copies live; paths are relative (``<cluster>/<name>/snapshot.db``)."""

    @property
    def label(self) -> str: ...

    def location(self, rel: str) -> str: ...

    def write(self, rel: str, chunks: Iterable[bytes]) -> None: ...

    def read(self, rel: str) -> Iterator[bytes]: ...

    def exists(self, rel: str) -> bool: ...

    def snapshots(self, cluster: str) -> list[str] | None:
        """Names of complete snapshots of ``cluster`` (None: this store cannot list)."""
        ...

    def listing(self, cluster: str) -> tuple[list[str], list[str]] | None:
        """``cluster``'s snapshot directories that retention may delete: (complete, partial) names of
        real directories, symlinks left out (None: this store cannot list, so it is never pruned)."""
        ...

    def remove(self, cluster: str, name: str) -> bool:
        """Delete one snapshot directory's files capstan wrote, then the directory when it is empty;
        False when the directory stays (it holds files capstan did not write)."""
        ...


class DirStore:
    """A directory on the orchestrator (also what a LocalFileSystem block is)."""

    def __init__(self, root: Path, label: str | None = None) -> None:
        self.root = root
        self._label = label or str(root)

    @property
    def label(self) -> str:
        return self._label

    def _path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise CapstanError(f"{self.label}: {rel} is outside the destination")
        return path

    def location(self, rel: str) -> str:
        return str(self._path(rel))

    def write(self, rel: str, chunks: Iterable[bytes]) -> None:
        """Stream into ``<file>.part`` (0600), fsync, rename: a reader never sees half a snapshot."""
        path = self._path(rel)
        root = self.root.resolve()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for parent in reversed([p for p in path.parents if root in p.parents]):
            parent.mkdir(mode=0o700, exist_ok=True)
        part = path.with_name(path.name + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for data in chunks:
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(part, 0o600)
            os.replace(part, path)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise

    def read(self, rel: str) -> Iterator[bytes]:
        with self._path(rel).open("rb") as f:
            while data := f.read(_READ):
                yield data

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def snapshots(self, cluster: str) -> list[str] | None:
        base = self.root / cluster
        if not base.is_dir():
            return []
        return sorted(
            d.name
            for d in base.iterdir()
            if is_snapshot_name(d.name) and (d / SNAPSHOT_FILE).is_file() and (d / SHA_FILE).is_file()
        )

    def listing(self, cluster: str) -> tuple[list[str], list[str]] | None:
        base = self.root / cluster
        if base.is_symlink() or not base.is_dir():
            return [], []
        complete: list[str] = []
        partial: list[str] = []
        for d in base.iterdir():
            if not is_snapshot_name(d.name) or d.is_symlink() or not d.is_dir():
                continue  # foreign, or a link whose target we must not reach through
            done = all((d / f).is_file() and not (d / f).is_symlink() for f in (SNAPSHOT_FILE, SHA_FILE))
            (complete if done else partial).append(d.name)
        return sorted(complete), sorted(partial)

    def remove(self, cluster: str, name: str) -> bool:
        if not is_snapshot_name(name):
            raise ValueError(f"not a snapshot name: {name!r}")
        d = self.root / cluster / name
        if d.is_symlink() or not d.is_dir():
            return not d.exists() and not d.is_symlink()
        # The .sha256 first: it marks a copy complete, so a prune cut short leaves a partial leftover
        # (never offered for a restore, deleted next time), not a checksum without its snapshot.
        for filename in _OURS:
            with contextlib.suppress(FileNotFoundError):
                (d / filename).unlink()
        try:
            d.rmdir()
        except OSError:
            if any(d.iterdir()):
                return False
            raise
        return True


class BlockStore:
    """Any other Prefect ``WritableFileSystem`` block, through ``write_path``/``read_path``."""

    def __init__(self, block: Any, label: str) -> None:
        self.block = block
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    def location(self, rel: str) -> str:
        return f"{self._label}:{rel}"

    def write(self, rel: str, chunks: Iterable[bytes]) -> None:
        self.block.write_path(rel, b"".join(chunks))

    def read(self, rel: str) -> Iterator[bytes]:
        data = self.block.read_path(rel)
        yield bytes(data)

    def exists(self, rel: str) -> bool:
        try:
            self.block.read_path(rel)
        except Exception:  # block implementations raise their own "not found" types
            return False
        return True

    def snapshots(self, cluster: str) -> list[str] | None:
        return None

    def listing(self, cluster: str) -> tuple[list[str], list[str]] | None:
        return None

    def remove(self, cluster: str, name: str) -> bool:
        raise CapstanError(f"{self._label}: {type(self.block).__name__} blocks cannot delete files")


def open_store(dest: Destination) -> Store:
    """The store for a destination; a block is loaded from the Prefect API by slug/name."""
    if dest.kind == "dir":
        return DirStore(Path(dest.where))
    from prefect.blocks.core import Block

    try:
        block = Block.load(dest.where)
    except (ValueError, KeyError) as exc:
        raise CapstanError(f"destination {dest.label}: no such block ({exc})") from None
    return store_for_block(block, dest.label)


def store_for_block(block: Any, label: str) -> Store:
    """A LocalFileSystem block is its directory (streamed, listed, pruned); another writable
    filesystem block goes through its own whole-file methods."""
    from prefect.filesystems import LocalFileSystem, WritableFileSystem

    if isinstance(block, LocalFileSystem):
        if not block.basepath:
            raise CapstanError(f"destination {label}: the LocalFileSystem block has no basepath")
        return DirStore(Path(block.basepath).expanduser(), label=label)
    if isinstance(block, WritableFileSystem):
        return BlockStore(block, label)
    raise CapstanError(f"destination {label}: {type(block).__name__} is not a writable filesystem block")


def sha256_of_store(store: Store, rel: str) -> str:
    digest = hashlib.sha256()
    for data in store.read(rel):
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Pruned:
    """What off-host retention did at one destination (snapshot names only, no contents)."""

    where: str
    keep: int
    kept: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    left: tuple[str, ...] = ()  # our files deleted, directory kept: it holds files capstan did not write
    skipped: str = ""  # why nothing was pruned (a store that cannot list, an unexpected listing)
    errors: tuple[str, ...] = ()  # "<name>: <OS error>" for a directory that could not be deleted

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "keep": self.keep,
            "kept": list(self.kept),
            "removed": list(self.removed),
            "left": list(self.left),
            "skipped": self.skipped,
            "errors": list(self.errors),
        }


def prune(store: Store, cluster: str, keep: int, fresh: str) -> Pruned:
    """Keep ``cluster``'s newest ``keep`` snapshots at the destination, and always ``fresh``.

    Call it only after ``fresh`` was copied and its sha256 verified: it is the one thing that makes
    deleting older copies safe. "Newest" is the UTC stamp in the name (what a restore calls newest
    too); the copy just written is kept whatever its name says, so an orchestrator clock running
    behind cannot delete its own fresh copy (there may then be ``keep`` + 1 until the clock is right).
    Partial leftovers of failed copies go too. A directory that cannot be deleted is reported in
    ``errors`` and the rest is still pruned: the backup itself has already succeeded.
    """
    try:
        listed = store.listing(cluster)
    except OSError as exc:
        return Pruned(
            store.label, keep, skipped=f"{store.label}: cannot list {cluster}/: {exc.strerror or exc}"
        )
    if listed is None:
        return Pruned(
            store.label,
            keep,
            skipped=f"{store.label} cannot list its files, so old copies were not deleted; "
            f"delete old {cluster}/etcd-* directories there yourself",
        )
    complete, partial = listed
    if fresh not in complete:
        return Pruned(
            store.label,
            keep,
            skipped=f"{snapshot_rel(cluster, fresh)} is not listed at {store.label} after the copy, "
            "so nothing was deleted",
        )
    victims = retention_victims(complete, partial, keep, protect=fresh)
    removed: list[str] = []
    left: list[str] = []
    errors: list[str] = []
    for name in victims:
        try:
            (removed if store.remove(cluster, name) else left).append(name)
        except OSError as exc:
            errors.append(f"{name}: {exc.strerror or exc}")
    kept = tuple(n for n in complete if n not in victims)
    return Pruned(store.label, keep, kept, tuple(removed), tuple(left), errors=tuple(errors))
