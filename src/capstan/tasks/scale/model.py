"""Which hosts a scale-out adds and which existing hosts it must touch, in pure code.

Membership comes from the cluster, never from a state file: the Node list the API returns (for
control planes and workers) and etcd's ``member list`` (for etcd members). Everything in the spec that
is not a member yet is new; of the existing hosts only those whose configuration depends on the set of
new hosts are touched, so an unreachable existing worker does not block adding another one:

- a new control plane changes every API load balancer's backend list: with ``local-lb`` that is every
  existing node's local haproxy/nginx, with ``vip`` the keepalived of every existing control plane;
- a new worker changes nothing on existing hosts.

Adding etcd members is refused for now (``refuse_etcd``), naming them; see the module ``flows.scale``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from capstan.errors import CapstanError
from capstan.plan.phases import CREATE_PHASES, Phase
from capstan.spec.models import Cluster, Host

JOIN_PHASES = ("facts", "pki", "artifacts", "os-prep", "runtime", "api-lb", "cp-join", "worker-join")
"""The create phases a scale-out runs, in create's order (etcd, cp-init, addons and report are not)."""


class ScaleRefused(CapstanError):
    """The spec asks for something scale-cluster cannot do (the message says what and why)."""


@dataclass(frozen=True)
class EtcdMember:
    name: str
    peer_urls: tuple[str, ...]
    started: bool


@dataclass(frozen=True)
class ScalePlan:
    """The outcome of comparing the spec with the cluster (host names, in spec order)."""

    new_control_planes: tuple[str, ...]
    new_workers: tuple[str, ...]
    new_etcd: tuple[str, ...]
    lb_refresh: tuple[str, ...]
    """Existing hosts whose API load balancer configuration changes (api-lb runs there too)."""
    untouched: tuple[str, ...]

    @property
    def new_nodes(self) -> tuple[str, ...]:
        return self.new_control_planes + self.new_workers

    @property
    def new_hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.new_nodes + self.new_etcd))

    @property
    def touched(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.new_hosts + self.lb_refresh))


def parse_member_list(text: str, where: str) -> list[EtcdMember]:
    """``etcdctl member list -w json`` -> members (an unstarted member has no name yet)."""
    try:
        data = json.loads(text)
        members = data.get("members") or []
        return [
            EtcdMember(
                name=str(m.get("name") or ""),
                peer_urls=tuple(str(u) for u in m.get("peerURLs") or ()),
                started=bool(m.get("name")),
            )
            for m in members
        ]
    except (ValueError, AttributeError, TypeError) as exc:
        raise CapstanError(f"{where}: etcd member list is unreadable ({type(exc).__name__})") from None


def is_member(host: Host, members: Iterable[EtcdMember]) -> bool:
    """A host is a member when a member has its name or one of its peer URLs names the host's ip."""
    ips = {host.bind_ip, host.peer_ip}
    for m in members:
        if m.name == host.name:
            return True
        if any(_url_host(u) in ips for u in m.peer_urls):
            return True
    return False


def _url_host(url: str) -> str:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0]


def lb_hosts(cluster: Cluster) -> list[Host]:
    """The hosts running an API load balancer whose backends are the control planes."""
    mode = cluster.spec.control_plane_endpoint.mode
    if mode == "local-lb":
        return cluster.nodes
    if mode == "vip":
        return cluster.control_planes
    return []


def plan_scale(cluster: Cluster, nodes: Iterable[str], members: Iterable[EtcdMember]) -> ScalePlan:
    """Compare the spec with the cluster's Nodes and etcd members (pure)."""
    registered = set(nodes)
    member_list = list(members)
    first = cluster.control_planes[0] if cluster.control_planes else None
    if first is None or first.name not in registered:
        name = first.name if first is not None else "(none)"
        raise ScaleRefused(
            f"the first control plane {name} is not a Node of cluster {cluster.name}: "
            "scale adds hosts to an existing cluster; run `capstan create` first"
        )
    new_cps = tuple(h.name for h in cluster.control_planes if h.name not in registered)
    new_workers = tuple(h.name for h in cluster.workers if h.name not in registered)
    new_etcd = tuple(h.name for h in cluster.etcd_hosts if not is_member(h, member_list))
    new = set(new_cps) | set(new_workers) | set(new_etcd)
    refresh = tuple(h.name for h in lb_hosts(cluster) if h.name not in new) if new_cps else ()
    touched = new | set(refresh)
    untouched = tuple(h.name for h in cluster.hosts if h.name not in touched)
    return ScalePlan(new_cps, new_workers, new_etcd, refresh, untouched)


def refuse_etcd(plan: ScalePlan) -> None:
    """Adding etcd members (member add, start, --etcd-servers everywhere) is not implemented yet."""
    if plan.new_etcd:
        raise ScaleRefused(
            f"etcd hosts {', '.join(plan.new_etcd)} are not members of the etcd cluster: scale does not add "
            "etcd members yet; remove the etcd role from them in the spec (or add them by hand)"
        )


def phase_hosts(plan: ScalePlan, phase_id: str) -> tuple[str, ...]:
    """Which hosts each scale phase runs on (create's host sets, restricted to what must change)."""
    if phase_id in ("facts", "pki", "artifacts", "os-prep"):
        return plan.new_hosts
    if phase_id == "runtime":
        return plan.new_nodes
    if phase_id == "api-lb":
        return plan.new_nodes + plan.lb_refresh
    if phase_id == "cp-join":
        return plan.new_control_planes
    if phase_id == "worker-join":
        return plan.new_workers
    return ()


def scale_phases(cluster: Cluster, plan: ScalePlan) -> list[Phase]:
    """create's phases of ``JOIN_PHASES`` with their hosts replaced by the plan's; empty ones left out."""
    out = []
    by_id = {p.id: p for p in CREATE_PHASES}
    lb_capable = {h.name for h in lb_hosts(cluster)}
    for pid in JOIN_PHASES:
        names = phase_hosts(plan, pid)
        if pid == "api-lb":
            names = tuple(n for n in names if n in lb_capable)
        if not names:
            continue
        out.append(replace(by_id[pid], hosts=_on(names)))
    return out


def _on(names: tuple[str, ...]) -> Callable[[Cluster], list[Host]]:
    def hosts(c: Cluster) -> list[Host]:
        return [c.host(n) for n in names]

    return hosts
