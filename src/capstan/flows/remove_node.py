"""remove-node: take one host out of a running cluster, and fix up the hosts that referred to it.

The spec still lists the host; what stays is the spec without it (``tasks.remove.model``), and every
fix-up renders from that remaining cluster in a session of its own, so the API is reached through a
control plane that stays and etcd through a member that stays. In order:

1. read the cluster: the Node list (through the remaining first control plane) and, when the host has
   the etcd role, the member list and each member's health (through a remaining member); then decide,
   refusing before any change: an unknown host, the last control plane, a removal that breaks etcd
   quorum, a host that cannot be reached without ``--unreachable``;
2. when the host is the first control plane: the cluster secrets go to the new first one
   (``remove-handover``);
3. drain through the API (PDB-aware evictions; a blocked drain uncordons and fails naming the pods);
4. ``--etcd-servers`` of every remaining control plane set to the remaining etcd hosts (when it had the
   etcd role; the shared ``etcd-servers`` phase, one control plane at a time), before the member goes,
   so no apiserver is left pointing at a removed member;
5. ``member remove`` of its etcd member (found by peer URL);
6. the reset phase on that one host (everything capstan installed there is removed);
7. delete the Node;
8. the API load balancers that had it as a backend (when it was a control plane): create's ``api-lb``
   on those hosts, rendered from the remaining control planes.

``--unreachable`` (a dead host): no drain, no reset, no SSH to it at all; the member is removed, the
Node deleted (its pods go with it), the other hosts fixed up. A re-run converges: a Node or member that
is already gone is skipped, the reset and fix-ups change nothing. The run holds the cluster's lock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow

import capstan.tasks.create  # registers api-lb
import capstan.tasks.remove  # registers the remove phases
import capstan.tasks.reset  # noqa: F401  (registers the reset phase)
from capstan.errors import CommandFailed, TransportError
from capstan.flows.create import bounded_runner, summarize
from capstan.flows.lock import cluster_lock
from capstan.flows.reset import reset_phase_on
from capstan.flows.source import resolve_spec
from capstan.plan.phases import CREATE_PHASES, Phase
from capstan.spec.models import Cluster, Host
from capstan.tasks.create.report import write_admin_kubeconfig
from capstan.tasks.etcd.common import run_key
from capstan.tasks.membership.etcd_servers import ETCD_SERVERS_PHASE
from capstan.tasks.remove.model import (
    Member,
    RemovePlan,
    RemoveRefused,
    describe,
    find_host,
    plan_remove,
    refuse_by_spec,
    remaining_cluster,
)
from capstan.tasks.remove.phases import (
    DRAIN_PHASE,
    ETCD_VIA,
    HANDOVER_PHASE,
    MEMBER_PHASE,
    NODE_PHASE,
    PLAN,
    SECRETS,
)
from capstan.tasks.remove.remote import etcd_view, secrets_for_handover
from capstan.tasks.runner import PhaseOutcome, run_phase
from capstan.tasks.scale.members import registered_nodes
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister

API_PHASES = (DRAIN_PHASE.id, MEMBER_PHASE.id, NODE_PHASE.id)


def check_request(cluster: Cluster, node: str) -> None:
    """The refusals that need only the spec (unknown host, last control plane or etcd host)."""
    refuse_by_spec(cluster, find_host(cluster, node))


def _reachable(session: Session, node: str) -> None:
    try:
        session.transport(node).run(["true"], timeout=30)
    except (TransportError, CommandFailed) as exc:
        raise RemoveRefused(
            f"{node}: cannot be reached ({exc}); "
            "to remove a dead host without touching it, pass --unreachable"
        ) from None


def prepare(full: Session, rest: Session, node: str, unreachable: bool) -> RemovePlan:
    """Read the cluster, decide (refusing before any change), and leave what the phases need in memo."""
    cluster = full.cluster
    check_request(cluster, node)
    host = cluster.host(node)
    nodes = registered_nodes(rest)
    members: list[Member] = []
    health: dict[str, bool] = {}
    if host.has("etcd"):
        candidates = [h.name for h in rest.cluster.etcd_hosts]
        via, members, health = etcd_view(rest, candidates)
        rest.memo[ETCD_VIA] = via
    plan = plan_remove(cluster, node, unreachable=unreachable, nodes=nodes, members=members, health=health)
    if not unreachable:
        _reachable(full, node)
    if plan.handover:
        rest.memo[SECRETS] = secrets_for_handover(full, rest, node, plan.handover, unreachable=unreachable)
        rest.memo["secrets"] = rest.memo[SECRETS]  # what material.cluster_secrets would read from there
    rest.memo[PLAN] = plan
    return plan


def api_lb_on(names: tuple[str, ...]) -> Phase:
    """create's api-lb phase restricted to ``names`` (hosts of the remaining cluster)."""

    def hosts(c: Cluster) -> list[Host]:
        return [c.host(n) for n in names]

    return replace(next(p for p in CREATE_PHASES if p.id == "api-lb"), hosts=hosts)


def run_remove(
    spec: str,
    node: str,
    *,
    unreachable: bool = False,
    factory: TransportFactory = fabric_transport,
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic."""
    source = resolve_spec(spec)
    cluster = source.cluster
    check_request(cluster, node)
    key = run_key("remove-node")
    outcomes: list[PhaseOutcome] = []
    kubeconfig: str | None = None
    with cluster_lock(cluster.name):
        full = register(Session(f"{key}:full", cluster, factory=factory, private_key=source.private_key))
        rest = register(
            Session(
                f"{key}:rest",
                remaining_cluster(cluster, node),
                factory=factory,
                private_key=source.private_key,
            )
        )
        try:
            plan = prepare(full, rest, node, unreachable)
            for line in describe(plan):
                print(line)
            if plan.handover:
                outcomes += run_phase(HANDOVER_PHASE, rest)
            if plan.registered and not unreachable:
                outcomes += run_phase(DRAIN_PHASE, rest)
            if plan.etcd_fixup:  # before the member goes, so no apiserver is left pointing at it
                outcomes += run_phase(ETCD_SERVERS_PHASE, rest)
            if plan.member is not None:
                outcomes += run_phase(MEMBER_PHASE, rest)
            if not unreachable:
                outcomes += run_phase(reset_phase_on([node]), full)
            if plan.registered:
                outcomes += run_phase(NODE_PHASE, rest)
            if plan.lb_refresh:
                outcomes += run_phase(api_lb_on(plan.lb_refresh), rest)
            if plan.handover:
                written = write_admin_kubeconfig(rest)
                kubeconfig = str(written) if written else None
        finally:
            unregister(rest.key)
            unregister(full.key)
    summary = summarize([o for o in outcomes if o.phase not in API_PHASES])
    summary["api"] = {
        o.phase: {"changed": o.changed, "note": o.note} for o in outcomes if o.phase in API_PHASES
    }
    changed = [h for h, info in summary["hosts"].items() if h != node and info["changed"]]
    summary.update(
        cluster=cluster.name,
        removed=node,
        unreachable=unreachable,
        etcd_member_removed=plan.member.hex_id if plan.member is not None else None,
        node_deleted=plan.registered,
        changed_hosts=changed,
        untouched=list(plan.untouched),
        kubeconfig=kubeconfig,
    )
    for host, info in summary["hosts"].items():
        print(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
    print(f"existing hosts changed: {', '.join(changed) or 'none'}")
    return summary


@flow(name="remove-node", task_runner=bounded_runner(), persist_result=True, log_prints=True)
def remove_node(spec: str, node: str, unreachable: bool = False) -> dict[str, Any]:
    """Remove one host from the cluster: drain, etcd member removal, reset, Node deletion, fix-ups.

    Args:
        spec: the cluster, still listing the host: `block:<name>` (a capstan cluster spec block) or the
            absolute path of cluster.yaml on the worker.
        node: the host to remove (its name in the spec).
        unreachable: the host is dead: do not contact it (no drain, no reset); remove its etcd member
            and its Node, and fix up the other hosts.
    """
    return run_remove(spec, node, unreachable=unreachable)
