"""Phase 1, facts: connect, gather facts in one round trip, and refuse hosts that cannot work.

Validation happens before anything changes anywhere (the flow runs this phase on every host and stops
if any fails), so a wrong address, an unsupported OS or a busy port costs nothing but a clear message.
Minimum memory follows Kubespray's pre-flight checks (1500 MB control plane, 1024 MB node).

The same round trip also asks what the later phases will ask the host (``capstan.tasks.hostfacts``),
reading the cluster's CA and secrets where they exist and creating nothing (``material.read_only``).
"""

from __future__ import annotations

import time

from capstan.errors import CapstanError
from capstan.facts.model import HostFacts
from capstan.facts.query import FactsQuery
from capstan.spec.models import Host
from capstan.tasks import material
from capstan.tasks.hostfacts import ahead, fresh_facts
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

SUPPORTED_FAMILIES = ("debian", "rhel")
SUPPORTED_ARCHES = ("amd64", "arm64")
MIN_MEMORY_MB = {"control-plane": 1500, "etcd": 1024, "worker": 1024}

# Port -> the capstan-managed unit that may legitimately hold it on a re-run.
PORTS: dict[str, dict[int, str]] = {
    "control-plane": {6443: "kubelet", 10250: "kubelet", 10257: "kubelet", 10259: "kubelet"},
    "worker": {10250: "kubelet"},
    "etcd": {2379: "etcd", 2380: "etcd"},
}
LB_PORT_UNIT = "kube-apiserver-lb"

QUERY = FactsQuery(units=("etcd", "kubelet", LB_PORT_UNIT), binaries=())


class HostRejected(CapstanError):
    """A host fails a pre-flight check; the message names the host and the check."""


def clock_skew(host_time: int, sent: float, received: float) -> float:
    """How far off the host's clock is at least: it was read (in whole seconds, so it stands for
    ``[host_time, host_time + 1)``) between ``sent`` and ``received`` by the orchestrator's clock;
    only a reading outside that window is off, by its distance to it.

    Why not the window's midpoint: a gather on a busy host can take many seconds, and half of that
    was then reported as skew (a 21 s gather on a 30-host lab failed the 10 s limit)."""
    return max(0.0, sent - (host_time + 1), host_time - received)


def problems(session: Session, host: Host, facts: HostFacts, window: tuple[float, float]) -> list[str]:
    """Every pre-flight failure of ``host`` (pure: facts in, messages out); ``window``: when the
    gather was sent and its answer received, by the orchestrator's clock."""
    c = session.cluster
    out: list[str] = []
    if facts.os.family not in SUPPORTED_FAMILIES:
        out.append(f"OS {facts.os.id or 'unknown'} {facts.os.version_id or ''} is not supported".strip())
    if facts.arch not in SUPPORTED_ARCHES:
        out.append(f"architecture {facts.machine or facts.arch!r} is not supported (amd64, arm64)")
    need = max(MIN_MEMORY_MB[r] for r in host.roles)
    if facts.memory_mb < need:
        out.append(f"{facts.memory_mb} MB of memory, {need} MB needed for roles {', '.join(host.roles)}")
    addresses = {ip.split("/")[0] for ips in facts.interfaces.values() for ip in ips}
    if host.bind_ip not in addresses:
        out.append(
            f"ip {host.bind_ip} is not an address of this host (it has {', '.join(sorted(addresses))})"
        )
    skew = clock_skew(facts.time, *window)
    if skew > c.spec.os.max_clock_skew_seconds:
        out.append(
            f"clock is {skew:.0f} s off the orchestrator's (limit {c.spec.os.max_clock_skew_seconds:.0f} s)"
        )
    ports: dict[int, str] = {}
    for role in host.roles:
        ports.update(PORTS[role])
    if c.spec.control_plane_endpoint.mode == "local-lb" and (host.has("control-plane") or host.has("worker")):
        ports[c.spec.control_plane_endpoint.local_lb_port] = LB_PORT_UNIT
    busy = facts.listening_ports
    for port, unit in sorted(ports.items()):
        if port in busy and not facts.unit(unit).active:
            out.append(f"port {port} is in use by something other than {unit}")
    return out


@host_phase_impl("facts")
def facts_phase(session: Session, host: Host) -> PhaseOutcome:
    with material.read_only():  # looks ahead without creating the cluster's material
        wanted = QUERY | ahead(session, host, "facts")
    started = time.time()  # the clock window spans the gather alone, not the look-ahead's reads
    facts = fresh_facts(session, host, wanted)
    found = problems(session, host, facts, (started, time.time()))
    if found:
        raise HostRejected(f"{host.name}: " + "; ".join(found))
    note = f"{facts.os.id} {facts.os.version_id} {facts.arch}, {facts.cpus} CPUs, {facts.memory_mb} MB"
    if facts.swap.active:
        note += ", swap on (OS preparation turns it off)"
    return PhaseOutcome("facts", host.name, note=note)
