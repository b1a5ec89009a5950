"""backup-etcd's phases: member health, one snapshot, the off-host copy, retention on every member.

Decisions travel between phases in the outcomes' notes (``model.encode_note``), not only in the
session: outcomes are the persisted task results, so a retried flow run that skips a completed phase
still knows which member was snapshotted and where the copy went.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from capstan.errors import TransportError
from capstan.plan.phases import Phase
from capstan.spec.models import Cluster, Host
from capstan.tasks.etcd.model import (
    META_FILE,
    SHA_FILE,
    SNAPSHOT_FILE,
    MemberHealth,
    SnapshotError,
    decode_note,
    encode_note,
    etcdctl_argv,
    retention_victims,
    sha256_line,
)
from capstan.tasks.etcd.offhost import Destination, open_store, prune, sha256_of_store, snapshot_rel
from capstan.tasks.etcd.remote import (
    SAVE_TIMEOUT,
    file_size,
    find_tool,
    hashing,
    list_snapshots,
    member_health,
    read_chunks,
    sha256_of,
    snapshot_status,
)
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl, host_phase_impl
from capstan.tasks.session import Session

HEALTH, SNAPSHOT, OFFHOST, RETENTION = (
    "etcd-backup-health",
    "etcd-backup-snapshot",
    "etcd-backup-offhost",
    "etcd-backup-retention",
)
ORCHESTRATOR = "orchestrator"
SETTINGS = "etcd-backup"
CHOSEN = "etcd-backup.snapshot"

_SAVE = r"""set -eu
base=$1; name=$2; shift 2
umask 077
install -d -m 0700 "$base"
rm -rf "$base/$name"  # only a failed earlier attempt of this very run can have made it
mkdir -m 0700 "$base/$name"
trap 'rm -rf "$base/$name"' EXIT
"$@" snapshot save "$base/$name/snapshot.db" >/dev/null
chmod 0600 "$base/$name/snapshot.db"
trap - EXIT
"""


def _etcd(c: Cluster) -> list[Host]:
    return c.etcd_hosts


def _none(c: Cluster) -> list[Host]:
    return []


BACKUP_PHASES: tuple[Phase, ...] = (
    Phase(HEALTH, "Member health", "parallel", _etcd,
          "endpoint health and status on each member; an unhealthy or unreachable member is skipped"),
    Phase(SNAPSHOT, "Snapshot", "once", _etcd,
          "on the first healthy follower (else the leader): snapshot save into a new dated directory "
          "(0700, file 0600), snapshot status checked, sha256 written beside it"),
    Phase(OFFHOST, "Off-host copy", "local", _none,
          "streamed to the destination (a directory or a Prefect filesystem block); sha256 verified "
          "after the copy; then the cluster's newest N copies there are kept, older ones deleted"),
    Phase(RETENTION, "Retention", "parallel", _etcd,
          "on every reachable member: keep the newest N complete dated directories, delete the rest"),
)  # fmt: skip
"""The plan of backup-etcd (the snapshot phase runs on the member chosen at run time)."""


@dataclass(frozen=True)
class BackupSettings:
    """What this run does; set by the flow before the phases run (no secrets)."""

    name: str
    dir: str
    retention: int
    destination: Destination | None


def settings(session: Session) -> BackupSettings:
    value = session.memo[SETTINGS]
    assert isinstance(value, BackupSettings)
    return value


@host_phase_impl(HEALTH)
def check_health(session: Session, host: Host) -> PhaseOutcome:
    """Never fails for an unhealthy or unreachable member: that member is skipped, not the backup."""
    try:
        health = member_health(session.transport(host.name))
    except TransportError as exc:
        health = MemberHealth(False, f"unreachable: {exc.message}", reachable=False)
    return PhaseOutcome(HEALTH, host.name, note=encode_note(asdict(health)))


@host_phase_impl(SNAPSHOT)
def take_snapshot(session: Session, host: Host) -> PhaseOutcome:
    s = settings(session)
    t = session.transport(host.name)
    directory = f"{s.dir}/{s.name}"
    path = f"{directory}/{SNAPSHOT_FILE}"
    save = etcdctl_argv(command_timeout=SAVE_TIMEOUT)
    t.run(["sh", "-c", _SAVE, "capstan-save", s.dir, s.name, *save], sudo=True, timeout=SAVE_TIMEOUT + 60)
    try:
        status = snapshot_status(t, find_tool(t), path)
        digest, size = sha256_of(t, path), file_size(t, path)
        if digest is None or size is None:
            raise SnapshotError(f"{host.name}: {path} vanished after the snapshot")
    except BaseException:
        t.run(["rm", "-rf", "--", directory], sudo=True, check=False)
        raise
    meta = {
        "name": s.name,
        "member": host.etcd_name,
        "host": host.name,
        "path": path,
        "size": size,
        "revision": status.revision,
        "keys": status.total_keys,
        "hash": status.hash,
        "sha256": digest,
    }
    t.put(f"{directory}/{META_FILE}", json.dumps(meta, indent=1).encode() + b"\n", mode=0o600, sudo=True)
    t.put(f"{directory}/{SHA_FILE}", sha256_line(digest).encode(), mode=0o600, sudo=True)
    return PhaseOutcome(SNAPSHOT, host.name, changed=1, note=encode_note(meta))


def chosen_snapshot(session: Session) -> dict[str, object]:
    value = session.memo[CHOSEN]
    assert isinstance(value, dict)
    return value


def offhost_retention(session: Session) -> int:
    """Copies kept at the destination: ``spec.etcd.backup.offHostRetention``, else this run's retention."""
    configured = session.cluster.spec.etcd.backup.off_host_retention
    return settings(session).retention if configured is None else configured


@cluster_phase_impl(OFFHOST)
def copy_off_host(session: Session) -> list[PhaseOutcome]:
    """Stream the snapshot to the destination, read the copy back and compare its sha256; only then
    apply retention there (any error before this point leaves every older copy in place)."""
    s = settings(session)
    snap = chosen_snapshot(session)
    if s.destination is None:
        return [PhaseOutcome(OFFHOST, ORCHESTRATOR, note=encode_note({"location": None}))]
    store = open_store(s.destination)
    host, path, want = str(snap["host"]), str(snap["path"]), str(snap["sha256"])
    rel = snapshot_rel(session.cluster.name, s.name)
    t = session.transport(host)
    size = int(str(snap["size"]))
    digest = hashlib.sha256()
    store.write(rel, hashing(read_chunks(t, path, size), digest))
    if digest.hexdigest() != want:
        raise SnapshotError(
            f"{host}: {path} read back as sha256 {digest.hexdigest()[:16]}, its .sha256 says {want[:16]}"
        )
    store.write(snapshot_rel(session.cluster.name, s.name, SHA_FILE), [sha256_line(want).encode()])
    copied = sha256_of_store(store, rel)
    if copied != want:
        raise SnapshotError(f"{store.location(rel)}: the copy has sha256 {copied[:16]}, expected {want[:16]}")
    pruned = prune(store, session.cluster.name, offhost_retention(session), s.name)
    note = {
        "location": store.location(rel),
        "size": size,
        "store": store.label,
        "retention": pruned.as_dict(),
    }
    return [
        PhaseOutcome(
            OFFHOST, ORCHESTRATOR, changed=1 + len(pruned.removed), unchanged=max(0, len(pruned.kept) - 1),
            note=encode_note(note),
        )
    ]  # fmt: skip


@host_phase_impl(RETENTION)
def apply_retention(session: Session, host: Host) -> PhaseOutcome:
    """Delete old dated directories (and partial leftovers); list what is kept for the report."""
    s = settings(session)
    t = session.transport(host.name)
    found = list_snapshots(t, s.dir)
    victims = retention_victims(
        [x.name for x in found if x.complete], [x.name for x in found if not x.complete], s.retention, s.name
    )
    if victims:
        t.run(["rm", "-rf", "--", *(f"{s.dir}/{v}" for v in victims)], sudo=True)
    kept = [
        {
            "name": x.name,
            "path": f"{s.dir}/{x.name}/{SNAPSHOT_FILE}",
            "size": x.size,
            "sha256": x.sha256,
            "revision": x.meta.get("revision"),
            "keys": x.meta.get("keys"),
        }
        for x in found
        if x.complete and x.name not in victims
    ]
    note = encode_note({"removed": victims, "kept": kept})
    return PhaseOutcome(RETENTION, host.name, changed=len(victims), unchanged=len(kept), note=note)


def health_of(outcomes: list[PhaseOutcome]) -> list[tuple[str, MemberHealth]]:
    """The health phase's verdicts, in the order of the outcomes (spec order)."""
    return [(o.host, MemberHealth(**decode_note(o.note))) for o in outcomes]
