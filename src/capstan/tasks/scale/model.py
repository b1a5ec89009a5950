"""Which hosts a scale-out adds and which existing hosts it must touch, in pure code.

Membership comes from the cluster, never from a state file: the Node list the API returns (for
control planes and workers) and etcd's ``member list`` (for etcd members). Everything in the spec that
is not a member yet is new; of the existing hosts only those whose configuration depends on the set of
new hosts are touched, so an unreachable existing worker does not block adding another one:

- a new control plane changes every API load balancer's backend list: with ``local-lb`` that is every
  existing node's local haproxy/nginx, with ``vip`` the keepalived of every existing control plane;
- a new worker changes nothing on existing hosts;
- a new etcd member (added by the ``etcd-add`` phase, one at a time) changes every control plane's
  apiserver ``--etcd-servers`` (the ``etcd-servers`` phase), and so does an earlier run that added
  members but died before that phase finished: the kubeadm-config ConfigMap, updated last by that
  phase, then still lists other endpoints than the spec (``listed_endpoints``).

A host counts as an etcd member only when it is a started, voting member: an unstarted member (added,
never started) or a learner (started, not promoted) is still new, and ``etcd-add`` finishes or redoes
it. Members the spec does not name are refused (``refuse_etcd``): scale only adds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from capstan.errors import CapstanError
from capstan.plan.phases import CREATE_PHASES, Phase
from capstan.render.etcd import etcd_endpoints
from capstan.spec.models import Cluster, Host

JOIN_PHASES = (
    "facts",
    "pki",
    "artifacts",
    "os-prep",
    "runtime",
    "etcd-add",
    "etcd-servers",
    "api-lb",
    "cp-join",
    "worker-join",
)
"""The phases a scale-out runs, in order: create's (not etcd, cp-init, addons, report) plus the two
membership phases, whose ``Phase`` objects the flow passes to ``scale_phases`` (they live with their
implementations in ``capstan.tasks.membership``). etcd members are added before ``etcd-servers``, and
both before any join, so a joining control plane renders its manifest from the updated kubeadm-config."""


class ScaleRefused(CapstanError):
    """The spec asks for something scale-cluster cannot do (the message says what and why)."""


@dataclass(frozen=True)
class EtcdMember:
    """One entry of ``member list``; equality is (name, peer URLs, started), the ID is etcd's."""

    name: str
    peer_urls: tuple[str, ...]
    started: bool
    id: int = field(default=0, compare=False)
    learner: bool = field(default=False, compare=False)

    @property
    def hex_id(self) -> str:
        """The ID as etcdctl takes it (``member remove``/``promote``)."""
        return f"{self.id:x}"

    @property
    def voting(self) -> bool:
        """Started and not a learner: counts towards quorum and serves linearizable reads."""
        return self.started and not self.learner


@dataclass(frozen=True)
class ScalePlan:
    """The outcome of comparing the spec with the cluster (host names, in spec order)."""

    new_control_planes: tuple[str, ...]
    new_workers: tuple[str, ...]
    new_etcd: tuple[str, ...]
    lb_refresh: tuple[str, ...]
    """Existing hosts whose API load balancer configuration changes (api-lb runs there too)."""
    untouched: tuple[str, ...]
    etcd_refresh: tuple[str, ...] = ()
    """Existing control planes whose apiserver --etcd-servers is brought to the spec's etcd hosts."""

    @property
    def new_nodes(self) -> tuple[str, ...]:
        return self.new_control_planes + self.new_workers

    @property
    def etcd_servers(self) -> bool:
        """Whether the ``etcd-servers`` phase runs (new members, or a run that did not finish it)."""
        return bool(self.new_etcd or self.etcd_refresh)

    @property
    def new_hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.new_nodes + self.new_etcd))

    @property
    def touched(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.new_hosts + self.lb_refresh + self.etcd_refresh))


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
                id=int(m.get("ID") or 0),
                learner=bool(m.get("isLearner")),
            )
            for m in members
        ]
    except (ValueError, AttributeError, TypeError) as exc:
        raise CapstanError(f"{where}: etcd member list is unreadable ({type(exc).__name__})") from None


def members_of(host: Host, members: Iterable[EtcdMember]) -> list[EtcdMember]:
    """The entries that are ``host``: its name (or etcd name), or a peer URL naming one of its ips."""
    ips = {host.bind_ip, host.peer_ip}
    names = {host.name, host.etcd_name}
    return [m for m in members if m.name in names or any(_url_host(u) in ips for u in m.peer_urls)]


def is_member(host: Host, members: Iterable[EtcdMember]) -> bool:
    """A host is a member when one of its entries (``members_of``) is a started, voting member."""
    return any(m.voting for m in members_of(host, members))


def strangers(cluster: Cluster, members: Iterable[EtcdMember]) -> list[EtcdMember]:
    """Members that are none of the spec's etcd hosts."""
    mine = {id(m) for h in cluster.etcd_hosts for m in members_of(h, members)}
    return [m for m in members if id(m) not in mine]


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


def plan_scale(
    cluster: Cluster,
    nodes: Iterable[str],
    members: Iterable[EtcdMember],
    listed_endpoints: Sequence[str] | None = None,
) -> ScalePlan:
    """Compare the spec with the cluster's Nodes and etcd members (pure).

    ``listed_endpoints``: the etcd endpoints kubeadm-config's ClusterConfiguration lists (None: not
    read); when they differ from the spec's, the existing control planes' apiservers are refreshed.
    """
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
    stale = listed_endpoints is not None and list(listed_endpoints) != spec_endpoints(cluster)
    etcd_refresh = (
        tuple(h.name for h in cluster.control_planes if h.name not in new) if new_etcd or stale else ()
    )
    touched = new | set(refresh) | set(etcd_refresh)
    untouched = tuple(h.name for h in cluster.hosts if h.name not in touched)
    return ScalePlan(new_cps, new_workers, new_etcd, refresh, untouched, etcd_refresh)


def spec_endpoints(cluster: Cluster) -> list[str]:
    """The etcd client URLs the apiservers should use (``render.etcd.etcd_endpoints``)."""
    return etcd_endpoints(cluster)


def refuse_etcd(cluster: Cluster, members: Iterable[EtcdMember]) -> None:
    """Refuse what scale cannot do with etcd: members the spec does not name (removing is remove-node's).

    An unstarted stranger is refused too: it holds etcd's one learner slot or counts towards quorum
    without voting, and only its owner knows whether it is about to be started.
    """
    others = strangers(cluster, members)
    if others:
        named = ", ".join(f"{m.name or '(unstarted)'} {m.hex_id} at {','.join(m.peer_urls)}" for m in others)
        raise ScaleRefused(
            f"etcd members not in the spec: {named}; scale only adds members: add them to the spec as "
            "etcd hosts, or remove them first (capstan remove-node, or etcdctl member remove <id>)"
        )


def phase_hosts(plan: ScalePlan, phase_id: str) -> tuple[str, ...]:
    """Which hosts each scale phase runs on (create's host sets, restricted to what must change)."""
    if phase_id in ("facts", "pki", "artifacts", "os-prep"):
        return plan.new_hosts
    if phase_id == "runtime":
        return plan.new_nodes
    if phase_id == "etcd-add":
        return plan.new_etcd
    if phase_id == "api-lb":
        return plan.new_nodes + plan.lb_refresh
    if phase_id == "cp-join":
        return plan.new_control_planes
    if phase_id == "worker-join":
        return plan.new_workers
    return ()


def scale_phases(cluster: Cluster, plan: ScalePlan, extra: Iterable[Phase] = ()) -> list[Phase]:
    """The phases of ``JOIN_PHASES`` with their hosts replaced by the plan's; empty ones left out.

    ``extra`` supplies the membership phases (``etcd-add``, ``etcd-servers``); without them those
    steps are left out. ``etcd-servers`` keeps its own hosts (every control plane, one at a time: a
    control plane not joined yet is skipped by the phase itself) and runs when ``plan.etcd_servers``.
    """
    out = []
    by_id = {p.id: p for p in (*CREATE_PHASES, *extra)}
    lb_capable = {h.name for h in lb_hosts(cluster)}
    for pid in JOIN_PHASES:
        if pid not in by_id:
            continue
        if pid == "etcd-servers":
            if plan.etcd_servers:
                out.append(by_id[pid])
            continue
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
