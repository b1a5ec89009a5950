"""scale-cluster: add every host of the spec that is not part of the cluster yet.

Membership is read from the cluster (``capstan.tasks.scale.members``): the API's Node list through the
first control plane, etcd's ``member list`` and the etcd endpoints of the kubeadm-config ConfigMap. The
phases then run only where something must change (``capstan.tasks.scale.model``): facts, pki,
artifacts, os-prep, runtime and api-lb on the new hosts; ``etcd-add`` for each new etcd member, one at
a time (``capstan.tasks.membership.etcd_add``: added as a learner, started, promoted, removed again
if it does not come up); ``etcd-servers`` on every control plane, one at a time, when the etcd
membership changed (``capstan.tasks.membership.etcd_servers``: each apiserver's ``--etcd-servers``,
the kubeadm config and the kubeadm-config ConfigMap); api-lb also on the existing hosts whose balancer
backends change (when a control plane is added), then ``cp-join`` one new control plane at a time and
``worker-join`` for the new workers in parallel (after the cluster's bootstrap token is made valid
again: create gives it a short TTL), and finally a wait for the new Nodes to be Ready. Existing hosts
that need no change are not contacted (only read from: the first control plane, for the admin
credentials, CA and secrets, and one etcd member for the member list and membership changes), so an
unreachable worker does not block a scale-out. The CA and cluster secrets are the existing cluster's
(``material.roots`` reads them from the first control plane).

etcd members that the spec does not name are refused before anything changes (scale only adds).

An existing host that must change (its balancer, when a control plane is added) and cannot be reached
fails the api-lb phase naming it, before any join; the summary lists the hosts added, those whose
balancer was updated (``lb_refreshed``), the etcd members added (``etcd_added``), the control planes
whose apiserver ``--etcd-servers`` changed (``etcd_servers_changed``), every host touched and those
left alone (``untouched``). The run holds the cluster's lock throughout.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import capstan.tasks.create  # registers the create phase implementations
import capstan.tasks.scale  # noqa: F401  (registers join-token and nodes-ready)
from capstan.flows.create import bounded_runner, summarize
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.spec.models import Cluster
from capstan.tasks.etcd.common import run_key
from capstan.tasks.membership.etcd_add import ETCD_ADD_PHASE
from capstan.tasks.membership.etcd_servers import ETCD_SERVERS_PHASE, configmap_endpoints
from capstan.tasks.runner import PhaseOutcome, run_phase
from capstan.tasks.scale.members import etcd_members, registered_nodes
from capstan.tasks.scale.model import EtcdMember, ScalePlan, plan_scale, refuse_etcd, scale_phases
from capstan.tasks.scale.ready import NEW_NODES, READY_PHASE
from capstan.tasks.scale.token import TOKEN_PHASE
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister

JOINS = ("cp-join", "worker-join")


def _members(session: Session, cluster: Cluster, nodes: set[str]) -> list[EtcdMember]:
    """etcd's member list, asked of etcd hosts that are already cluster nodes first (they must exist)."""
    etcd = cluster.etcd_hosts
    if not etcd:
        return []
    ordered = [h.name for h in etcd if h.name in nodes] + [h.name for h in etcd if h.name not in nodes]
    return etcd_members(session, ordered)


def membership(session: Session) -> ScalePlan:
    cluster = session.cluster
    nodes = registered_nodes(session)
    members = _members(session, cluster, nodes)
    refuse_etcd(cluster, members)
    return plan_scale(cluster, nodes, members, configmap_endpoints(session))


def describe(plan: ScalePlan) -> list[str]:
    """The plan in a few lines: what is added, which existing hosts change and why, what is left alone."""
    lines = []
    if plan.new_control_planes:
        lines.append(f"adding control planes (one at a time): {', '.join(plan.new_control_planes)}")
    if plan.new_workers:
        lines.append(f"adding workers: {', '.join(plan.new_workers)}")
    if plan.new_etcd:
        lines.append(
            f"adding etcd members (one at a time, as learners, then promoted): {', '.join(plan.new_etcd)}"
        )
    if plan.etcd_refresh:
        lines.append(
            "existing control planes whose apiserver --etcd-servers is brought to the spec's etcd hosts "
            f"(one at a time, only where it differs): {', '.join(plan.etcd_refresh)}"
        )
    if plan.lb_refresh:
        lines.append(f"existing hosts whose API load balancer backends change: {', '.join(plan.lb_refresh)}")
    if not plan.new_hosts and not plan.etcd_servers:
        lines.append("every host of the spec is already part of the cluster: nothing to add")
    if plan.untouched:
        lines.append(f"existing hosts left untouched: {', '.join(plan.untouched)}")
    return lines


def run_scale(
    spec: str, *, dry_run: bool = False, factory: TransportFactory = fabric_transport
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic."""
    source = resolve_spec(spec)
    cluster = source.cluster
    outcomes: list[PhaseOutcome] = []
    with cluster_lock(cluster.name):
        session = register(
            Session(
                run_key("scale-cluster"),
                cluster,
                factory=factory,
                dry_run=dry_run,
                private_key=source.private_key,
            )
        )
        try:
            plan = membership(session)
            for line in describe(plan):
                print(line)
            if plan.new_hosts or plan.etcd_servers:
                phases = scale_phases(cluster, plan, (ETCD_ADD_PHASE, ETCD_SERVERS_PHASE))
                session.phases = tuple(phases)  # a gather also asks what later phases will
                for phase in phases:
                    if phase.id in JOINS and not any(o.phase == TOKEN_PHASE.id for o in outcomes):
                        outcomes += run_phase(TOKEN_PHASE, session)
                    outcomes += run_phase(phase, session)
                session.memo[NEW_NODES] = list(plan.new_nodes)
                outcomes += run_phase(READY_PHASE, session)
        finally:
            unregister(session.key)
    local = (TOKEN_PHASE.id, READY_PHASE.id)  # API work, not a change on a host: reported apart
    summary = summarize([o for o in outcomes if o.phase not in local])
    summary["api"] = {o.phase: {"changed": o.changed, "note": o.note} for o in outcomes if o.phase in local}
    summary.update(
        cluster=cluster.name,
        added=list(plan.new_hosts),
        control_planes_added=list(plan.new_control_planes),
        workers_added=list(plan.new_workers),
        lb_refreshed=list(plan.lb_refresh),
        etcd_added=list(plan.new_etcd),
        etcd_servers_changed=[o.host for o in outcomes if o.phase == ETCD_SERVERS_PHASE.id and o.changed],
        touched=list(plan.touched),
        untouched=list(plan.untouched),
    )
    for host, info in summary["hosts"].items():
        print(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
    return summary


@flow(name="scale-cluster", task_runner=bounded_runner(), persist_result=True, log_prints=True)
def scale_cluster(spec: str, dry_run: bool = False) -> dict[str, Any]:
    """Add every host of the spec that is not part of the cluster yet (workers, control planes, etcd).

    Args:
        spec: the cluster: `block:<name>` (a capstan cluster spec block) or the absolute path of
            cluster.yaml on the worker.
        dry_run: read membership and report what would change, changing nothing.
    """
    return run_scale(spec, dry_run=dry_run)
