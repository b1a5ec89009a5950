"""Retention at the off-host destination: real directories, real Prefect filesystem block objects.

The rules under test: the newest N copies of this cluster stay (newest = the UTC stamp in the name),
the copy just written always stays, foreign files and other clusters are never touched, and nothing
is deleted unless this run's copy was written and verified.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

import pytest

from capstan.errors import SpecError
from capstan.remote.fake import FakeTransport
from capstan.spec import load_spec, parse_spec
from capstan.spec.models import Cluster, Host
from capstan.tasks.etcd.backup import CHOSEN, RETENTION, SETTINGS, BackupSettings, copy_off_host
from capstan.tasks.etcd.model import (
    SHA_FILE,
    SNAPSHOT_FILE,
    SnapshotError,
    decode_note,
    encode_note,
    sha256_line,
)
from capstan.tasks.etcd.offhost import (
    BlockStore,
    DirStore,
    parse_destination,
    prune,
    snapshot_rel,
    store_for_block,
)
from capstan.tasks.runner import PhaseOutcome
from capstan.tasks.session import Session

HA = Path(__file__).resolve().parents[2] / "examples" / "ha.yaml"
CLUSTER = "prod"  # examples/ha.yaml's metadata.name
DAYS = [f"etcd-202611{d:02d}T020000Z" for d in range(20, 27)]  # oldest first


def put(root: Path, name: str, data: bytes = b"snap", cluster: str = CLUSTER, sha: bool = True) -> Path:
    """A copy as the off-host phase leaves it: snapshot.db and (when complete) its .sha256."""
    store = DirStore(root)
    store.write(snapshot_rel(cluster, name), [data])
    if sha:
        line = sha256_line(hashlib.sha256(data).hexdigest())
        store.write(snapshot_rel(cluster, name, SHA_FILE), [line.encode()])
    return root / cluster / name


def names(root: Path, cluster: str = CLUSTER) -> list[str]:
    return sorted(p.name for p in (root / cluster).iterdir())


def test_keeps_the_newest_n_and_deletes_both_files_and_the_directory_of_the_rest(tmp_path: Path) -> None:
    for n in DAYS[:5]:
        put(tmp_path, n)
    result = prune(DirStore(tmp_path), CLUSTER, 3, fresh=DAYS[4])
    assert result.removed == (DAYS[0], DAYS[1]) and result.kept == tuple(DAYS[2:5])
    assert not result.left and not result.skipped and not result.errors
    assert names(tmp_path) == DAYS[2:5]
    assert DirStore(tmp_path).snapshots(CLUSTER) == DAYS[2:5]
    for kept in DAYS[2:5]:
        assert (tmp_path / CLUSTER / kept / SNAPSHOT_FILE).read_bytes() == b"snap"
    again = prune(DirStore(tmp_path), CLUSTER, 3, fresh=DAYS[4])
    assert again.removed == () and again.kept == tuple(DAYS[2:5])  # a re-run deletes nothing more


def test_foreign_entries_other_clusters_and_links_are_never_touched(tmp_path: Path) -> None:
    for n in DAYS[:3]:
        put(tmp_path, n)
        put(tmp_path, n, cluster="prod-old")  # another cluster whose name starts like ours
        put(tmp_path, n, cluster="staging")
    base = tmp_path / CLUSTER
    (base / "notes.txt").write_text("mine")
    (base / "etcd-manual").mkdir()
    (base / "etcd-manual" / SNAPSHOT_FILE).write_bytes(b"hand made")
    (base / f"{DAYS[0]}.bak").mkdir()
    (base / f"{DAYS[0]}.bak" / SNAPSHOT_FILE).write_bytes(b"renamed by hand")
    (base / DAYS[1] / "README").write_text("why this snapshot matters")  # a foreign file in one of ours
    elsewhere = put(tmp_path / "elsewhere", "etcd-20200101T000000Z")
    (base / "etcd-20200101T000000Z").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "top-level.txt").write_text("x")

    result = prune(DirStore(tmp_path), CLUSTER, 1, fresh=DAYS[2])

    assert result.removed == (DAYS[0],) and result.left == (DAYS[1],) and result.kept == (DAYS[2],)
    assert sorted(os.listdir(base / DAYS[1])) == ["README"]  # our files gone, the directory stays
    assert (base / "notes.txt").read_text() == "mine"
    assert (base / "etcd-manual" / SNAPSHOT_FILE).read_bytes() == b"hand made"
    assert (base / f"{DAYS[0]}.bak" / SNAPSHOT_FILE).is_file()
    assert (base / "etcd-20200101T000000Z").is_symlink() and (elsewhere / SNAPSHOT_FILE).is_file()
    assert (elsewhere / SHA_FILE).is_file()
    for other in ("prod-old", "staging"):
        assert DirStore(tmp_path).snapshots(other) == DAYS[:3]
    assert (tmp_path / "top-level.txt").is_file()


def test_the_fresh_copy_stays_when_a_clock_behind_gives_it_an_old_name(tmp_path: Path) -> None:
    """Newest is the name's UTC stamp; the copy just written is kept whatever it says (N + 1 stay)."""
    for n in DAYS[2:6]:
        put(tmp_path, n)
    skewed = DAYS[0]  # written now by an orchestrator whose clock is days behind
    put(tmp_path, skewed)
    result = prune(DirStore(tmp_path), CLUSTER, 2, fresh=skewed)
    assert result.removed == (DAYS[2], DAYS[3])
    assert names(tmp_path) == [skewed, DAYS[4], DAYS[5]]
    later = DAYS[1]  # the next run, clock still behind: the earlier skewed copy is now just old
    put(tmp_path, later)
    assert prune(DirStore(tmp_path), CLUSTER, 2, fresh=later).removed == (skewed,)
    assert names(tmp_path) == [later, DAYS[4], DAYS[5]]


def test_partial_leftovers_of_failed_copies_are_deleted(tmp_path: Path) -> None:
    put(tmp_path, DAYS[3])
    put(tmp_path, DAYS[6])
    put(tmp_path, DAYS[5], sha=False)  # a copy that died before its .sha256
    (tmp_path / CLUSTER / DAYS[4]).mkdir()
    (tmp_path / CLUSTER / DAYS[4] / f"{SNAPSHOT_FILE}.part").write_bytes(b"half")  # died mid-stream
    result = prune(DirStore(tmp_path), CLUSTER, 2, fresh=DAYS[6])
    assert result.removed == (DAYS[4], DAYS[5]) and result.kept == (DAYS[3], DAYS[6])
    assert names(tmp_path) == [DAYS[3], DAYS[6]]


def test_nothing_is_deleted_when_the_fresh_copy_is_not_where_it_should_be(tmp_path: Path) -> None:
    for n in DAYS[:4]:
        put(tmp_path, n)
    put(tmp_path, DAYS[5], sha=False)  # this run's copy, incomplete
    result = prune(DirStore(tmp_path), CLUSTER, 1, fresh=DAYS[5])
    assert result.removed == () and "is not listed" in result.skipped
    assert names(tmp_path) == [*DAYS[:4], DAYS[5]]


def test_an_undeletable_directory_is_reported_and_the_rest_still_pruned(tmp_path: Path) -> None:
    for n in DAYS[:4]:
        put(tmp_path, n)
    odd = tmp_path / CLUSTER / DAYS[0]
    (odd / SHA_FILE).unlink()
    (odd / SHA_FILE).mkdir()  # unlink() of it fails, even for root
    result = prune(DirStore(tmp_path), CLUSTER, 2, fresh=DAYS[3])
    assert result.removed == (DAYS[1],) and len(result.errors) == 1
    assert result.errors[0].startswith(f"{DAYS[0]}: ")
    assert names(tmp_path) == [DAYS[0], *DAYS[2:4]]


def test_a_local_file_system_block_is_pruned_like_its_directory(tmp_path: Path) -> None:
    from prefect.filesystems import LocalFileSystem

    store = store_for_block(LocalFileSystem(basepath=str(tmp_path)), "block:local-file-system/offhost")
    assert isinstance(store, DirStore)
    for n in DAYS[:4]:
        put(tmp_path, n)
    result = prune(store, CLUSTER, 2, fresh=DAYS[3])
    assert result.where == "block:local-file-system/offhost" and result.removed == (DAYS[0], DAYS[1])
    assert names(tmp_path) == DAYS[2:4]


def test_a_block_that_cannot_list_is_skipped_and_says_why() -> None:
    from prefect.filesystems import RemoteFileSystem

    label = "block:remote-file-system/offhost"
    store = store_for_block(RemoteFileSystem(basepath="memory://capstan-h8-retention"), label)
    assert isinstance(store, BlockStore)
    for n in DAYS[:3]:
        store.write(snapshot_rel(CLUSTER, n), [b"snap"])
    result = prune(store, CLUSTER, 1, fresh=DAYS[2])
    assert result.removed == () and result.skipped.startswith(f"{label} cannot list its files")
    assert f"{CLUSTER}/etcd-*" in result.skipped
    assert all(store.exists(snapshot_rel(CLUSTER, n)) for n in DAYS[:3])


# ---- the off-host phase: prune only after a verified copy ----------------------------------------


def member_with(data: bytes) -> FakeTransport:
    """A member whose snapshot file reads back as ``data`` (the chunked read is base64 over ssh)."""
    t = FakeTransport("cp2", default=None)
    t.on(re.compile("capstan-read"), base64.b64encode(data).decode())
    return t


def backup_session(tmp_path: Path, member: FakeTransport, *, sha_of: bytes, retention: int = 2) -> Session:
    cluster: Cluster = load_spec(HA)

    def factory(c: Cluster, h: Host) -> FakeTransport:
        return member

    s = Session("test-offhost", cluster, factory=factory)
    dest = parse_destination(str(tmp_path))
    s.memo[SETTINGS] = BackupSettings(DAYS[6], "/var/backups/etcd", retention, dest)
    path = f"/var/backups/etcd/{DAYS[6]}/{SNAPSHOT_FILE}"
    s.memo[CHOSEN] = {"host": "cp2", "path": path, "sha256": hashlib.sha256(sha_of).hexdigest(), "size": 4}
    return s


def test_the_phase_prunes_after_the_verified_copy_and_notes_what_it_did(tmp_path: Path) -> None:
    for n in DAYS[:4]:
        put(tmp_path, n)
    [outcome] = copy_off_host(backup_session(tmp_path, member_with(b"snap"), sha_of=b"snap"))
    note = decode_note(outcome.note)
    assert note["retention"]["removed"] == DAYS[:3] and note["retention"]["kept"] == [DAYS[3], DAYS[6]]
    assert names(tmp_path) == [DAYS[3], DAYS[6]]
    assert (outcome.changed, outcome.unchanged) == (4, 1)


def test_the_spec_off_host_retention_overrides_the_run_retention(tmp_path: Path) -> None:
    for n in DAYS[:4]:
        put(tmp_path, n)
    s = backup_session(tmp_path, member_with(b"snap"), sha_of=b"snap", retention=1)
    s.cluster.spec.etcd.backup.off_host_retention = 3
    [outcome] = copy_off_host(s)
    assert decode_note(outcome.note)["retention"]["keep"] == 3
    assert names(tmp_path) == [DAYS[2], DAYS[3], DAYS[6]]


def test_a_copy_that_fails_its_checksum_deletes_nothing(tmp_path: Path) -> None:
    for n in DAYS[:4]:
        put(tmp_path, n)
    s = backup_session(tmp_path, member_with(b"rot!"), sha_of=b"snap", retention=1)
    with pytest.raises(SnapshotError, match="read back as sha256"):
        copy_off_host(s)
    assert names(tmp_path) == [*DAYS[:4], DAYS[6]]  # the failed copy's leftover is partial, old ones stay
    assert DirStore(tmp_path).snapshots(CLUSTER) == DAYS[:4]


def test_a_copy_cut_short_by_the_host_deletes_nothing(tmp_path: Path) -> None:
    for n in DAYS[:4]:
        put(tmp_path, n)
    s = backup_session(tmp_path, member_with(b"sn"), sha_of=b"snap", retention=1)  # short read
    with pytest.raises(SnapshotError, match="read 2 bytes at 0, expected 4"):
        copy_off_host(s)
    assert DirStore(tmp_path).snapshots(CLUSTER) == DAYS[:4]


# ---- what the flow prints and puts in its artifact -----------------------------------------------


def test_the_report_and_the_table_say_what_was_pruned_where(tmp_path: Path) -> None:
    from capstan.flows.backup import _report_pruned, _table

    cluster: Cluster = load_spec(HA)
    for n in DAYS[:4]:
        put(tmp_path, n)
    pruned = prune(DirStore(tmp_path), CLUSTER, 2, fresh=DAYS[3]).as_dict()
    notes, warnings = _report_pruned(pruned)
    assert notes == [f"off-host {tmp_path}: removed {DAYS[0]}, {DAYS[1]} (keeping the newest 2)"]
    assert warnings == []
    kept = [{"name": DAYS[3], "path": f"/var/backups/etcd/{DAYS[3]}/snapshot.db", "size": 4, "sha256": ""}]
    member = PhaseOutcome(RETENTION, "cp2", note=encode_note({"removed": [DAYS[1]], "kept": kept}))
    rows = _table(cluster, [member], parse_destination(str(tmp_path)), {"name": DAYS[3]}, None, pruned)
    seen = {(r["host"], r["snapshot"], r["state"]) for r in rows}
    assert seen == {
        ("cp2", DAYS[3], "kept"),
        ("cp2", DAYS[1], "removed"),
        ("off-host", DAYS[2], "kept"),  # only off-host now: its member copy is gone
        ("off-host", DAYS[0], "removed"),
        ("off-host", DAYS[1], "removed"),
    }
    assert len({tuple(r) for r in rows}) == 1  # every row has the same columns
    removed_here = [r["path"] for r in rows if r["host"] == "off-host" and r["state"] == "removed"]
    assert removed_here == [str(tmp_path / CLUSTER / DAYS[0]), str(tmp_path / CLUSTER / DAYS[1])]

    skipped = {"where": "block:x/y", "keep": 2, "removed": [], "left": [], "skipped": "why", "errors": []}
    assert _report_pruned(skipped) == ([], ["off-host retention skipped: why"])
    failed = {**skipped, "skipped": "", "left": ["a"], "errors": ["b: Permission denied"]}
    assert _report_pruned(failed)[1] == [
        "off-host block:x/y: deleted the snapshot files of a but kept the directories: they hold files "
        "capstan did not write",
        "off-host retention at block:x/y failed for b: Permission denied",
    ]
    assert _report_pruned(None) == ([], [])


def test_off_host_retention_in_the_spec_is_validated_and_defaults_to_null() -> None:
    host = {"name": "cp1", "address": "192.0.2.11", "roles": ["control-plane", "etcd", "worker"]}
    base = {"apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "x"}}

    def spec(backup: dict[str, object]) -> Cluster:
        return parse_spec({**base, "spec": {"hosts": [host], "etcd": {"backup": backup}}})

    dumped = spec({}).model_dump(mode="json", by_alias=True)
    assert dumped["spec"]["etcd"]["backup"]["offHostRetention"] is None  # shown by `capstan defaults`
    assert spec({"offHostRetention": 30}).spec.etcd.backup.off_host_retention == 30
    with pytest.raises(SpecError, match=r"^spec\.etcd\.backup\.offHostRetention: "):
        spec({"offHostRetention": 0})


@pytest.mark.usefixtures("prefect_api")
def test_a_skip_is_a_warning_that_reaches_the_console_where_info_lines_do_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``capstan backup`` runs with Prefect's console at WARNING: printed notes stay in the run's log,
    a skipped retention must still be seen on the terminal."""
    from prefect import flow

    from capstan.flows.backup import _warn

    @flow(name="h8-warn-check", log_prints=True)
    def emit() -> None:
        print("off-host /x: removed etcd-20261120T020000Z (keeping the newest 2)")
        _warn("off-host retention skipped: block:remote-file-system/x cannot list its files")

    emit()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "off-host retention skipped: block:remote-file-system/x cannot list its files" in warned
    assert "keeping the newest 2" not in caplog.text  # below the console's level: not even recorded
