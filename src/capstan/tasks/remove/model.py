"""What removing one host means, decided in pure code before anything changes.

Inputs are the spec (which still lists the host), the cluster's view of itself (the API's Node names,
etcd's member list with the health of each member's endpoint) and whether the host is known to be dead.
The output is a ``RemovePlan``, or a ``RemoveRefused`` naming the reason on one line:

- the host is not in the spec: the error lists the spec's hosts;
- it is the last control plane (nothing would be left to run the API), or the spec's last etcd host;
- it is an etcd member and removing it breaks quorum: the current cluster must have a quorum of healthy
  members (``member remove`` needs one), and the members left behind must still have one
  (``healthy remaining >= (members - 1) // 2 + 1``); removing the last member is refused too.

The etcd member is found by its peer URL (the host's ip or access ip), never by its name: names can be
overridden (``etcdMemberName``) and an unstarted member has none. Everything the rest of the cluster
renders afterwards (``--etcd-servers``, the API load balancers' backends) comes from ``remaining``: the
spec without the host, built without the spec checks (two etcd members are a valid intermediate state,
not a spec someone wrote).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from capstan.errors import CapstanError
from capstan.spec.models import Cluster, Host
from capstan.tasks.scale.model import lb_hosts


class RemoveRefused(CapstanError):
    """remove-node will not do this (the message says why); nothing was changed."""


@dataclass(frozen=True)
class Member:
    """One entry of ``etcdctl member list -w json`` (ids are uint64; ``member remove`` takes hex)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"


@dataclass(frozen=True)
class RemovePlan:
    """What a remove-node run does (host names; the remaining cluster renders the fix-ups)."""

    node: str
    unreachable: bool
    control_plane: bool
    registered: bool
    """A Node object of that name exists (drained, then deleted)."""
    member: Member | None
    """The etcd member to remove, when the host still is one."""
    etcd_fixup: tuple[str, ...]
    """Remaining control planes whose ``--etcd-servers`` are re-rendered (the host has the etcd role)."""
    lb_refresh: tuple[str, ...]
    """Remaining hosts whose API load balancer had the host as a backend (it was a control plane)."""
    handover: str | None
    """The new first control plane, which receives the cluster secrets (the host was the first one)."""
    untouched: tuple[str, ...]
    """Remaining hosts this run does not change (it may read from some: the API, an etcd member)."""

    @property
    def changed_elsewhere(self) -> tuple[str, ...]:
        """Remaining hosts the run may change, in spec order of first mention."""
        return tuple(dict.fromkeys((*([self.handover] if self.handover else []), *self.etcd_fixup,
                                    *self.lb_refresh)))  # fmt: skip


def find_host(cluster: Cluster, name: str) -> Host:
    """The spec's host ``name``; any other name is a one-line error listing the hosts."""
    try:
        return cluster.host(name)
    except KeyError:
        names = ", ".join(h.name for h in cluster.hosts)
        raise RemoveRefused(
            f"NODE: {name!r} is not a host of cluster {cluster.name} (hosts: {names})"
        ) from None


def remaining_cluster(cluster: Cluster, name: str) -> Cluster:
    """The spec without host ``name``, not re-checked (an even etcd count is a step, not a spec)."""
    hosts = [h for h in cluster.hosts if h.name != name]
    return cluster.model_copy(update={"spec": cluster.spec.model_copy(update={"hosts": hosts})})


def parse_members(text: str, where: str) -> list[Member]:
    """``etcdctl member list -w json`` -> members with their ids and URLs."""
    try:
        data = json.loads(text)
        return [
            Member(
                id=int(m["ID"]),
                name=str(m.get("name") or ""),
                peer_urls=tuple(str(u) for u in m.get("peerURLs") or ()),
                client_urls=tuple(str(u) for u in m.get("clientURLs") or ()),
            )
            for m in data.get("members") or []
        ]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise CapstanError(f"{where}: etcd member list is unreadable ({type(exc).__name__})") from None


def parse_cluster_health(text: str) -> dict[str, bool]:
    """``etcdctl endpoint health --cluster -w json`` -> endpoint URL: healthy (unparseable: empty)."""
    try:
        data = json.loads(text)
        return {str(e["endpoint"]): bool(e.get("health")) for e in data}
    except (ValueError, KeyError, TypeError):
        return {}


def url_host(url: str) -> str:
    """The host part of ``scheme://host:port/...`` (brackets of an IPv6 literal removed)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0]


def member_of(host: Host, members: Iterable[Member]) -> Member | None:
    """The member whose peer URL points at ``host`` (its ip or access ip)."""
    ips = {host.bind_ip, host.peer_ip}
    for m in members:
        if any(url_host(u) in ips for u in m.peer_urls):
            return m
    return None


def healthy_members(members: Iterable[Member], health: Mapping[str, bool]) -> set[int]:
    """Ids of the members one of whose client URLs answered ``endpoint health``."""
    return {m.id for m in members if any(health.get(u) for u in m.client_urls)}


def quorum(size: int) -> int:
    return size // 2 + 1


def refuse_quorum(node: str, member: Member, members: list[Member], healthy: set[int]) -> None:
    """Refuse a ``member remove`` that cannot succeed or would leave etcd without a quorum."""
    size = len(members)
    ok = len(healthy & {m.id for m in members})
    if size <= 1:
        raise RemoveRefused(f"{node} is the last etcd member: removing it would destroy the etcd cluster")
    if ok < quorum(size):
        raise RemoveRefused(
            f"etcd has no quorum now ({ok} of {size} members healthy, {quorum(size)} needed): "
            f"cannot remove {node}'s member; bring members back first"
        )
    left = ok - (1 if member.id in healthy else 0)
    if left < quorum(size - 1):
        raise RemoveRefused(
            f"removing {node} would break etcd quorum: {left} healthy of {size - 1} remaining members, "
            f"{quorum(size - 1)} needed"
        )


def refuse_by_spec(cluster: Cluster, host: Host) -> None:
    """The refusals the spec alone decides: the last control plane, the last etcd host."""
    if host.has("control-plane") and len(cluster.control_planes) <= 1:
        raise RemoveRefused(
            f"{host.name} is the last control plane of cluster {cluster.name}: refusing to remove it"
        )
    if host.has("etcd") and len(cluster.etcd_hosts) <= 1:
        raise RemoveRefused(
            f"{host.name} is the last etcd host of cluster {cluster.name}: "
            "removing it would destroy the etcd cluster"
        )


def plan_remove(
    cluster: Cluster,
    name: str,
    *,
    unreachable: bool,
    nodes: Iterable[str],
    members: list[Member],
    health: Mapping[str, bool],
) -> RemovePlan:
    """Decide the run (pure); refusals raise ``RemoveRefused`` before anything changes."""
    host = find_host(cluster, name)
    refuse_by_spec(cluster, host)
    member = member_of(host, members)
    if member is not None:
        refuse_quorum(name, member, members, healthy_members(members, health))
    rest = remaining_cluster(cluster, name)
    cp = host.has("control-plane")
    etcd_fixup = tuple(h.name for h in rest.control_planes) if host.has("etcd") or member else ()
    lb_refresh = tuple(h.name for h in lb_hosts(rest)) if cp else ()
    first = cluster.control_planes[0]
    handover = rest.control_planes[0].name if first.name == name else None
    changed = {*etcd_fixup, *lb_refresh, *([handover] if handover else [])}
    return RemovePlan(
        node=name,
        unreachable=unreachable,
        control_plane=cp,
        registered=name in set(nodes),
        member=member,
        etcd_fixup=etcd_fixup,
        lb_refresh=lb_refresh,
        handover=handover,
        untouched=tuple(h.name for h in rest.hosts if h.name not in changed),
    )


def describe(plan: RemovePlan) -> list[str]:
    """The plan in a few lines (what happens to the host, which other hosts change and why)."""
    steps = []
    if plan.registered and not plan.unreachable:
        steps.append("drain")
    if plan.member is not None:
        steps.append(f"remove etcd member {plan.member.hex_id}")
    if not plan.unreachable:
        steps.append("reset the host")
    if plan.registered:
        steps.append("delete the Node")
    how = " (unreachable: not contacted)" if plan.unreachable else ""
    lines = [f"removing {plan.node}{how}: {', '.join(steps) or 'nothing left to do on the cluster'}"]
    if plan.handover:
        lines.append(f"new first control plane (receives the cluster secrets): {plan.handover}")
    if plan.etcd_fixup:
        lines.append(f"control planes whose --etcd-servers are updated: {', '.join(plan.etcd_fixup)}")
    if plan.lb_refresh:
        lines.append(f"hosts whose API load balancer backends change: {', '.join(plan.lb_refresh)}")
    if plan.untouched:
        lines.append(f"hosts left untouched: {', '.join(plan.untouched)}")
    return lines
