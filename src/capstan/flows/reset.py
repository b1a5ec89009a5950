"""reset-cluster: take back everything capstan installed, on every host of the spec or the named ones.

Kubespray's reset.yml as one phase (``capstan.tasks.reset``): on each host, in parallel (bounded),
``kubeadm reset -f`` where kubeadm has state, then capstan's services stopped and disabled, then its
units (``daemon-reload``), binaries, configuration, data and state removed; what is already gone is
left alone, so a reset of a clean host changes nothing and an interrupted reset is finished by the next.
An unreachable host fails the run naming it, after every other host has finished.

The run holds the cluster's lock, so it never races a create, backup or upgrade of the same cluster.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow

import capstan.tasks.reset  # noqa: F401  (registers the phase implementation)
from capstan.errors import CapstanError
from capstan.flows.create import bounded_runner, summarize
from capstan.flows.lock import cluster_lock
from capstan.flows.source import resolve_spec
from capstan.plan.phases import Phase, PlannedPhase
from capstan.spec.models import Cluster
from capstan.tasks.etcd.common import run_key
from capstan.tasks.reset.phase import RESET_PHASE
from capstan.tasks.runner import run_phase
from capstan.tasks.session import Session, TransportFactory, fabric_transport, register, unregister


def chosen_hosts(cluster: Cluster, hosts: list[str] | None) -> list[str]:
    """The hosts to reset: all of the spec's when ``hosts`` is empty; an unknown name is an error."""
    if not hosts:
        return [h.name for h in cluster.hosts]
    known = {h.name for h in cluster.hosts}
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise CapstanError(
            f"--hosts: {', '.join(unknown)}: not a host of cluster {cluster.name} "
            f"(hosts: {', '.join(sorted(known))})"
        )
    return list(dict.fromkeys(hosts))


def reset_phase_on(hosts: list[str]) -> Phase:
    return replace(RESET_PHASE, hosts=lambda c: [c.host(h) for h in hosts])


def reset_plan_phases(cluster: Cluster, hosts: list[str] | None = None) -> list[PlannedPhase]:
    """reset-cluster's phase with the hosts it runs on (for a ``--plan`` listing)."""
    return [PlannedPhase(RESET_PHASE, tuple(chosen_hosts(cluster, hosts)))]


def run_reset(
    spec: str, *, hosts: list[str] | None = None, factory: TransportFactory = fabric_transport
) -> dict[str, Any]:
    """The body of the flow, callable with another transport factory by tests of the flow logic."""
    source = resolve_spec(spec)
    cluster = source.cluster
    names = chosen_hosts(cluster, hosts)
    with cluster_lock(cluster.name):
        session = register(
            Session(run_key("reset-cluster"), cluster, factory=factory, private_key=source.private_key)
        )
        try:
            outcomes = run_phase(reset_phase_on(names), session)
        finally:
            unregister(session.key)
    for o in outcomes:
        print(f"{o.host}: {o.changed} changed, {o.unchanged} unchanged ({o.note})")
    summary = summarize(outcomes)
    summary.update(cluster=cluster.name, reset=names)
    return summary


@flow(name="reset-cluster", task_runner=bounded_runner(), persist_result=True, log_prints=True)
def reset_cluster(spec: str, hosts: list[str] | None = None) -> dict[str, Any]:
    """Stop and remove everything capstan installed on the cluster's hosts (all, or the named ones).

    Args:
        spec: the cluster: `block:<name>` (a capstan cluster spec block) or the absolute path of
            cluster.yaml on the worker.
        hosts: the hosts to reset (names from the spec); every host when empty.
    """
    return run_reset(spec, hosts=hosts)
