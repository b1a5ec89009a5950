"""backup-etcd: one verified snapshot, kept on its member under retention and copied off-host.

What Kubespray does only as a side effect of restarting etcd, as a flow the nightly deployment runs:

1. every member's own health (``endpoint health``/``status`` on its local endpoint); an unhealthy or
   unreachable member is skipped and named, the backup goes on while one member is healthy;
2. a snapshot on the first healthy follower (the leader only when it is the only healthy member), in
   a new dated directory, with ``snapshot status`` checked and a ``.sha256`` beside it;
3. the off-host copy (a directory on the orchestrator or a Prefect filesystem block), read back and
   compared by sha256; once it matches, the cluster's copies there beyond the newest N are deleted
   (``spec.etcd.backup.offHostRetention``, else the retention), never the one just written;
4. retention on every reachable member: the newest N complete dated directories stay.

The run holds the cluster's lock; it prints where each copy went and what was deleted where, and leaves
a table artifact (``etcd-backup-<cluster>``) listing the snapshots kept on every member and off-host,
and those this run removed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from prefect import flow

import capstan.tasks.etcd  # noqa: F401  (registers the phase implementations)
from capstan.errors import CapstanError
from capstan.flows.create import bounded_runner, summarize
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.plan.phases import Phase, PlannedPhase
from capstan.spec.models import Cluster
from capstan.tasks.etcd.backup import (
    BACKUP_PHASES,
    CHOSEN,
    SETTINGS,
    BackupSettings,
    health_of,
)
from capstan.tasks.etcd.common import run_key
from capstan.tasks.etcd.model import choose_member, decode_note, snapshot_name
from capstan.tasks.etcd.offhost import Destination, open_store, parse_destination, snapshot_rel
from capstan.tasks.runner import PhaseOutcome, run_phase
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister

HEALTH_PHASE, SNAPSHOT_PHASE, OFFHOST_PHASE, RETENTION_PHASE = BACKUP_PHASES


def backup_plan(cluster: Cluster) -> list[PlannedPhase]:
    """backup-etcd's phases with the hosts each may run on (for ``capstan backup --plan``)."""
    return [PlannedPhase(p, tuple(h.name for h in p.hosts(cluster))) for p in BACKUP_PHASES]


def _on(phase: Phase, hosts: list[str]) -> Phase:
    """The phase, run on hosts chosen at run time (the healthy member, the reachable members)."""
    return replace(phase, hosts=lambda c: [c.host(h) for h in hosts])


def _destination(cluster: Cluster, override: str | None) -> Destination | None:
    if override is not None:
        return parse_destination(override, "destination") if override.strip() else None
    configured = cluster.spec.etcd.backup.destination
    return parse_destination(configured) if configured else None


def _row(host: str, name: str, path: str, state: str, off_host: str = "", **meta: Any) -> dict[str, Any]:
    """One table row; every row has the same columns (a Prefect table artifact needs that)."""
    row = {"host": host, "snapshot": name, "path": path, "size": None, "revision": None, "keys": None,
           "sha256": "", "off-host": off_host, "state": state}  # fmt: skip
    row.update(meta)
    return row


def _table(cluster: Cluster, retention: list[PhaseOutcome], dest: Destination | None, current: dict[str, Any],
           location: str | None, pruned: dict[str, Any] | None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per snapshot kept on a member (with where its off-host copy is, when known), per copy
    kept only off-host, and per snapshot this run removed (``state``: kept or removed)."""
    store = open_store(dest) if dest is not None else None
    offhost = set(store.snapshots(cluster.name) or []) if store is not None else set()
    rows = []
    on_members: set[str] = set()
    for o in retention:
        note = decode_note(o.note)
        for kept in note.get("kept", []):
            name = kept["name"]
            if name == current.get("name") and location:
                where = location
            elif store is not None and name in offhost:
                where = store.location(snapshot_rel(cluster.name, name))
            else:
                where = ""
            on_members.add(name)
            rows.append(_row(o.host, name, kept["path"], "kept", where, size=kept["size"],
                             revision=kept.get("revision"), keys=kept.get("keys"),
                             sha256=(kept.get("sha256") or "")[:12]))  # fmt: skip
        for name in note.get("removed", []):
            rows.append(_row(o.host, name, f"{cluster.spec.etcd.backup.dir}/{name}", "removed"))
    if store is not None and pruned:
        for name in sorted(offhost - on_members):
            path = store.location(snapshot_rel(cluster.name, name))
            rows.append(_row("off-host", name, path, "kept", path))
        for name in pruned.get("removed", []):
            rows.append(
                _row("off-host", name, store.location(snapshot_rel(cluster.name, name, "")), "removed")
            )
    return rows


def _report_pruned(pruned: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """What off-host retention did, as (notes, warnings): deletions are notes; a skip, a directory
    left behind or a failed deletion is a warning (shown even where the console hides INFO logs, as
    under ``capstan backup``), because then the destination keeps growing."""
    if not pruned:
        return [], []
    where, keep = pruned["where"], pruned["keep"]
    notes, warnings = [], []
    if pruned.get("removed"):
        notes.append(f"off-host {where}: removed {', '.join(pruned['removed'])} (keeping the newest {keep})")
    if pruned.get("left"):
        warnings.append(
            f"off-host {where}: deleted the snapshot files of {', '.join(pruned['left'])} but kept the "
            "directories: they hold files capstan did not write"
        )
    if pruned.get("skipped"):
        warnings.append(f"off-host retention skipped: {pruned['skipped']}")
    warnings += [f"off-host retention at {where} failed for {e}" for e in pruned.get("errors", [])]
    return notes, warnings


def _warn(line: str) -> None:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().warning(line)
    except MissingContextError:  # called outside a flow run (a test of the flow logic)
        print(line)


def run_backup(
    spec: str,
    *,
    retention: int | None = None,
    destination: str | None = None,
    factory: TransportFactory = fabric_transport,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic."""
    source = resolve_spec(spec)  # the one place the spec is read: a cluster.yaml path or a spec block
    cluster = source.cluster
    keep = cluster.spec.etcd.backup.retention if retention is None else retention
    if keep < 1:
        raise CapstanError(f"retention: {keep}: at least one snapshot must be kept")
    dest = _destination(cluster, destination)
    with cluster_lock(cluster.name):
        session = register(
            Session(run_key("backup-etcd"), cluster, factory=factory, private_key=source.private_key)
        )
        try:
            name = snapshot_name(now or datetime.now(UTC))
            session.memo[SETTINGS] = BackupSettings(name, cluster.spec.etcd.backup.dir, keep, dest)
            return _backup(session, cluster, dest)
        finally:
            unregister(session.key)


def _backup(session: Session, cluster: Cluster, dest: Destination | None) -> dict[str, Any]:
    settings = session.memo[SETTINGS]
    assert isinstance(settings, BackupSettings)
    outcomes = run_phase(HEALTH_PHASE, session)
    verdicts = health_of(outcomes)
    skipped = {host: h.error for host, h in verdicts if not h.healthy}
    for host, why in skipped.items():
        print(f"skipping etcd member {host}: {why}")
    chosen = choose_member(verdicts)
    if chosen is None:
        raise CapstanError(
            "no healthy etcd member to snapshot: " + "; ".join(f"{h}: {e}" for h, e in skipped.items())
        )
    snap = run_phase(_on(SNAPSHOT_PHASE, [chosen]), session)
    outcomes += snap
    meta = decode_note(snap[0].note)
    settings = replace(settings, name=str(meta["name"]))  # a retried run keeps the snapshot it took
    session.memo[SETTINGS], session.memo[CHOSEN] = settings, meta
    print(
        f"snapshot {meta['name']} of member {meta['member']}: {chosen}:{meta['path']} ({meta['size']} bytes, "
        f"revision {meta['revision']}, {meta['keys']} keys, sha256 {str(meta['sha256'])[:12]})"
    )
    off = run_phase(OFFHOST_PHASE, session)
    outcomes += off
    off_note = decode_note(off[0].note)
    location, pruned = off_note.get("location"), off_note.get("retention")
    if location:
        print(f"off-host copy: {location} (sha256 verified)")
    else:
        print("off-host copy: none (set spec.etcd.backup.destination, or pass a destination)")
    notes, warnings = _report_pruned(pruned)
    for line in notes:
        print(line)
    for line in warnings:
        _warn(line)
    reachable = [h for h, v in verdicts if v.reachable]
    kept = run_phase(_on(RETENTION_PHASE, reachable), session)
    outcomes += kept
    removed = {o.host: decode_note(o.note).get("removed", []) for o in kept}
    for host, names in removed.items():
        if names:
            print(f"{host}: removed {', '.join(names)} (keeping the newest {settings.retention})")
    rows = _table(cluster, kept, dest, meta, location, pruned)
    _artifact(cluster, rows, notes + warnings)
    summary = summarize(outcomes)
    summary.update(
        cluster=cluster.name,
        snapshot={
            k: meta[k]
            for k in ("name", "host", "member", "path", "size", "revision", "keys", "hash", "sha256")
        },
        copies=[f"{chosen}:{meta['path']}", *([location] if location else [])],
        offhost=location,
        removed=removed,
        offhost_retention=pruned,
        skipped=skipped,
        snapshots=rows,
    )
    return summary


def _artifact(cluster: Cluster, rows: list[dict[str, Any]], offhost: list[str]) -> None:
    from prefect.artifacts import create_table_artifact

    notes = "".join(f"\n\n{line}" for line in offhost)
    create_table_artifact(
        table=rows,
        key=f"etcd-backup-{cluster.name}",
        description=f"etcd snapshots of cluster {cluster.name}: kept on its members and off-host, and "
        f"removed by this run (newest last){notes}",
    )


@flow(name="backup-etcd", task_runner=bounded_runner(), persist_result=True, log_prints=True)
def backup_etcd(spec: str, retention: int | None = None, destination: str | None = None) -> dict[str, Any]:
    """Snapshot etcd from one healthy member, keep the newest N on the members, copy it off-host.

    Args:
        spec: the cluster: `block:<name>` (a capstan cluster spec block) or the absolute path of
            cluster.yaml on the worker.
        retention: how many dated snapshots each member keeps (default: spec.etcd.backup.retention).
        destination: off-host copy, a directory or `block:<slug>/<name>` (default:
            spec.etcd.backup.destination; "" for none).
    """
    return run_backup(spec, retention=retention, destination=destination)
