"""remove-node's own phases; the reset, ``etcd-servers`` and ``api-lb`` phases are reused as they are.

All four run in the session of the *remaining* cluster (the spec without the host), so the API is
reached through a control plane that stays and etcd through a member that stays; the plan
(``model.RemovePlan``) is in the session's memo under ``PLAN``, the task parameters stay names only.

- ``remove-handover`` (on the new first control plane, only when the first one leaves): writes the
  cluster secrets there, before anything is taken away; converged when the file already holds them.
- ``remove-drain``: cordon and evict through the API, honouring PodDisruptionBudgets; a blocked drain
  uncordons the node again and fails naming the pods (``kube.drain.drain_or_uncordon``).
- ``remove-etcd-member``: ``member remove`` by id through a remaining member, then checked gone.
- ``remove-node-object``: delete the Node; already gone counts as done.

The API phases report on the orchestrator (their ``host`` is the removed node, their counts are
objects changed through the API), not as changes on a host.
"""

from __future__ import annotations

import time

import httpx2
from lightkube import ApiError
from lightkube.resources.core_v1 import Node

from capstan.errors import CapstanError
from capstan.kube import KubeError
from capstan.kube.drain import drain_or_uncordon
from capstan.plan.phases import Phase
from capstan.render import Secrets
from capstan.spec.models import Cluster, Host
from capstan.tasks.create import _kube
from capstan.tasks.etcd.model import etcdctl_argv
from capstan.tasks.material import SECRETS_PATH, read_files
from capstan.tasks.remove.model import RemovePlan, parse_members
from capstan.tasks.remove.remote import ETCDCTL_TIMEOUT, decode_secrets, encode_secrets
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl, host_phase_impl
from capstan.tasks.session import Session

PLAN = "remove:plan"
"""Memo key: the ``RemovePlan`` of this run."""
SECRETS = "remove:secrets"
"""Memo key: the cluster secrets the new first control plane must hold (in memory only)."""
ETCD_VIA = "remove:etcd-via"
"""Memo key: the remaining etcd member that answered the member list."""
API_TIMEOUT = 30.0


def _none(c: Cluster) -> list[Host]:
    return []


def _first_cp(c: Cluster) -> list[Host]:
    return c.control_planes[:1]


HANDOVER_PHASE = Phase(
    "remove-handover", "Cluster secrets handover", "once", _first_cp,
    "the new first control plane holds the cluster secrets before the first one leaves",
)  # fmt: skip
DRAIN_PHASE = Phase(
    "remove-drain", "Drain", "local", _none,
    "cordon, then evict the node's pods through the API honouring PodDisruptionBudgets",
)  # fmt: skip
MEMBER_PHASE = Phase(
    "remove-etcd-member", "etcd member removal", "local", _none,
    "etcdctl member remove by id, through a remaining member",
)  # fmt: skip
NODE_PHASE = Phase(
    "remove-node-object", "Node deletion", "local", _none, "delete the Node object through the API"
)  # fmt: skip


def plan_of(session: Session) -> RemovePlan:
    plan = session.memo.get(PLAN)
    if not isinstance(plan, RemovePlan):
        raise CapstanError("remove-node: no plan in this run's session (a capstan bug)")
    return plan


@host_phase_impl("remove-handover")
def handover_phase(session: Session, host: Host) -> PhaseOutcome:
    secrets = session.memo.get(SECRETS)
    if not isinstance(secrets, Secrets):
        raise CapstanError(f"{host.name}: no cluster secrets to hand over (a capstan bug)")
    current = read_files(session, host.name, (SECRETS_PATH,)).get(SECRETS_PATH)
    if current is not None and decode_secrets(current) == secrets:
        return PhaseOutcome("remove-handover", host.name, 0, 1, note="cluster secrets already there")
    if not session.dry_run:
        t = session.transport(host.name)
        t.run(["install", "-d", "-m", "0700", SECRETS_PATH.rsplit("/", 1)[0]], sudo=True)
        t.put(SECRETS_PATH, encode_secrets(secrets), mode=0o600, owner="root", group="root", sudo=True)
    return PhaseOutcome("remove-handover", host.name, 1, 0, note="cluster secrets written")


def _outcome(phase: str, plan: RemovePlan, started: float, changed: int, note: str) -> list[PhaseOutcome]:
    seconds = round(time.monotonic() - started, 3)
    return [PhaseOutcome(phase, plan.node, changed, 0 if changed else 1, seconds, note)]


@cluster_phase_impl("remove-drain")
def drain_phase(session: Session) -> list[PhaseOutcome]:
    started = time.monotonic()
    plan = plan_of(session)
    if session.dry_run:
        return _outcome("remove-drain", plan, started, 0, "dry run: would drain")
    policy = session.cluster.spec.upgrade.drain
    access = _kube.admin_access(session)
    try:
        with access.client(timeout=API_TIMEOUT) as client:
            report = drain_or_uncordon(
                client,
                plan.node,
                timeout=float(policy.timeout_seconds),
                delete_emptydir=policy.delete_empty_dir_data,
                grace_period_seconds=policy.grace_period_seconds,
            )
    except httpx2.HTTPError as exc:
        raise KubeError(f"API {access.server}: drain {plan.node}: {type(exc).__name__}: {exc}") from None
    note = f"{len(report.evicted)} evicted, {len(report.skipped)} left (DaemonSet or mirror pods)"
    return _outcome("remove-drain", plan, started, len(report.evicted) + int(report.cordoned), note)


@cluster_phase_impl("remove-etcd-member")
def member_phase(session: Session) -> list[PhaseOutcome]:
    started = time.monotonic()
    plan = plan_of(session)
    via = session.memo.get(ETCD_VIA)
    if plan.member is None or not isinstance(via, str):
        return _outcome("remove-etcd-member", plan, started, 0, "not an etcd member")
    member = plan.member
    if session.dry_run:
        return _outcome(
            "remove-etcd-member", plan, started, 0, f"dry run: would remove member {member.hex_id}"
        )
    t = session.transport(via)
    listed = t.run(etcdctl_argv("member", "list", "-w", "json"), sudo=True, timeout=ETCDCTL_TIMEOUT)
    if member.id not in {m.id for m in parse_members(listed.stdout, via)}:
        return _outcome("remove-etcd-member", plan, started, 0, f"member {member.hex_id} already gone")
    t.run(etcdctl_argv("member", "remove", member.hex_id), sudo=True, timeout=ETCDCTL_TIMEOUT)
    after = t.run(etcdctl_argv("member", "list", "-w", "json"), sudo=True, timeout=ETCDCTL_TIMEOUT)
    if member.id in {m.id for m in parse_members(after.stdout, via)}:
        raise CapstanError(
            f"{via}: etcd member {member.hex_id} ({plan.node}) is still listed after member remove"
        )
    return _outcome("remove-etcd-member", plan, started, 1, f"member {member.hex_id} removed via {via}")


@cluster_phase_impl("remove-node-object")
def node_phase(session: Session) -> list[PhaseOutcome]:
    started = time.monotonic()
    plan = plan_of(session)
    if session.dry_run:
        return _outcome("remove-node-object", plan, started, 0, "dry run: would delete the Node")
    access = _kube.admin_access(session)
    try:
        with access.client(timeout=API_TIMEOUT) as client:
            try:
                client.delete(Node, plan.node)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise KubeError(f"cannot delete Node {plan.node}: {exc.status.message}") from None
                return _outcome("remove-node-object", plan, started, 0, "Node already gone")
    except httpx2.HTTPError as exc:
        raise KubeError(f"API {access.server}: delete Node {plan.node}: {type(exc).__name__}") from None
    return _outcome("remove-node-object", plan, started, 1, "Node deleted")
