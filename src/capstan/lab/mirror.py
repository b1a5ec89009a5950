"""The lab's artifact mirror: a files_repo-style tree with a sha256sums.txt, served over HTTP.

Why: hosts have no Internet, and capstan must download binaries exactly as it would from a real
offline mirror (``<base>/<original-domain>/<original-path>``), checking each sha256. The tree is built
from :class:`MirrorEntry` items (a relative path and bytes, a file to copy, or members to pack into a
.tar.gz); archives are packed deterministically (fixed owners and times, gzip without a timestamp),
so the same inputs always give the same sums. Packing ~150 MB of binaries takes seconds, so finished
trees are cached under ``<lab root>/.mirror-cache/<fingerprint>`` and shared by labs; the cache is a
build cache (rebuilt when a source file changes), not lab state, and ``down`` leaves it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from capstan.errors import LabError

SUMS_FILE = "sha256sums.txt"
_FORMAT = "capstan-mirror-1"
_MTIME = 1_700_000_000  # fixed member times make archives reproducible


@dataclass(frozen=True)
class TarMember:
    """One file inside a packed archive: its name in the archive and where its bytes come from."""

    arcname: str
    source: Path | bytes
    mode: int = 0o755


@dataclass(frozen=True)
class MirrorEntry:
    """One file of the mirror. ``source`` is the content, a file to copy, or members of a .tar.gz.

    ``artifact`` = (name, arch, version) ties the file to a capstan artifact, so its sum can be
    offered to the cluster spec as ``artifacts.extraChecksums``.
    """

    path: str
    source: bytes | Path | tuple[TarMember, ...]
    artifact: tuple[str, str, str] | None = None


def _check_path(rel: str) -> str:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise LabError(f"mirror path {rel!r} must be relative and stay inside the mirror")
    return rel


def _read(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def _parents(name: str) -> list[str]:
    parts = Path(name.removeprefix("./")).parts[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def pack_tar_gz(members: Sequence[TarMember], out: BinaryIO) -> None:
    """Write a reproducible .tar.gz: root-owned, fixed mtimes, directories listed before their files."""
    with (
        gzip.GzipFile(filename="", fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        seen: set[str] = set()
        for m in members:
            for d in _parents(m.arcname):
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
                    info.uname = info.gname = "root"
                    tar.addfile(info)
            data = _read(m.source)
            info = tarfile.TarInfo(m.arcname)
            info.size, info.mode, info.mtime = len(data), m.mode, _MTIME
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))


def _write_entry(base: Path, entry: MirrorEntry) -> tuple[str, str]:
    target = base / _check_path(entry.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry.source, tuple):
        with open(target, "wb") as fh:
            pack_tar_gz(entry.source, fh)
    elif isinstance(entry.source, bytes):
        target.write_bytes(entry.source)
    else:
        shutil.copyfile(entry.source, target)
    target.chmod(0o644)
    digest = hashlib.sha256()
    with open(target, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return entry.path, digest.hexdigest()


def build_mirror(base: Path, entries: Sequence[MirrorEntry]) -> dict[str, str]:
    """Write every entry under ``base`` plus ``sha256sums.txt``; return {relative path: sha256}.

    Entries are written in parallel threads: gzip and hashing release the GIL.
    """
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        raise LabError("mirror entries: the same path is listed twice")
    base.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        sums = dict(pool.map(lambda e: _write_entry(base, e), entries))
    lines = [f"{sums[p]}  {p}\n" for p in sorted(sums)]
    (base / SUMS_FILE).write_text("".join(lines))
    return sums


def read_sums(base: Path) -> dict[str, str]:
    sums = {}
    for line in (base / SUMS_FILE).read_text().splitlines():
        hexsum, _, rel = line.partition("  ")
        sums[rel] = hexsum
    return sums


def _fingerprint(entries: Sequence[MirrorEntry]) -> str:
    """Identify a mirror by its inputs (paths, source files' size and mtime, inline bytes' hash)."""
    h = hashlib.sha256(_FORMAT.encode())

    def feed(source: Path | bytes) -> None:
        if isinstance(source, bytes):
            h.update(hashlib.sha256(source).digest())
        else:
            st = source.stat()
            h.update(f"{source}:{st.st_size}:{st.st_mtime_ns}".encode())

    for e in sorted(entries, key=lambda e: e.path):
        h.update(e.path.encode())
        if isinstance(e.source, tuple):
            for m in e.source:
                h.update(f"{m.arcname}:{m.mode}".encode())
                feed(m.source)
        else:
            feed(e.source)
    return h.hexdigest()[:16]


def cached_mirror(cache_root: Path, entries: Sequence[MirrorEntry]) -> Path:
    """A finished mirror tree for these entries, built once and reused (atomic rename into place)."""
    final = cache_root / _fingerprint(entries)
    if (final / SUMS_FILE).exists():
        return final
    tmp = cache_root / f".build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build_mirror(tmp, entries)
        try:
            tmp.rename(final)
        except OSError:  # another lab finished the same build first
            if not (final / SUMS_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def start_server(base: Path, bind: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``python -m http.server`` bound to the lab bridge address; returns once it accepts connections."""
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", bind, "--directory", str(base)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 10.0
    while True:
        try:
            with socket.create_connection((bind, port), timeout=0.2):
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            raise LabError(f"the mirror server on {bind}:{port} did not start; see {log}")
        time.sleep(0.02)
