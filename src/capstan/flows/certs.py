"""certs-check and certs-renew: certificate expiry on every host, and renewal of the expiring leaves.

check reads every certificate and kubeconfig the PKI layout puts on each host (Kubernetes and etcd;
the kubeconfigs' embedded client certificates included), prints a table and leaves a table artifact
(``certs-<cluster>``), flagging what expires within the threshold (default spec.pki.renewWithinDays).

renew keeps the CAs and the service-account key and, host by host (etcd members first, then control
planes, then the rest), re-issues the leaves that expire within the threshold (or are otherwise stale,
e.g. a SAN was added), writes only those files, and restarts what reads them: the etcd member (only
when every member is healthy, refusing otherwise before writing anything; then its own health is
waited for), then the control-plane static pods
(waiting for ``/readyz``). One host at a time keeps etcd's quorum and an apiserver serving. Finally every
member's health and every apiserver's ``/readyz`` are checked, and the check table is taken again.

Both hold the cluster's lock. No key material reaches a log, a result or an artifact.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow

from capstan.errors import CapstanError
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.plan.material import pki_inputs
from capstan.spec.models import Cluster
from capstan.tasks.certs import remote
from capstan.tasks.certs.model import (
    ETCD,
    STATIC_PODS,
    CertRow,
    cert_paths,
    check_rows,
    key_paths,
    plan_host,
    renew_order,
)
from capstan.tasks.etcd.common import run_key
from capstan.tasks.material import read_files
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister

RESTART_TIMEOUT = 180.0


def _within(cluster: Cluster, within_days: int | None) -> timedelta:
    days = cluster.spec.pki.renew_within_days if within_days is None else within_days
    if days < 0:
        raise CapstanError(f"within: {days}: must be zero or more days")
    return timedelta(days=days)


def _collect(session: Session) -> dict[str, dict[str, bytes]]:
    inputs = pki_inputs(session.cluster)
    return {h.name: read_files(session, h.name, cert_paths(inputs, h.name)) for h in session.cluster.hosts}


def _artifact(cluster: Cluster, rows: list[CertRow], within: timedelta, what: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=[r.as_dict() for r in rows],
        key=f"certs-{cluster.name}",
        description=f"{what}: certificates of cluster {cluster.name}, soonest expiry first "
        f"(RENEW: within {within.days} days)",
    )


def print_table(rows: list[CertRow], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("host", "path", "subject", "kind", "not_after", "days_left", "status"):
        table.add_column(col)
    for r in rows:
        d = r.as_dict()
        style = "red" if r.flagged else None
        table.add_row(*(str(d[c]) for c in d), style=style)
    Console(width=200).print(table)


def _summary(rows: list[CertRow]) -> dict[str, Any]:
    return {
        "certificates": [r.as_dict() for r in rows],
        "flagged": [f"{r.host}:{r.path}" for r in rows if r.flagged],
    }


def run_check(
    spec: str, *, within_days: int | None = None, factory: TransportFactory = fabric_transport,
    now: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The body of certs-check (another transport factory for tests of the flow logic)."""
    source = resolve_spec(spec)
    cluster = source.cluster
    within = _within(cluster, within_days)
    with cluster_lock(cluster.name):
        session = register(
            Session(run_key("certs-check"), cluster, factory=factory, private_key=source.private_key)
        )
        try:
            rows = check_rows(_collect(session), now or datetime.now(UTC), within)
        finally:
            unregister(session.key)
    print_table(rows, f"certificates of {cluster.name} (flagged: within {within.days} days)")
    _artifact(cluster, rows, within, "check")
    return {"cluster": cluster.name, "within_days": within.days, **_summary(rows)}


def _verify(session: Session) -> None:
    for h in session.cluster.etcd_hosts:
        remote.wait_etcd_healthy(session, h, RESTART_TIMEOUT, f"{h.name}: etcd health")
    for h in session.cluster.control_planes:
        remote.wait_ready(session, h, RESTART_TIMEOUT)


def _renew_host(session: Session, name: str, roots: dict[str, bytes], now: datetime,
                within: timedelta) -> dict[str, Any]:  # fmt: skip
    inputs = pki_inputs(session.cluster)
    host = session.host(name)
    paths = cert_paths(inputs, name) + key_paths(inputs, name)
    existing = read_files(session, name, paths)
    plan = plan_host(inputs, roots, name, existing, now, within)
    if host.has("control-plane"):
        remote.put_back_manifests(session, host, STATIC_PODS)  # an interrupted run's leftovers
    started = time.monotonic()
    if plan.files:
        if ETCD in plan.restarts:  # restarting this member must not cost the quorum: refuse at once
            for member in session.cluster.etcd_hosts:
                try:
                    remote.etcd_healthy(session, member)
                except CapstanError as exc:
                    raise CapstanError(
                        f"{exc}; not restarting the etcd member on {name} (its certificates are left as "
                        "they were): every member must be healthy first"
                    ) from None
        remote.write_files(session, host, plan.files)
        for path in plan.files:
            print(f"{name}: renewed {path} ({plan.reasons[path]})")
        for component in plan.restarts:
            if component == ETCD:
                remote.restart_etcd(session, host, RESTART_TIMEOUT)
                remote.update_etcd_record(session, host, plan.files)
                print(f"{name}: etcd restarted, member healthy")
            else:
                remote.restart_static_pod(session, host, component, RESTART_TIMEOUT)
                print(f"{name}: {component} restarted and serving")
    for path, why in plan.skipped.items():
        print(f"{name}: {path} not renewed: {why}")
    return {
        "changed": len(plan.files),
        "renewed": sorted(plan.files),
        "reasons": plan.reasons,
        "restarted": list(plan.restarts),
        "skipped": plan.skipped,
        "seconds": round(time.monotonic() - started, 1),
    }


def run_renew(
    spec: str, *, within_days: int | None = None, factory: TransportFactory = fabric_transport,
    now: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The body of certs-renew (another transport factory for tests of the flow logic)."""
    source = resolve_spec(spec)
    cluster = source.cluster
    within = _within(cluster, within_days)
    when = now or datetime.now(UTC)
    with cluster_lock(cluster.name):
        session = register(
            Session(run_key("certs-renew"), cluster, factory=factory, private_key=source.private_key)
        )
        try:
            roots = remote.read_roots(session)
            order = renew_order((h.name, h.has("etcd"), h.has("control-plane")) for h in cluster.hosts)
            hosts = {name: _renew_host(session, name, roots, when, within) for name in order}
            _verify(session)
            rows = check_rows(_collect(session), datetime.now(UTC), within)
        finally:
            unregister(session.key)
    print_table(rows, f"certificates of {cluster.name} after renewal")
    _artifact(cluster, rows, within, "after renewal")
    renewed = sum(h["changed"] for h in hosts.values())
    print(
        f"renewed {renewed} files on {sum(1 for h in hosts.values() if h['changed'])} hosts; cluster healthy"
    )
    return {
        "cluster": cluster.name,
        "within_days": within.days,
        "hosts": hosts,
        "changed": renewed,
        **_summary(rows),
    }


@flow(name="certs-check", persist_result=True, log_prints=True)
def certs_check(spec: str, within_days: int | None = None) -> dict[str, Any]:
    """Expiry of every certificate on every host, flagging those within the threshold.

    Args:
        spec: the cluster: `block:<name>` or the absolute path of cluster.yaml on the worker.
        within_days: flag certificates expiring within this many days (default: spec.pki.renewWithinDays).
    """
    return run_check(spec, within_days=within_days)


@flow(name="certs-renew", persist_result=True, log_prints=True)
def certs_renew(spec: str, within_days: int | None = None) -> dict[str, Any]:
    """Re-issue the leaf certificates expiring within the threshold, keep the CAs, restart one node at a time.

    Args:
        spec: the cluster: `block:<name>` or the absolute path of cluster.yaml on the worker.
        within_days: renew certificates expiring within this many days (default: spec.pki.renewWithinDays).
    """
    return run_renew(spec, within_days=within_days)
