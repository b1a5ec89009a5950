"""restore-etcd: every member's data from one snapshot, as a new cluster, apiservers stopped around it.

The phases (``capstan.tasks.etcd.restore``): locate and verify the snapshot, stage it on every member
(sha256 and ``snapshot status`` checked there; a mismatch is refused naming the member, before anything
is stopped), stop the apiservers, stop etcd, restore each member's data dir with a new cluster token,
start the members together and wait for their health at the snapshot's revision, start the apiservers
and wait for ``/readyz``, check the membership, and only then remove the pre-restore data.

Every member must be reachable: each one's data is replaced. The run holds the cluster's lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

import capstan.tasks.etcd  # noqa: F401  (registers the phase implementations)
from capstan.errors import CapstanError
from capstan.flows.create import bounded_runner, summarize
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.plan.phases import PlannedPhase
from capstan.spec.models import Cluster
from capstan.tasks.etcd.common import note_of, remember, run_key
from capstan.tasks.etcd.model import decode_note, new_cluster_token, utc_stamp
from capstan.tasks.etcd.offhost import parse_destination
from capstan.tasks.etcd.restore import (
    DATA,
    LOCATE,
    RESTORE_PHASES,
    SETTINGS,
    SOURCE,
    STAGE,
    START_API,
    RestoreSettings,
)
from capstan.tasks.etcd.source import Source
from capstan.tasks.runner import PhaseOutcome, run_phase
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister


def restore_plan(cluster: Cluster) -> list[PlannedPhase]:
    """restore-etcd's phases with their hosts (for ``capstan restore --plan``)."""
    return [PlannedPhase(p, tuple(h.name for h in p.hosts(cluster))) for p in RESTORE_PHASES]


def run_restore(
    spec: str,
    *,
    snapshot: str | None = None,
    destination: str | None = None,
    health_timeout: float = 120.0,
    factory: TransportFactory = fabric_transport,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic."""
    source = resolve_spec(spec)  # the one place the spec is read: a cluster.yaml path or a spec block
    cluster = source.cluster
    if health_timeout <= 0:
        raise CapstanError(f"health_timeout: {health_timeout}: must be a positive number of seconds")
    configured = cluster.spec.etcd.backup.destination
    if destination is not None:
        dest = parse_destination(destination, "destination") if destination.strip() else None
    else:
        dest = parse_destination(configured) if configured else None
    when = now or datetime.now(UTC)
    settings = RestoreSettings(
        request=snapshot.strip() if snapshot and snapshot.strip() else None,
        destination=dest,
        dir=cluster.spec.etcd.backup.dir,
        stamp=utc_stamp(when),
        token=new_cluster_token(cluster.name, when),
        health_timeout=health_timeout,
    )
    with cluster_lock(cluster.name):
        session = register(
            Session(run_key("restore-etcd"), cluster, factory=factory, private_key=source.private_key)
        )
        session.memo[SETTINGS] = settings
        try:
            return _restore(session, cluster, settings)
        finally:
            unregister(session.key)


def _restore(session: Session, cluster: Cluster, settings: RestoreSettings) -> dict[str, Any]:
    outcomes: list[PhaseOutcome] = []
    for phase in RESTORE_PHASES:
        done = run_phase(phase, session)
        remember(session, done)
        outcomes += done
        if phase.id == LOCATE:
            src = Source(**decode_note(done[0].note))
            session.memo[SOURCE] = src
            print(
                f"restoring snapshot {src.name} from {src.label} (sha256 {src.sha256[:12]}, {src.size} bytes)"
            )
        elif phase.id == STAGE:
            for o in done:
                how = (
                    "copied, sha256 verified"
                    if decode_note(o.note).get("copied")
                    else "already there, sha256 matches"
                )
                print(f"{o.host}: {decode_note(o.note)['path']} ({how})")
        elif phase.id == DATA:
            print(
                f"etcd data restored on {', '.join(o.host for o in done)} with cluster token {settings.token}"
            )
    located = session.memo[SOURCE]
    assert isinstance(located, Source)
    src = located
    members = {
        h.name: {
            "data_dir": note_of(session, DATA, h.name)["data_dir"],
            "previous_removed": note_of(session, DATA, h.name)["previous"],
            "copied": bool(note_of(session, STAGE, h.name).get("copied")),
        }
        for h in cluster.etcd_hosts
    }
    first = note_of(session, STAGE, cluster.etcd_hosts[0].name)
    apiservers = {
        h.name: note_of(session, START_API, h.name).get("state", "none") for h in cluster.control_planes
    }
    summary = summarize(outcomes)
    summary.update(
        cluster=cluster.name,
        snapshot={
            "name": src.name,
            "from": src.label,
            "sha256": src.sha256,
            "size": src.size,
            "revision": first.get("revision"),
            "keys": first.get("keys"),
        },
        token=settings.token,
        members=members,
        apiservers=apiservers,
    )
    print(
        f"etcd restored from {src.name}: {len(members)} members healthy at revision {first.get('revision')}"
    )
    return summary


@flow(name="restore-etcd", task_runner=bounded_runner(), persist_result=True, log_prints=True)
def restore_etcd(
    spec: str, snapshot: str | None = None, destination: str | None = None, health_timeout: float = 120.0
) -> dict[str, Any]:
    """Restore every etcd member from one snapshot (default: the newest), as a new etcd cluster.

    Args:
        spec: the cluster: `block:<name>` or the absolute path of cluster.yaml on the worker.
        snapshot: a snapshot name (etcd-YYYYmmddTHHMMSSZ), `<host>:<path>` on an etcd host, or a
            path on the orchestrator; default: the newest off-host or on-host snapshot.
        destination: where off-host copies are (default: spec.etcd.backup.destination).
        health_timeout: seconds each member may take to become healthy after the start.
    """
    return run_restore(spec, snapshot=snapshot, destination=destination, health_timeout=health_timeout)
