"""upgrade-cluster's host steps: check a node, upgrade an etcd member, upgrade a node.

Upgrading one node (control plane or worker), as Kubespray's upgrade playbook does it:

1. cordon it and drain it through the Eviction API (``capstan.kube.drain``; PodDisruptionBudgets are
   honoured, refusals retried until the drain timeout, the whole drain retried ``drain.retries`` times);
2. replace kubeadm with the target version's (sha256-verified) and run ``kubeadm upgrade apply vX`` on
   the first control plane, ``kubeadm upgrade node`` everywhere else;
3. replace the kubelet and kubectl, restart the kubelet; wait for the control plane's ``/readyz`` and
   for the Node to be Ready reporting the target kubelet version;
4. uncordon it (only if this step cordoned it: an operator's own cordon stays).

Any failure after the cordon uncordons the node before the error goes up (the flow stops there), so a
blocked drain never leaves a node unschedulable; a drain that could not finish names the pods and
budgets in the way. A node whose Node already reports the target version and whose binaries match is
left alone, so a re-run continues with the nodes still to do.

``kubeadm upgrade`` runs with ``--certificate-renewal=false``: capstan issues and renews the cluster's
certificates itself (``capstan certs``), and kubeadm re-issuing them would make the two disagree.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lightkube import Client

from capstan.errors import CapstanError
from capstan.kube import KubeError
from capstan.kube.drain import DrainBlocked, DrainReport, cordon, drain, uncordon
from capstan.plan.phases import Phase
from capstan.spec.models import Cluster, Host
from capstan.tasks.create import _kube
from capstan.tasks.create._common import tail
from capstan.tasks.create.addons import NODES_READY_TIMEOUT, node_readiness
from capstan.tasks.etcd.remote import member_health
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session
from capstan.tasks.upgrade import binaries
from capstan.tasks.upgrade.plan import Version
from capstan.tasks.upgrade.state import SETTINGS, read_nodes, record

CHECK, ETCD, NODE = "upgrade-check", "upgrade-etcd", "upgrade-node"
KUBEADM_TIMEOUT = 900.0
ETCD_HEALTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class UpgradeSettings:
    """What this run upgrades to; set by the flow before any step runs (no secrets)."""

    target: Version
    apply_on: str
    """The control plane that runs ``kubeadm upgrade apply`` (the first of the spec)."""


def settings(session: Session) -> UpgradeSettings:
    value = session.memo[SETTINGS]
    assert isinstance(value, UpgradeSettings)
    return value


def _nodes(c: Cluster) -> list[Host]:
    return c.nodes


def _etcd(c: Cluster) -> list[Host]:
    return c.etcd_hosts


CHECK_PHASE = Phase(
    CHECK,
    "Node binaries",
    "parallel",
    _nodes,
    "which nodes already have the target kubeadm, kubelet and kubectl (by sha256)",
)
ETCD_PHASE = Phase(
    ETCD,
    "etcd members",
    "serial",
    _etcd,
    "one member at a time: the new etcd binary, a restart, the member healthy again",
)
NODE_PHASE = Phase(
    NODE,
    "Nodes",
    "serial",
    _nodes,
    "cordon, drain, new kubeadm + kubeadm upgrade, new kubelet and kubectl, Ready, uncordon",
)


@host_phase_impl(CHECK)
def check_node(session: Session, host: Host) -> PhaseOutcome:
    """Never changes anything: the note lists the files that are not the target version's."""
    left = binaries.stale(session, host)
    return PhaseOutcome(CHECK, host.name, note=json.dumps({"stale": left}))


def stale_of(outcome: PhaseOutcome) -> list[str]:
    value = json.loads(outcome.note).get("stale", [])
    return [str(v) for v in value]


@host_phase_impl(ETCD)
def upgrade_etcd_member(session: Session, host: Host) -> PhaseOutcome:
    """The new etcd binary; a restart only when it changed, then this member healthy before the next."""
    record(session, "etcd", host.name)
    results = binaries.install(session, host, binaries.ETCD)
    changed = sum(r.changed_count for r in results)
    unchanged = sum(r.unchanged_count for r in results)
    if changed:
        t = session.transport(host.name)
        t.run(["systemctl", "restart", "etcd"], sudo=True, timeout=180)
        deadline = time.monotonic() + ETCD_HEALTH_TIMEOUT
        while True:
            health = member_health(t)
            if health.healthy:
                break
            if time.monotonic() >= deadline:
                raise CapstanError(f"{host.name}: etcd not healthy after its upgrade: {health.error}")
            time.sleep(2.0)
        changed += 1
    return PhaseOutcome(
        ETCD, host.name, changed, unchanged, note="etcd binary" + (" replaced" if changed else " current")
    )


def kubelet_version(session: Session, name: str) -> str:
    """What Node ``name`` reports now ("" when it is not registered)."""
    info = read_nodes(_kube.admin_access(session)).get(name)
    return info.kubelet if info is not None else ""


def _drain(client: Client, session: Session, node: str) -> DrainReport:
    """The policy's drain: each attempt evicts until the timeout; ``retries`` more attempts after it."""
    policy = session.cluster.spec.upgrade.drain
    attempts = policy.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return drain(
                client,
                node,
                timeout=float(policy.timeout_seconds),
                delete_emptydir=policy.delete_empty_dir_data,
                grace_period_seconds=policy.grace_period_seconds,
                retry_interval=2.0,
            )
        except DrainBlocked:
            if attempt == attempts:
                raise
            print(f"upgrade: drain {node} attempt {attempt} of {attempts} blocked; retrying", flush=True)
            time.sleep(policy.retry_delay_seconds)
    raise AssertionError("unreachable")  # pragma: no cover


def _kubeadm(session: Session, host: Host, target: Version) -> None:
    if host.name == settings(session).apply_on:
        argv = ["kubeadm", "upgrade", "apply", target.v, "--yes", "--certificate-renewal=false"]
    else:
        argv = ["kubeadm", "upgrade", "node", "--certificate-renewal=false"]
    res = session.transport(host.name).run(argv, sudo=True, check=False, timeout=KUBEADM_TIMEOUT)
    if res.exit_code != 0:
        raise CapstanError(
            f"{host.name}: `{' '.join(argv)}` exited {res.exit_code}: {tail(res.stderr) or tail(res.stdout)}"
        )


def _wait_ready(session: Session, host: Host, target: Version) -> None:
    if host.has("control-plane"):
        problem = _kube.wait_readyz(session, host)
        if problem:
            raise KubeError(problem)
    access = _kube.admin_access(session)
    problem = _kube.wait_for(
        lambda: node_readiness(access, [host.name], str(target)),
        NODES_READY_TIMEOUT,
        f"{host.name}: Ready at {target.v}",
    )
    if problem:
        raise KubeError(problem)


def _upgrade_host(session: Session, host: Host, target: Version) -> tuple[int, int]:
    """Binaries, kubeadm, kubelet restart and readiness; (changed, unchanged) on the host."""
    results = binaries.install(session, host, ("kubeadm",))
    _kubeadm(session, host, target)
    results += binaries.install(session, host, ("kubelet", "kubectl"))
    session.transport(host.name).run(["systemctl", "restart", "kubelet"], sudo=True, timeout=120)
    _wait_ready(session, host, target)
    changed = sum(r.changed_count for r in results) + 2  # + kubeadm upgrade, + kubelet restart
    return changed, sum(r.unchanged_count for r in results)


@host_phase_impl(NODE)
def upgrade_node(session: Session, host: Host) -> PhaseOutcome:
    target = settings(session).target
    name = host.name
    if kubelet_version(session, name) == target.v and not binaries.stale(session, host):
        record(session, "skip", name)
        return PhaseOutcome(NODE, name, note=f"already at {target.v}")
    access = _kube.admin_access(session)
    record(session, "cordon", name)
    with access.client(timeout=15.0) as client:
        cordoned = cordon(client, name)
    try:
        record(session, "drain", name)
        with access.client(timeout=30.0) as client:
            report = _drain(client, session, name)
        record(session, "upgrade", name)
        changed, unchanged = _upgrade_host(session, host, target)
    except BaseException as exc:
        _undo_cordon(session, name, cordoned)
        if isinstance(exc, DrainBlocked):
            raise DrainBlocked(exc.node, exc.blockers, detail=_undone(exc.detail, cordoned)) from None
        raise
    record(session, "uncordon", name)
    if cordoned:
        with access.client(timeout=15.0) as client:
            uncordon(client, name)
    note = f"{target.v}; {len(report.evicted)} pods evicted"
    return PhaseOutcome(NODE, name, changed + int(cordoned) * 2, unchanged, note=note)


def _undone(detail: str, cordoned: bool) -> str:
    extra = "(node uncordoned)" if cordoned else "(left cordoned: it was cordoned before the upgrade)"
    return f"{detail} {extra}".strip()


def _undo_cordon(session: Session, name: str, cordoned: bool) -> None:
    """Best effort after a failure: the node takes pods again (the original error is what matters)."""
    if not cordoned:
        return
    record(session, "uncordon", name)
    try:
        with _kube.admin_access(session).client(timeout=15.0) as client:
            uncordon(client, name)
    except Exception as exc:  # report, but never hide the failure that brought us here
        print(f"upgrade: could not uncordon {name} after the failure: {exc}", flush=True)
