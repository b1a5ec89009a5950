"""Moving snapshots: the chunked read and write scripts run by a real ``sh`` (dd, base64, sha256sum),
the on-host listing script, and the off-host stores (a directory; a Prefect filesystem block)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from local_shell import LocalShell

from capstan.errors import CapstanError
from capstan.tasks.etcd.model import SnapshotError, sha256_line
from capstan.tasks.etcd.offhost import BlockStore, DirStore, sha256_of_store, snapshot_rel
from capstan.tasks.etcd.remote import list_snapshots, read_chunks, sha256_of, upload
from capstan.tasks.etcd.source import _from_file

NAME = "etcd-20261129T020000Z"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_read_chunks_reassembles_binary_data_one_chunk_per_round_trip(tmp_path: Path) -> None:
    data = os.urandom(2500) + b"\x00\n\r\xff" * 10
    src = tmp_path / "snapshot.db"
    src.write_bytes(data)
    t = LocalShell()
    chunks = list(read_chunks(t, str(src), len(data), chunk=1000))
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [1000, 1000, 540] and t.runs == 3


def test_read_chunks_of_a_file_shorter_than_announced_fails_naming_host_and_file(tmp_path: Path) -> None:
    src = tmp_path / "snapshot.db"
    src.write_bytes(b"x" * 100)
    with pytest.raises(SnapshotError, match=r"^local: .*snapshot\.db: read 100 bytes at 0, expected 150"):
        list(read_chunks(LocalShell(), str(src), 150))


def test_upload_writes_0600_only_after_the_sha256_matched(tmp_path: Path) -> None:
    data = os.urandom(3000)
    target = tmp_path / "backups" / NAME / "snapshot.db"
    upload(LocalShell(), str(target), [data[:1000], data[1000:]], sha(data))
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert not Path(f"{target}.part").exists()


def test_upload_with_a_wrong_checksum_leaves_no_file_and_names_the_host(tmp_path: Path) -> None:
    target = tmp_path / "snapshot.db"
    with pytest.raises(SnapshotError, match=r"^local: the copy of .* arrived with sha256 "):
        upload(LocalShell(), str(target), [b"abc"], sha(b"abd"))
    assert not target.exists() and not Path(f"{target}.part").exists()


def test_sha256_of_missing_file_is_none(tmp_path: Path) -> None:
    t = LocalShell()
    assert sha256_of(t, str(tmp_path / "nope")) is None
    (tmp_path / "f").write_bytes(b"hello")
    assert sha256_of(t, str(tmp_path / "f")) == sha(b"hello")


def test_listing_script_on_a_real_directory(tmp_path: Path) -> None:
    base = tmp_path / "etcd"
    done, partial = base / NAME, base / "etcd-20261130T020000Z"
    for d in (done, partial, base / "lost+found"):
        d.mkdir(parents=True)
    (done / "snapshot.db").write_bytes(b"x" * 42)
    (done / "snapshot.json").write_text('{\n "revision": 7,\n "keys": 3\n}\n')
    (done / "snapshot.db.sha256").write_text(sha256_line(sha(b"x" * 42)))
    (partial / "snapshot.db").write_bytes(b"half")
    found = list_snapshots(LocalShell(), str(base))
    assert [(s.name, s.complete) for s in found] == [(NAME, True), ("etcd-20261130T020000Z", False)]
    assert found[0].size == 42 and found[0].sha256 == sha(b"x" * 42) and found[0].meta["revision"] == 7
    assert list_snapshots(LocalShell(), str(tmp_path / "absent")) == []


def test_dir_store_streams_into_private_files_and_lists_complete_snapshots(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "offhost")
    rel = snapshot_rel("prod", NAME)
    store.write(rel, iter([b"abc", b"def"]))
    path = tmp_path / "offhost" / "prod" / NAME / "snapshot.db"
    assert path.read_bytes() == b"abcdef" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.snapshots("prod") == []  # no .sha256 yet: not complete
    store.write(snapshot_rel("prod", NAME, "snapshot.db.sha256"), [sha256_line(sha(b"abcdef")).encode()])
    assert store.snapshots("prod") == [NAME] and store.snapshots("other") == []
    assert sha256_of_store(store, rel) == sha(b"abcdef")
    assert store.location(rel) == str(path)
    with pytest.raises(CapstanError, match="outside the destination"):
        store.write("../escape/snapshot.db", [b"x"])


def test_dir_store_failure_mid_stream_leaves_nothing_under_the_real_name(tmp_path: Path) -> None:
    store = DirStore(tmp_path)
    rel = snapshot_rel("prod", NAME)

    def broken() -> object:
        yield b"abc"
        raise SnapshotError("host went away")

    with pytest.raises(SnapshotError):
        store.write(rel, broken())  # type: ignore[arg-type]
    assert not store.exists(rel) and list((tmp_path / "prod" / NAME).iterdir()) == []


def test_block_store_through_a_prefect_remote_filesystem() -> None:
    from prefect.filesystems import RemoteFileSystem

    store = BlockStore(RemoteFileSystem(basepath="memory://capstan-test"), "block:remote-file-system/t")
    rel = snapshot_rel("prod", NAME)
    assert not store.exists(rel)
    store.write(rel, [b"abc", b"def"])
    assert store.exists(rel) and b"".join(store.read(rel)) == b"abcdef"
    assert store.snapshots("prod") is None  # cannot list: restore needs a name
    assert store.location(rel) == f"block:remote-file-system/t:{rel}"


def test_a_local_snapshot_file_is_checked_against_its_sidecar(tmp_path: Path) -> None:
    d = tmp_path / NAME
    d.mkdir()
    f = d / "snapshot.db"
    f.write_bytes(b"snap")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    found = _from_file(f, now)  # no sidecar: the file vouches for itself
    assert (found.name, found.sha256, found.size, found.kind) == (NAME, sha(b"snap"), 4, "file")
    (d / "snapshot.db.sha256").write_text(sha256_line(sha(b"snap!")))
    with pytest.raises(SnapshotError, match="does not match"):
        _from_file(f, now)
    other = tmp_path / "my.db"
    other.write_bytes(b"x")
    assert _from_file(other, now).name == "etcd-20261201T000000Z"
    with pytest.raises(SnapshotError, match="no such snapshot file"):
        _from_file(tmp_path / "missing.db", now)


def swap(script: str, tmp_path: Path, data_dir: Path, new: Path, old: Path) -> None:
    """Run a swap script with ``chown`` stubbed (no etcd account needed here)."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "chown").write_text("#!/bin/sh\nexit 0\n")
    (stub / "chown").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", script, "swap", str(data_dir), str(new), str(old)], check=True, env=env)


def restored(new: Path, marker: str) -> None:
    (new / "member").mkdir(parents=True)
    (new / "member" / "marker").write_text(marker)


@pytest.mark.parametrize("mounted", [False, True])
def test_data_dir_swap_keeps_the_original_aside_and_survives_a_repeated_attempt(
    tmp_path: Path, mounted: bool
) -> None:
    from capstan.tasks.etcd.restore import _SWAP, _SWAP_MOUNT

    script = _SWAP_MOUNT if mounted else _SWAP
    dd = tmp_path / "etcd"
    (dd / "member").mkdir(parents=True)
    (dd / "member" / "marker").write_text("original")
    new, old = (
        (dd / ".restore-1", dd / ".pre-restore-1")
        if mounted
        else (
            tmp_path / "etcd.restore-1",
            tmp_path / "etcd.pre-restore-1",
        )
    )
    restored(new, "attempt 1")
    swap(script, tmp_path, dd, new, old)
    assert (dd / "member" / "marker").read_text() == "attempt 1"
    assert (old / "member" / "marker").read_text() == "original"
    assert not new.exists()

    restored(new, "attempt 2")  # the same run again (its first attempt's result was lost)
    swap(script, tmp_path, dd, new, old)
    assert (dd / "member" / "marker").read_text() == "attempt 2"
    assert (old / "member" / "marker").read_text() == "original"  # never overwritten by a restored copy


def test_data_dir_swap_when_the_data_dir_was_wiped(tmp_path: Path) -> None:
    from capstan.tasks.etcd.restore import _SWAP

    dd, new, old = tmp_path / "etcd", tmp_path / "etcd.restore-1", tmp_path / "etcd.pre-restore-1"
    restored(new, "restored")
    swap(_SWAP, tmp_path, dd, new, old)
    assert (dd / "member" / "marker").read_text() == "restored" and not old.exists()
