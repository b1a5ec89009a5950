"""upgrade-cluster: Kubespray's upgrade-cluster.yml as a Prefect flow, one minor version at a time.

Before anything changes (``preflight``): the target must be a pinned version, no node and not the
control plane (kubeadm-config) may be newer than it (no downgrade) or two minors behind (no skipped
minor); those rules have no override. Every Node of the spec must be Ready and every etcd member
healthy, unless ``force`` (which prints what it overrides). Each node's binaries are checked against
the target's sha256, so nodes already done are known.

Then, in this order, holding the cluster's lock throughout:

1. an etcd snapshot, exactly as backup-etcd takes it (healthy follower, verified, retention, off-host
   copy when configured);
2. the etcd members one at a time when the etcd pin differs between the two versions (otherwise this
   is said and skipped);
3. the control planes one at a time (``kubeadm upgrade apply`` on the first, ``upgrade node`` on the
   others; ``capstan.tasks.upgrade.steps``);
4. the workers in batches of ``spec.upgrade.workerBatch`` (a count or a percent of the workers, at
   least one), the nodes of a batch in parallel.

A failure stops the run: the failed node is uncordoned, nodes already upgraded stay upgraded, and a
re-run (or a Prefect retry) continues with what is left, because each node is skipped when its Node
reports the target kubelet and its binaries match. Every step prints ``upgrade: <step> <host>``; the
summary returns that list (``steps``) with per-host change counts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow

import capstan.tasks.etcd
import capstan.tasks.upgrade  # noqa: F401  (registers the upgrade steps)
from capstan.flows.create import bounded_runner, summarize
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.plan.phases import Concurrency, Phase
from capstan.spec.models import Cluster
from capstan.tasks.create import _kube
from capstan.tasks.etcd.backup import BACKUP_PHASES, health_of
from capstan.tasks.etcd.common import run_key
from capstan.tasks.runner import PhaseOutcome, run_phase
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister
from capstan.tasks.upgrade.plan import (
    NodeState,
    UpgradePlan,
    UpgradeRefused,
    Version,
    check_versions,
    pauses,
    plan_upgrade,
    target_version,
)
from capstan.tasks.upgrade.state import SETTINGS, health_problems, read_nodes, record, steps
from capstan.tasks.upgrade.state import cluster_version as read_cluster_version
from capstan.tasks.upgrade.steps import CHECK_PHASE, ETCD_PHASE, NODE_PHASE, UpgradeSettings, stale_of
from capstan.versions import default_kubernetes_version

HEALTH_PHASE = BACKUP_PHASES[0]
CONTROL_PLANE = "control plane (kubeadm-config)"


def with_version(cluster: Cluster, version: Version) -> Cluster:
    """The spec as it will be after the upgrade: the same cluster at ``version`` (drives the artifacts)."""
    kube = cluster.spec.kubernetes.model_copy(update={"version": str(version)})
    return cluster.model_copy(update={"spec": cluster.spec.model_copy(update={"kubernetes": kube})})


def _on(phase: Phase, hosts: list[str], concurrency: Concurrency | None = None) -> Phase:
    """The phase on hosts chosen at run time (one control plane, one batch), with its concurrency."""
    return replace(
        phase, hosts=lambda c: [c.host(h) for h in hosts], concurrency=concurrency or phase.concurrency
    )


def preflight(session: Session, target: Version, force: bool) -> tuple[UpgradePlan, list[PhaseOutcome]]:
    """Version rules (never overridable), cluster health (``force`` overrides), what is left to do."""
    cluster = session.cluster
    access = _kube.admin_access(session)
    nodes = read_nodes(access)
    current = read_cluster_version(access)
    running = {CONTROL_PLANE: current or ""}
    running.update({h.name: nodes[h.name].kubelet for h in cluster.nodes if h.name in nodes})
    check_versions(target, running)
    outcomes = run_phase(HEALTH_PHASE, session) if cluster.etcd_hosts else []
    problems = health_problems(nodes, [h.name for h in cluster.nodes])
    problems += [
        f"etcd member {host}: {h.error or 'unhealthy'}" for host, h in health_of(outcomes) if not h.healthy
    ]
    if problems and not force:
        raise UpgradeRefused(
            "upgrade refused, the cluster is not healthy: "
            + "; ".join(problems)
            + " (--force overrides this)"
        )
    for problem in problems:
        print(f"--force: going on although {problem}")
    checked = run_phase(CHECK_PHASE, session)
    states = [
        NodeState(o.host, nodes[o.host].kubelet if o.host in nodes else "", not stale_of(o)) for o in checked
    ]
    return plan_upgrade(cluster, target, states, current), outcomes + checked


def _approve(names: list[str], enabled: bool, suffix: str = "") -> None:
    """``await_approval("upgrade <node>")`` per node; a second question about a node needs its own
    text (``suffix``): Prefect keeps a run's pause keys, so the same text would count as answered."""
    if not enabled:
        return
    from capstan.flows.approval import await_approval

    for name in names:
        await_approval(f"upgrade {name}{suffix}")


def _snapshot(session: Session) -> list[PhaseOutcome]:
    """backup-etcd's own sequence in this run's session (the cluster lock is already held)."""
    from capstan.flows.backup import _backup, _destination
    from capstan.tasks.etcd.backup import SETTINGS as BACKUP_SETTINGS
    from capstan.tasks.etcd.backup import BackupSettings
    from capstan.tasks.etcd.model import snapshot_name

    cluster = session.cluster
    backup = cluster.spec.etcd.backup
    dest = _destination(cluster, None)
    session.memo[BACKUP_SETTINGS] = BackupSettings(
        snapshot_name(datetime.now(UTC)), backup.dir, backup.retention, dest
    )
    result = _backup(session, cluster, dest)
    snap = result["snapshot"]
    record(session, "snapshot", str(snap["host"]))
    session.memo["upgrade:snapshot"] = f"{snap['host']}:{snap['path']}"
    return [
        PhaseOutcome(phase, host, info["changed"], info["unchanged"], info["seconds"])
        for host, h in result["hosts"].items()
        for phase, info in h["phases"].items()
    ]


def _upgrade(session: Session, target: Version, force: bool, before: bool, after: bool) -> dict[str, Any]:
    plan, outcomes = preflight(session, target, force)
    for line in plan.describe():
        print(line)
    if not plan.pending and not plan.etcd_changes:
        print(f"every node is at {target.v}: nothing to do")
    else:
        if session.cluster.etcd_hosts:
            outcomes += _snapshot(session)
        if plan.etcd_changes:
            outcomes += run_phase(_on(ETCD_PHASE, list(plan.etcd_hosts)), session)
        else:
            record(session, "etcd", "skipped")
        done = " done" if before else ""
        for cp in plan.control_planes:
            _approve([cp], before)
            outcomes += run_phase(_on(NODE_PHASE, [cp], "serial"), session)
            _approve([cp], after, done)
        for batch in plan.worker_batches:
            _approve(list(batch), before)
            outcomes += run_phase(_on(NODE_PHASE, list(batch), "parallel"), session)
            _approve(list(batch), after, done)
    summary = summarize(outcomes)
    summary.update(
        to_version=str(target),
        upgraded=list(plan.pending),
        already=list(plan.done),
        control_planes=list(plan.control_planes),
        worker_batches=[list(b) for b in plan.worker_batches],
        etcd="upgraded" if plan.etcd_changes else f"unchanged ({plan.etcd_to})",
        snapshot=session.memo.get("upgrade:snapshot"),
        steps=steps(session),
    )
    return summary


def run_upgrade(
    spec: str,
    *,
    to_version: str = "",
    force: bool = False,
    pause: str | None = None,
    factory: TransportFactory = fabric_transport,
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic."""
    source = resolve_spec(spec)
    spec_cluster = source.cluster
    spec_version = spec_cluster.spec.kubernetes.version or default_kubernetes_version()
    target = target_version(to_version or spec_version)
    before, after = pauses(spec_cluster.spec.upgrade, pause)
    cluster = with_version(spec_cluster, target)
    if spec_version != str(target):
        print(
            f"note: spec.kubernetes.version is {spec_version}; set it to {target} "
            "after this upgrade, or a later `capstan create` would install the old binaries again"
        )
    with cluster_lock(cluster.name):
        session = register(
            Session(run_key("upgrade-cluster"), cluster, factory=factory, private_key=source.private_key)
        )
        session.memo[SETTINGS] = UpgradeSettings(target, cluster.control_planes[0].name)
        try:
            summary = _upgrade(session, target, force, before, after)
        finally:
            unregister(session.key)
    summary["cluster"] = cluster.name
    for host, info in summary["hosts"].items():
        print(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
    return summary


@flow(name="upgrade-cluster", task_runner=bounded_runner(), persist_result=True, log_prints=True)
def upgrade_cluster(
    spec: str,
    to_version: str = "",
    force: bool = False,
    pause: Literal["none", "before-node", "after-node"] | None = None,
) -> dict[str, Any]:
    """Upgrade the cluster's Kubernetes by one minor (or patch) version, node by node, draining each.

    Args:
        spec: the cluster: `block:<name>` (a capstan cluster spec block) or the absolute path of
            cluster.yaml on the worker.
        to_version: the Kubernetes version to upgrade to (one of `capstan versions`); empty: the
            spec's kubernetes.version.
        force: go on although a node is NotReady or an etcd member is unhealthy (version rules are
            never overridden).
        pause: wait for an approval `before-node` or `after-node` of every node, or `none`;
            empty: the spec's upgrade.pause.
    """
    return run_upgrade(spec, to_version=to_version, force=force, pause=pause)
