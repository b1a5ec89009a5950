"""Phases 8 and 9: ``kubeadm init`` on the first control plane, ``kubeadm join`` on the others.

Each: converge the node's files (kubelet units, kubeadm config, API server configs) and enable the
kubelet; decide from facts and the API whether kubeadm has already done its work there (see
``_kubeadm`` for the guards and what happens to half-done runs); run kubeadm only if not; then check,
with deadlines, that the node's apiserver answers /readyz and that its Node is registered.

Control planes join one at a time (the phase is serial): each new apiserver joins the external etcd
cluster's clients and the balancers' backends, and kubeadm's join waits for its own control plane.
"""

from __future__ import annotations

from capstan.errors import CapstanError
from capstan.kube import KubeError
from capstan.spec.models import Host
from capstan.tasks.create import _kube
from capstan.tasks.create._kubeadm import (
    KUBEADM_TIMEOUT,
    NodeState,
    broken_init_message,
    broken_join_message,
    init_action,
    init_argv,
    join_action,
    join_argv,
)
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

CLUSTER_CONFIG = ("kube-system", "kubeadm-config")


class KubeadmGuardError(CapstanError):
    """kubeadm left a node half set up and capstan will not guess how to repair it."""


def post_check(session: Session, host: Host, control_plane: bool) -> None:
    """The node's apiserver (control planes) answers /readyz and its Node is registered, or raise."""
    if control_plane:
        problem = _kube.wait_readyz(session, host)
        if problem:
            raise KubeError(problem)
    problem = _kube.wait_registered(session, host)
    if problem:
        raise KubeError(problem)


def _outcome(
    phase: str, host: Host, files_changed: int, files_unchanged: int, ran: bool, note: str
) -> PhaseOutcome:
    return PhaseOutcome(
        phase, host.name, files_changed + (1 if ran else 0), files_unchanged + (0 if ran else 1), note=note
    )


@host_phase_impl("cp-init")
def cp_init_phase(session: Session, host: Host) -> PhaseOutcome:
    facts = _kube.node_facts(session, host, "cp-init")
    files = _kube.converge_node_files(session, host, facts)
    state = _kube.state_from_facts(facts)
    if session.dry_run:
        ran = init_action(state) == "init"
        note = "would run kubeadm init" if ran else "kubeadm init done before (not re-checked in a dry run)"
        return _outcome("cp-init", host, files.changed_count, files.unchanged_count, ran, note)
    access = _kube.admin_access(session)
    waited = ""
    if state.manifests:
        waited = _kube.wait_readyz(session, host)
        ready = not waited
        state = NodeState(
            manifests=True,
            kubelet_config=state.kubelet_config,
            api_ready=ready,
            registered=ready and _kube.node_registered(access, host.name),
            cluster_config=ready and _kube.has_configmap(access, *CLUSTER_CONFIG),
        )
    action = init_action(state)
    if action == "broken":
        raise KubeadmGuardError(broken_init_message(host.name, _kube.apiserver_url(session, host), waited))
    ran = action in ("init", "finish")
    if ran:
        session.transport(host.name).run(
            init_argv(finish=action == "finish"), sudo=True, timeout=KUBEADM_TIMEOUT
        )
    post_check(session, host, control_plane=True)
    note = {"init": "kubeadm init", "finish": "finished an interrupted kubeadm init", "done": ""}[action]
    return _outcome("cp-init", host, files.changed_count, files.unchanged_count, ran, note)


def join_phase(session: Session, host: Host, phase: str) -> PhaseOutcome:
    """``kubeadm join`` guarded by facts and the API (shared by cp-join and worker-join)."""
    control_plane = host.has("control-plane")
    facts = _kube.node_facts(session, host, phase)
    files = _kube.converge_node_files(session, host, facts)
    state = _kube.state_from_facts(facts)
    action = join_action(state, control_plane)
    if session.dry_run:
        ran = action == "join"
        note = "would run kubeadm join" if ran else "joined before (not re-checked in a dry run)"
        return _outcome(phase, host, files.changed_count, files.unchanged_count, ran, note)
    checked = action == "wait"  # readiness and registration looked at just now
    if checked:
        problems = []
        if control_plane and state.manifests:
            problems.append(_kube.wait_readyz(session, host))
        registered = _kube.wait_registered(session, host)
        problems.append(registered)
        detail = "; ".join(p for p in problems if p)
        state = NodeState(
            manifests=state.manifests,
            kubelet_config=state.kubelet_config,
            api_ready=not detail,
            registered=not registered,
        )
        action = join_action(state, control_plane)
        if action == "broken":
            raise KubeadmGuardError(broken_join_message(host.name, detail))
    ran = action == "join"
    if ran:
        session.transport(host.name).run(join_argv(control_plane), sudo=True, timeout=KUBEADM_TIMEOUT)
    if ran or not checked:
        post_check(session, host, control_plane)
    note = "kubeadm join" + (" (control plane)" if control_plane else "") if ran else ""
    return _outcome(phase, host, files.changed_count, files.unchanged_count, ran, note)


@host_phase_impl("cp-join")
def cp_join_phase(session: Session, host: Host) -> PhaseOutcome:
    return join_phase(session, host, "cp-join")
