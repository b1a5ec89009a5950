"""The ``etcd-add`` phase: a new etcd member joins the running cluster, one host at a time.

Per host (the phase is serial, and an exclusive section keeps two membership changes apart even if a
flow ran it otherwise):

1. An existing member that answers ``endpoint health`` is the one every membership call goes through
   (``via``); its ``member list`` decides (``decide``): a started voting member is left alone; a
   started learner (an earlier run died before promoting it) is promoted; an unstarted entry for this
   host (an earlier run died between ``member add`` and a successful start) is **removed, then the
   host is added again from scratch**: capstan cannot know what state the half-started member's data
   directory is in, and a fresh add is the one path that is tested every time. Unstarted entries of
   other hosts are refused (they would count towards quorum or hold etcd's single learner slot).
2. The host is prepared without starting anything: a running etcd (from an earlier failed attempt) is
   stopped and a ``member`` directory left by one is moved aside to ``<data_dir>/member.stale-<UTC
   time>`` (a non-member's data can never be used again, but deleting data is left to a person; etcd
   only warns about the extra name); then create's
   etcd plan writes the account, data directory, unit and ``/etc/etcd.env`` with
   ``ETCD_INITIAL_CLUSTER_STATE=existing`` and ``ETCD_INITIAL_CLUSTER`` = every current member plus this
   one, from the member list (what ``member add`` prints).
3. ``member add --learner`` (retried for up to a minute while etcd answers "unhealthy cluster": its
   leader accepts a reconfiguration only after being connected to every voter for a few seconds, which
   the member promoted just before is not yet): a learner does not count towards quorum, so a
   one-member cluster keeps its quorum while the new member is not running, and removing it again
   always works. Then the unit is
   started, the learner waited for (``member list`` shows it started), promoted (``member promote`` is
   retried until the learner has caught up) and its own ``endpoint health`` checked.
4. Any failure after ``member add`` stops the new host's etcd, removes the member again through
   ``via`` and fails naming the host: a member is never left added but not started.

The member's later life belongs to create's etcd phase: its env file keeps the bootstrap-only values
written here once it has data, so ``capstan create`` after a scale-out changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from capstan.errors import CapstanError, TransportError
from capstan.facts import gather_facts
from capstan.ops import Op, apply
from capstan.plan.phases import Phase
from capstan.render.etcd import ETCD_ENV_PATH, PEER_PORT, etcd_env
from capstan.spec.models import Cluster, Host
from capstan.tasks import material
from capstan.tasks.create._common import tail
from capstan.tasks.create.etcd import UNIT, etcd_files, etcd_plan, etcd_query, has_data, member_dir
from capstan.tasks.etcd.model import etcdctl_argv
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.scale.model import EtcdMember, members_of, parse_member_list
from capstan.tasks.session import Session

PHASE_ID = "etcd-add"
JOIN_TIMEOUT = 120.0
"""Seconds from ``member add`` until the new member is started, promoted and healthy."""
ADD_TIMEOUT = 60.0
"""Seconds ``member add`` is retried while etcd refuses it for a passing reason (``RETRIED``)."""
RETRIED = ("unhealthy cluster", "not enough started members", "too many learner members")
POLL_INTERVAL = 1.0


class EtcdAddFailed(CapstanError):
    """A new etcd member could not be added (the message names the host and what was undone)."""


def _etcd_hosts(c: Cluster) -> list[Host]:
    return c.etcd_hosts


ETCD_ADD_PHASE = Phase(
    PHASE_ID,
    "New etcd members",
    "serial",
    _etcd_hosts,
    "member add (as a learner) through a healthy member, start with state existing, promote, health; "
    "removed again if it does not come up",
)


@dataclass(frozen=True)
class Decision:
    action: Literal["member", "promote", "add"]
    mine: EtcdMember | None = None
    """The host's started learner (``promote``)."""
    leftovers: tuple[EtcdMember, ...] = ()
    """Unstarted entries for this host, removed before the add."""


def peer_url(host: Host) -> str:
    return f"https://{host.peer_ip}:{PEER_PORT}"


def decide(host: Host, members: list[EtcdMember]) -> Decision:
    """What to do for ``host`` given the member list (pure); refuses unstarted strangers."""
    mine = members_of(host, members)
    others = [m for m in members if all(m is not x for x in mine)]
    unstarted = [m for m in others if not m.started]
    if unstarted:
        urls = ", ".join(f"{m.hex_id} at {','.join(m.peer_urls)}" for m in unstarted)
        raise EtcdAddFailed(
            f"{host.name}: etcd lists members that never started and are not {host.name}: {urls}; start "
            "or remove them (etcdctl member remove <id>) before adding a member"
        )
    if any(m.voting for m in mine):
        return Decision("member")
    learners = [m for m in mine if m.started]
    if learners:
        return Decision("promote", mine=learners[0])
    return Decision("add", leftovers=tuple(mine))


def initial_cluster(host: Host, members: list[EtcdMember]) -> str:
    """``ETCD_INITIAL_CLUSTER`` for ``host`` joining: every other member's name=url, then its own."""
    entries = []
    for m in members:
        if not m.started:
            raise EtcdAddFailed(f"{host.name}: member {m.hex_id} has no name yet (never started)")
        entries += [f"{m.name}={u}" for u in m.peer_urls]
    entries.append(f"{host.etcd_name}={peer_url(host)}")
    return ",".join(entries)


def joining_env(rendered: bytes, initial: str) -> bytes:
    """The rendered env (state ``existing``) with ``ETCD_INITIAL_CLUSTER`` set to ``initial``."""
    out = []
    for line in rendered.decode("utf-8").splitlines():
        out.append(f"ETCD_INITIAL_CLUSTER={initial}" if line.startswith("ETCD_INITIAL_CLUSTER=") else line)
    return ("\n".join(out) + "\n").encode()


def parse_added(text: str, where: str) -> EtcdMember:
    """The member ``etcdctl member add -w json`` created."""
    try:
        m = json.loads(text)["member"]
        return EtcdMember(
            str(m.get("name") or ""),
            tuple(str(u) for u in m.get("peerURLs") or ()),
            bool(m.get("name")),
            id=int(m["ID"]),
            learner=bool(m.get("isLearner")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EtcdAddFailed(f"{where}: member add answered unreadably ({type(exc).__name__})") from None


def _etcdctl(session: Session, on: Host, *args: str, timeout: int = 10) -> tuple[bool, str]:
    """etcdctl on ``on`` against its own member: (ok, stdout or the error's tail)."""
    res = session.transport(on.name).run(
        etcdctl_argv(*args, command_timeout=timeout), sudo=True, check=False, timeout=timeout + 20
    )
    return res.ok, res.stdout if res.ok else tail(res.stderr or res.stdout, 2)[-300:]


def healthy_member(session: Session, host: Host) -> Host:
    """An etcd host other than ``host`` whose member answers ``endpoint health``."""
    tried = []
    for other in session.cluster.etcd_hosts:
        if other.name == host.name:
            continue
        try:
            ok, out = _etcdctl(session, other, "endpoint", "health")
        except TransportError as exc:
            ok, out = False, str(exc)
        if ok:
            return other
        tried.append(f"{other.name}: {out}")
    raise EtcdAddFailed(
        f"{host.name}: no healthy etcd member to add it through ({'; '.join(tried) or 'no other etcd host'})"
    )


def member_list(session: Session, via: Host) -> list[EtcdMember]:
    ok, out = _etcdctl(session, via, "member", "list", "-w", "json")
    if not ok:
        raise EtcdAddFailed(f"{via.name}: etcdctl member list failed: {out}")
    return parse_member_list(out, via.name)


def _remove(session: Session, via: Host, member: EtcdMember) -> None:
    ok, out = _etcdctl(session, via, "member", "remove", member.hex_id)
    if not ok and "member not found" not in out:
        raise EtcdAddFailed(f"{via.name}: etcdctl member remove {member.hex_id} failed: {out}")


@dataclass
class Prepared:
    """What ``_prepare`` did, and the service start it left for after ``member add``."""

    notes: list[str]
    start: list[Op]
    changed: int
    unchanged: int


def _prepare(session: Session, host: Host, members: list[EtcdMember]) -> Prepared:
    """Stop a stray etcd, move stale data aside, write every file; start nothing."""
    c = session.cluster
    t = session.transport(host.name)
    rendered = etcd_files(material.rendered(session, host.name))
    env = etcd_env(c, host, "existing", members=[host])
    files = dict(rendered)
    files[ETCD_ENV_PATH] = replace(env, content=joining_env(env.content, initial_cluster(host, members)))
    query = etcd_query(c, files)
    facts = gather_facts(t, query)
    notes = []
    if facts.unit(UNIT).active:
        t.run(["systemctl", "stop", UNIT], sudo=True, timeout=120)
        notes.append("stopped a stray etcd")
    if has_data(facts, c):
        # Beside it, in the same directory: the data directory may be a mount point of its own.
        aside = f"{member_dir(c)}.stale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        t.run(["mv", "-T", member_dir(c), aside], sudo=True)
        notes.append(f"moved data of an earlier attempt to {aside}")
        facts = gather_facts(t, query)
    *setup, svc, guard = etcd_plan(facts, c, files)
    result = apply(t, setup)
    return Prepared(notes, [svc, guard], result.changed_count, result.unchanged_count)


def _wait_joined(session: Session, host: Host, via: Host, member_id: int, deadline: float) -> None:
    """Until the member is started, promoted to a voter and healthy on its own endpoint."""
    last = "not started yet"
    while True:
        try:
            listed = member_list(session, via)
        except (EtcdAddFailed, TransportError) as exc:  # a membership change may briefly stall answers
            listed, last = [], str(exc)
        mine = [m for m in listed if m.id == member_id]
        if listed and not mine:
            raise EtcdAddFailed(f"{host.name}: member {member_id:x} vanished from the member list")
        m = mine[0] if mine else None
        if m is not None and m.started and m.learner:
            ok, out = _etcdctl(session, via, "member", "promote", m.hex_id)
            last = "promoted" if ok else f"promote: {out}"
        elif m is not None and m.started:
            ok, out = _etcdctl(session, host, "endpoint", "health")
            if ok:
                return
            last = f"endpoint health: {out}"
        if time.monotonic() >= deadline:
            raise EtcdAddFailed(f"{host.name}: etcd member did not join within {JOIN_TIMEOUT:.0f} s ({last})")
        time.sleep(POLL_INTERVAL)


def _member_add(session: Session, host: Host, via: Host) -> EtcdMember:
    """``member add --learner``, retried while etcd refuses it for a passing reason.

    etcd refuses a reconfiguration ("unhealthy cluster") until its leader has been connected to every
    voting member for a few seconds, which a member promoted a moment ago is not yet. A refusal that
    lasts, or any other error, fails; an entry the failed call may still have created is removed.
    """
    argv = ("member", "add", host.etcd_name, f"--peer-urls={peer_url(host)}", "--learner", "-w", "json")
    deadline = time.monotonic() + ADD_TIMEOUT
    while True:
        ok, out = _etcdctl(session, via, *argv)
        if ok:
            return parse_added(out, via.name)
        if not any(r in out for r in RETRIED) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    with contextlib.suppress(CapstanError):
        for m in decide(host, member_list(session, via)).leftovers:
            _remove(session, via, m)
    raise EtcdAddFailed(f"{host.name}: etcdctl member add through {via.name} failed: {out}")


def _undo(session: Session, host: Host, via: Host, member: EtcdMember, why: str) -> EtcdAddFailed:
    """Stop the new member's etcd and remove it again; the error to raise names what happened."""
    # The member is removed below either way; an etcd that still starts then fails on its own.
    with contextlib.suppress(TransportError):
        session.transport(host.name).run(["systemctl", "stop", UNIT], sudo=True, check=False, timeout=120)
    try:
        _remove(session, via, member)
    except CapstanError as exc:
        return EtcdAddFailed(
            f"{host.name}: etcd member {host.etcd_name} did not start ({why}), and removing it again "
            f"failed ({exc}): remove it by hand: etcdctl member remove {member.hex_id}"
        )
    return EtcdAddFailed(
        f"{host.name}: etcd member {host.etcd_name} did not start ({why}); member removed again"
    )


@host_phase_impl(PHASE_ID)
def etcd_add_phase(session: Session, host: Host) -> PhaseOutcome:
    via = healthy_member(session, host)
    decision = decide(host, member_list(session, via))
    if decision.action == "member":
        return PhaseOutcome(PHASE_ID, host.name, 0, 1, note="already a started voting member")
    if session.dry_run:
        what = "promote the started learner" if decision.action == "promote" else "add it as a new member"
        return PhaseOutcome(PHASE_ID, host.name, 1, 0, note=f"would {what} through {via.name}")
    with session.exclusive("etcd-membership"):
        return _join(session, host, via, decision)


def _join(session: Session, host: Host, via: Host, decision: Decision) -> PhaseOutcome:
    notes: list[str] = []
    changed = unchanged = 0
    if decision.action == "promote" and decision.mine is not None:
        member = decision.mine
        changed = 1
        notes.append("promoted a learner an earlier run had started")
    else:
        for left in decision.leftovers:
            _remove(session, via, left)
            notes.append(f"removed unstarted member {left.hex_id} of an earlier run")
        prepared = _prepare(session, host, member_list(session, via))
        notes += prepared.notes
        changed, unchanged = prepared.changed, prepared.unchanged
        member = _member_add(session, host, via)
        changed += 1
        try:
            apply(session.transport(host.name), prepared.start)
        except CapstanError as exc:
            raise _undo(session, host, via, member, f"start failed: {exc}") from None
    deadline = time.monotonic() + JOIN_TIMEOUT
    try:
        _wait_joined(session, host, via, member.id, deadline)
    except CapstanError as exc:
        raise _undo(session, host, via, member, str(exc)) from None
    notes.append(f"member {host.etcd_name} ({member.hex_id}) added through {via.name}, promoted, healthy")
    return PhaseOutcome(PHASE_ID, host.name, changed, unchanged, note="; ".join(notes))


__all__ = [
    "ETCD_ADD_PHASE",
    "PHASE_ID",
    "Decision",
    "EtcdAddFailed",
    "decide",
    "initial_cluster",
    "joining_env",
    "parse_added",
]
