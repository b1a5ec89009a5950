"""What backup and restore do on one host, through the ``Transport`` seam only.

Snapshots can be gigabytes, and ``Transport.get``/``put`` move whole files in memory, so snapshots
travel in chunks: ``dd`` reads a byte range and ``base64`` makes it survive a text channel on the way
out; on the way in, raw chunks are appended over stdin to a ``.part`` file that becomes the real name
only after its sha256 matched. Memory stays bounded by one chunk whatever the snapshot size.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Iterator

from capstan.errors import CommandFailed
from capstan.remote.base import Transport
from capstan.tasks.etcd.model import (
    LIST_SCRIPT,
    MemberHealth,
    SnapshotError,
    SnapshotStatus,
    StoredSnapshot,
    etcdctl_argv,
    parse_listing,
    parse_member_health,
    parse_sha256_file,
    parse_snapshot_status,
    snapshot_tool,
    status_argv,
)

CHUNK = 8 * 1024 * 1024
"""Bytes per round trip when a snapshot is streamed (about 11 MiB of base64 on the wire)."""
COPY_TIMEOUT = 600.0
"""Seconds one chunk or one offline snapshot command may take (a slow disk, not a dead host)."""
SAVE_TIMEOUT = 1800
"""Seconds ``snapshot save`` may take to stream a multi-GiB database from etcd."""

_READ_CHUNK = 'dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" bs=1M status=none | base64 -w0'
_APPEND = 'umask 077; if [ "$2" = new ]; then cat > "$1"; else cat >> "$1"; fi'
_FINISH = 'set -e; chmod 0600 "$1"; mv -f "$1" "$2"'


def first_error_line(stderr: str) -> str:
    """etcdctl's own ``Error: ...`` line, not the goroutine dump a corrupt file can cause."""
    for line in stderr.splitlines():
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    return lines[0][:200] if lines else "no error message"


def member_health(t: Transport) -> MemberHealth:
    """This host's own member: ``endpoint health`` and ``endpoint status`` on its local endpoint."""
    health = t.run(etcdctl_argv("endpoint", "health", "-w", "json"), sudo=True, check=False, timeout=30)
    if health.exit_code != 0 and not health.stdout.strip():
        return MemberHealth(False, first_error_line(health.stderr))
    status = t.run(etcdctl_argv("endpoint", "status", "-w", "json"), sudo=True, check=False, timeout=30)
    return parse_member_health(health.stdout, status.stdout if status.ok else "")


def find_tool(t: Transport) -> str:
    """``etcdutl`` or ``etcdctl``: whichever offline snapshot tool the host has (etcdutl preferred)."""
    found = t.run("command -v etcdutl || command -v etcdctl", sudo=True, check=False)
    if not found.stdout.strip():
        raise SnapshotError(f"{t.host}: neither etcdutl nor etcdctl is installed")
    return snapshot_tool(found.stdout.strip().splitlines()[0])


def snapshot_status(t: Transport, tool: str, path: str) -> SnapshotStatus:
    """``snapshot status`` of a file on the host; a missing or unreadable file is a SnapshotError."""
    res = t.run(status_argv(tool, path), sudo=True, check=False, timeout=COPY_TIMEOUT)
    if res.exit_code != 0:
        raise SnapshotError(f"{t.host}: {path}: snapshot status failed: {first_error_line(res.stderr)}")
    return parse_snapshot_status(res.stdout, f"{t.host}:{path}")


def sha256_of(t: Transport, path: str) -> str | None:
    """The sha256 of a file on the host, or None when it does not exist."""
    res = t.run(["sha256sum", "--", path], sudo=True, check=False, timeout=COPY_TIMEOUT)
    if res.exit_code != 0:
        exists = t.run(["test", "-e", path], sudo=True, check=False)
        if not exists.ok:
            return None
        raise CommandFailed(t.host, ["sha256sum", "--", path], res.exit_code, res.stderr)
    return parse_sha256_file(res.stdout, f"{t.host}:{path}")


def read_sha256_file(t: Transport, path: str) -> str | None:
    """The digest recorded in a ``.sha256`` file on the host, or None when there is none."""
    res = t.run(["cat", "--", path], sudo=True, check=False)
    if res.exit_code != 0:
        return None
    return parse_sha256_file(res.stdout, f"{t.host}:{path}")


def file_size(t: Transport, path: str) -> int | None:
    res = t.run(["stat", "-c", "%s", "--", path], sudo=True, check=False)
    return int(res.stdout.strip()) if res.ok and res.stdout.strip().isdigit() else None


def list_snapshots(t: Transport, base: str) -> list[StoredSnapshot]:
    """The dated directories under ``base`` on this host (complete and partial)."""
    res = t.run(["sh", "-c", LIST_SCRIPT, "capstan-list", base], sudo=True)
    return parse_listing(res.stdout)


def read_chunks(t: Transport, path: str, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes, ``chunk`` at a time; a short read (file changed or vanished) is an error."""
    offset = 0
    while offset < size:
        want = min(chunk, size - offset)
        argv = ["sh", "-c", _READ_CHUNK, "capstan-read", path, str(offset), str(want)]
        out = t.run(argv, sudo=True, timeout=COPY_TIMEOUT).stdout
        data = base64.b64decode(out.strip()) if out.strip() else b""
        if len(data) != want:
            raise SnapshotError(f"{t.host}: {path}: read {len(data)} bytes at {offset}, expected {want}")
        offset += want
        yield data


def hashing(chunks: Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    """Pass chunks through while feeding them to ``digest``."""
    for data in chunks:
        digest.update(data)
        yield data


def upload(t: Transport, path: str, chunks: Iterable[bytes], expect_sha256: str) -> None:
    """Write ``chunks`` to ``path`` (0600) via ``path.part``; the rename happens only on a sha256 match.

    A mismatch leaves no file under the real name and raises, naming the host and both digests.
    """
    part = f"{path}.part"
    t.run(["install", "-d", "-m", "0700", path.rsplit("/", 1)[0]], sudo=True)
    mode = "new"
    for data in chunks:
        t.run(
            ["sh", "-c", _APPEND, "capstan-append", part, mode], sudo=True, stdin=data, timeout=COPY_TIMEOUT
        )
        mode = "append"
    if mode == "new":  # an empty source still yields an (empty) file to check
        t.run(["sh", "-c", _APPEND, "capstan-append", part, mode], sudo=True, stdin=b"")
    got = sha256_of(t, part)
    if got != expect_sha256:
        t.run(["rm", "-f", "--", part], sudo=True, check=False)
        raise SnapshotError(
            f"{t.host}: the copy of {path} arrived with sha256 {(got or 'none')[:16]}, "
            f"expected {expect_sha256[:16]}"
        )
    t.run(["sh", "-c", _FINISH, "capstan-finish", part, path], sudo=True)


ChunkSource = Callable[[], Iterator[bytes]]
"""Something that can (re)start streaming a snapshot from the beginning."""
