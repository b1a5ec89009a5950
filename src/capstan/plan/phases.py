"""The create-cluster phase list: the one source of truth for ``capstan plan`` and the create flow.

Order follows Kubespray's cluster.yml invariants (prep -> runtime -> etcd -> first control plane ->
control-plane joins one at a time -> workers), split k0sctl-style into small phases that each run on a
host set with a stated concurrency. The addons (the pod network first) go in right after the first
control plane, kubeadm's documented order, rather than after the joins as in Kubespray: a node that
joins with the CNI already there turns Ready at once, so the final wait for every node Ready is short
instead of a whole kubelet status period after the last join. The flow iterates this very tuple, so
what ``plan`` prints is what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from capstan.spec.models import Cluster, Host

Concurrency = Literal["parallel", "together", "serial", "once", "local"]

CONCURRENCY_TEXT: dict[Concurrency, str] = {
    "parallel": "all hosts in parallel (bounded)",
    "together": "all hosts at once (members must start together)",
    "serial": "one host at a time",
    "once": "once, on the first control plane",
    "local": "on the orchestrator",
}


@dataclass(frozen=True)
class Phase:
    """A step of a lifecycle operation, run per host of ``hosts(cluster)``."""

    id: str
    title: str
    concurrency: Concurrency
    hosts: Callable[[Cluster], list[Host]]
    summary: str


def _all(c: Cluster) -> list[Host]:
    return list(c.hosts)


def _nodes(c: Cluster) -> list[Host]:
    return c.nodes


def _etcd(c: Cluster) -> list[Host]:
    return c.etcd_hosts


def _first_cp(c: Cluster) -> list[Host]:
    return c.control_planes[:1]


def _other_cps(c: Cluster) -> list[Host]:
    return c.control_planes[1:]


def _workers(c: Cluster) -> list[Host]:
    return c.workers


def _api_lb(c: Cluster) -> list[Host]:
    mode = c.spec.control_plane_endpoint.mode
    if mode == "local-lb":
        return c.nodes
    if mode == "vip":
        return c.control_planes
    return []


def _none(c: Cluster) -> list[Host]:
    return []


CREATE_PHASES: tuple[Phase, ...] = (
    Phase("facts", "Connect and gather facts", "parallel", _all,
          "one round trip per host; validate OS, arch, memory, ip, ports, swap, clock"),
    Phase("pki", "PKI", "parallel", _all,
          "load the CA from the first control plane or create it; issue what is missing; "
          "each host receives only its own keys"),
    Phase("artifacts", "Artifacts", "parallel", _all,
          "binaries downloaded once (push) or pulled from the mirror; sha256 verified before install"),
    Phase("os-prep", "OS preparation", "parallel", _all,
          "swap off, sysctls, kernel modules, packages, hostname"),
    Phase("runtime", "Container runtime", "parallel", _nodes,
          "containerd or cri-o config and unit; running"),
    Phase("etcd", "etcd cluster", "together", _etcd,
          "members started together; health checked over TLS"),
    Phase("api-lb", "API endpoint", "parallel", _api_lb,
          "node-local haproxy/nginx on every node, or keepalived VIP on control planes"),
    Phase("cp-init", "First control plane", "once", _first_cp,
          "kubeadm init guarded by a fact (never twice); wait for /readyz"),
    Phase("addons", "Addons", "local", _none,
          "CNI, CoreDNS (+nodelocaldns, autoscaler), metrics-server through the API, before any join"),
    Phase("cp-join", "Control-plane joins", "serial", _other_cps,
          "kubeadm join --control-plane, one at a time, each waiting for /readyz"),
    Phase("worker-join", "Worker joins", "parallel", _workers,
          "kubeadm join; each registers as a Node"),
    Phase("nodes-ready", "Nodes Ready", "local", _none,
          "every node of the spec Ready at the spec's version"),
    Phase("report", "Report", "local", _none,
          "Prefect artifacts; admin kubeconfig written locally (0600)"),
)  # fmt: skip


@dataclass(frozen=True)
class PlannedPhase:
    phase: Phase
    hosts: tuple[str, ...]

    @property
    def skipped(self) -> bool:
        return not self.hosts and self.phase.concurrency != "local"


def create_plan(cluster: Cluster) -> list[PlannedPhase]:
    """The create flow's phases with the hosts each one runs on, in order."""
    return [PlannedPhase(p, tuple(h.name for h in p.hosts(cluster))) for p in CREATE_PHASES]
