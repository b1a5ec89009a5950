"""Off-host snapshot copies: a directory on the orchestrator, or a Prefect filesystem block.

``spec.etcd.backup.destination`` (or the flow's override) is either a path (``/srv/etcd-backups``) or
``block:<block-type-slug>/<block-name>`` (``block:local-file-system/etcd-backups``). Either way a
snapshot lands at ``<cluster>/<etcd-YYYYmmddTHHMMSSZ>/snapshot.db`` with ``snapshot.db.sha256`` beside it.

A ``LocalFileSystem`` block is a directory with a name in Prefect: it is written like a plain directory,
streamed chunk by chunk, files 0600 in 0700 directories. Any other writable filesystem block
(``RemoteFileSystem``, the cloud collections' buckets) goes through the block's own ``write_path`` and
``read_path``, which take whole files, so such a copy holds one snapshot in memory; listing its
snapshots (for ``restore`` without a name) works for directories and LocalFileSystem blocks only.
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
from capstan.tasks.etcd.model import SHA_FILE, SNAPSHOT_FILE, is_snapshot_name

_BLOCK = re.compile(r"^block:([a-z0-9][a-z0-9-]*)/([a-z0-9][a-z0-9-]*)$")
_READ = 8 * 1024 * 1024


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


def open_store(dest: Destination) -> Store:
    """The store for a destination; a block is loaded from the Prefect API by slug/name."""
    if dest.kind == "dir":
        return DirStore(Path(dest.where))
    from prefect.blocks.core import Block
    from prefect.filesystems import LocalFileSystem, WritableFileSystem

    try:
        block = Block.load(dest.where)
    except (ValueError, KeyError) as exc:
        raise CapstanError(f"destination {dest.label}: no such block ({exc})") from None
    if isinstance(block, LocalFileSystem):
        if not block.basepath:
            raise CapstanError(f"destination {dest.label}: the LocalFileSystem block has no basepath")
        return DirStore(Path(block.basepath).expanduser(), label=dest.label)
    if isinstance(block, WritableFileSystem):
        return BlockStore(block, dest.label)
    raise CapstanError(f"destination {dest.label}: {type(block).__name__} is not a writable filesystem block")


def sha256_of_store(store: Store, rel: str) -> str:
    digest = hashlib.sha256()
    for data in store.read(rel):
        digest.update(data)
    return digest.hexdigest()
