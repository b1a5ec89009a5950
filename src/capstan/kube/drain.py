"""Cordon, uncordon and drain a node through the API (the Eviction subresource; no kubectl).

Why eviction and not delete: an eviction is refused (429) while it would break a PodDisruptionBudget,
so a drain never takes an application below what its owners declared it needs. A refused eviction is
retried until the deadline, because budgets free up as replacement pods elsewhere turn Ready; at the
deadline the drain fails with ``DrainBlocked`` naming every pod still on the node and why.

What is not evicted, as ``kubectl drain`` decides it: DaemonSet pods (their controller would put them
straight back, and they tolerate the cordon) and mirror pods (the kubelet runs static pods from files;
the API object is only a mirror). A pod with an ``emptyDir`` volume loses that data when evicted, so it
is evicted only when the caller allows it; otherwise it blocks the drain before anything is evicted.
A pod without a controller is evicted too, and the report says it will not come back.

The decisions are pure functions of Pod objects as plain dicts (``plan_drain``), so unit tests cover
them without a cluster; ``drain`` is the loop against the API. ``drain`` leaves the node cordoned when
it fails; ``drain_or_uncordon`` undoes its own cordon (never an operator's earlier one) and re-raises.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ApiError, Client
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource, create_api_info
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from capstan.kube.access import KubeError

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RETRY_CODES = frozenset({409, 429, 500, 502, 503, 504})
"""Eviction answers worth retrying: a budget (429), a conflicting write, a server hiccup. Others
(400, 403, 422) will not change by waiting, so they block the drain at once."""


class _PodDict(GenericNamespacedResource):
    """Pods read as plain dicts. lightkube's typed Pod refuses a whole list when one item lacks a field
    its model requires (e.g. a container status without ``imageID``); a drain must read every pod.
    Deliberately not registered with lightkube, so nothing else starts receiving dicts."""

    _api_info = create_api_info("", "v1", "Pod", "pods")


class _NodeDict(GenericGlobalResource):
    """Nodes read as plain dicts, for the same reason (only ``spec.unschedulable`` matters here)."""

    _api_info = create_api_info("", "v1", "Node", "nodes")


_BUDGET_RE = re.compile(r"disruption budget (?P<name>[^\s,]+) needs (?P<rest>.*)$", re.IGNORECASE)


class DrainBlocked(KubeError):
    """Pods that could not leave ``node``; each blocker reads ``namespace/pod: reason``."""

    def __init__(
        self, node: str, blockers: Iterable[str], *, detail: str = "", cordoned_by_drain: bool = True
    ) -> None:
        self.node = node
        self.blockers = tuple(blockers)
        self.detail = detail
        self.cordoned_by_drain = cordoned_by_drain
        super().__init__(blocked_message(node, self.blockers, detail))

    def __reduce__(self) -> Any:
        # Prefect carries exceptions across processes in states: rebuild from our own fields.
        return (_rebuild, (self.node, self.blockers, self.detail, self.cordoned_by_drain))


def _rebuild(node: str, blockers: tuple[str, ...], detail: str, cordoned: bool) -> DrainBlocked:
    return DrainBlocked(node, blockers, detail=detail, cordoned_by_drain=cordoned)


def blocked_message(node: str, blockers: tuple[str, ...], detail: str = "") -> str:
    """``drain w1: 1 pod cannot leave the node after 30 s: default/web-1: <why>`` (one line)."""
    count = f"{len(blockers)} pod{'s' if len(blockers) != 1 else ''}"
    head = f"drain {node}: {count} cannot leave the node"
    return head + (f" {detail}" if detail else "") + ": " + "; ".join(blockers)


@dataclass(frozen=True)
class DrainReport:
    """What a drain did: ``evicted`` and ``skipped`` read ``namespace/pod`` plus a note in brackets."""

    node: str
    evicted: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float
    cordoned: bool = True
    """True when this drain cordoned the node (False: it was unschedulable already)."""


@dataclass(frozen=True)
class DrainPlan:
    """The pods of a node sorted into what a drain evicts, skips, or cannot evict."""

    evict: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    terminating: tuple[str, ...] = ()


def pod_ref(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _controller(pod: Obj) -> Obj | None:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def _emptydirs(pod: Obj) -> list[str]:
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return [str(v.get("name")) for v in volumes if "emptyDir" in v and v.get("emptyDir") is not None]


def plan_drain(pods: Iterable[Obj], *, delete_emptydir: bool = True) -> DrainPlan:
    """Sort a node's pods: skip mirror and DaemonSet pods, block or evict emptyDir ones, evict the rest.

    Pods already being deleted are not evicted again, only waited for (``terminating``).
    """
    evict: list[str] = []
    notes: dict[str, str] = {}
    skipped: list[str] = []
    blockers: list[str] = []
    terminating: list[str] = []
    for pod in pods:
        ref = pod_ref(pod)
        meta = pod.get("metadata") or {}
        owner = _controller(pod)
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            skipped.append(f"{ref} (mirror pod)")
            continue
        if owner is not None and owner.get("kind") == "DaemonSet":
            skipped.append(f"{ref} (DaemonSet)")
            continue
        if meta.get("deletionTimestamp"):
            terminating.append(ref)
            continue
        local = _emptydirs(pod)
        if local and not delete_emptydir:
            blockers.append(f"{ref}: uses emptyDir volume {', '.join(local)}, whose data an eviction deletes")
            continue
        evict.append(ref)
        if owner is None:
            notes[ref] = "no controller: it will not be recreated"
        elif local:
            notes[ref] = f"emptyDir {', '.join(local)} deleted"
    return DrainPlan(tuple(evict), notes, tuple(skipped), tuple(blockers), tuple(terminating))


def eviction_refusal(status: Obj, namespace: str) -> str:
    """Why an eviction was refused, in one line; a budget refusal names ``namespace/budget``.

    ``status`` is the API's Status answer as a dict. The real apiserver and the lab's stand-in both
    put ``The disruption budget NAME needs N healthy pods and has M currently`` in a cause (and the
    stand-in also in the message).
    """
    texts = [str(c.get("message") or "") for c in ((status.get("details") or {}).get("causes") or [])]
    texts.append(str(status.get("message") or ""))
    for text in texts:
        found = _BUDGET_RE.search(text)
        if found:
            name, rest = found.group("name"), found.group("rest").rstrip(". ")
            return f"disruption budget {namespace}/{name} allows no eviction (needs {rest})"
    code = status.get("code")
    message = (status.get("message") or status.get("reason") or "refused").strip()
    return f"eviction refused (HTTP {code}): {message}" if code else f"eviction refused: {message}"


# ---- against the API ----------------------------------------------------------------------------


def _set_unschedulable(client: Client, node: str, value: bool) -> bool:
    try:
        current = dict(client.get(_NodeDict, node))
        if bool((current.get("spec") or {}).get("unschedulable")) == value:
            return False
        # JSON merge patch: null removes the field, as `kubectl uncordon` leaves a node.
        client.patch(
            _NodeDict, node, {"spec": {"unschedulable": True if value else None}}, patch_type=PatchType.MERGE
        )
    except ApiError as exc:
        verb = "cordon" if value else "uncordon"
        raise KubeError(f"cannot {verb} node {node}: {exc.status.message}") from None
    return True


def cordon(client: Client, node: str) -> bool:
    """Mark ``node`` unschedulable; True when it changed (it was schedulable)."""
    return _set_unschedulable(client, node, True)


def uncordon(client: Client, node: str) -> bool:
    """Mark ``node`` schedulable again; True when it changed (it was cordoned)."""
    return _set_unschedulable(client, node, False)


def pods_on(client: Client, node: str) -> list[dict[str, Any]]:
    """Every pod bound to ``node`` (all namespaces), as dicts; filtered here too, whatever the server did."""
    try:
        pods = [dict(p) for p in client.list(_PodDict, namespace="*", fields={"spec.nodeName": node})]
    except ApiError as exc:
        raise KubeError(f"cannot list the pods of node {node}: {exc.status.message}") from None
    return [p for p in pods if (p.get("spec") or {}).get("nodeName") == node]


def eviction(ref: str, grace_period_seconds: int = -1) -> Any:
    """The Eviction for pod ``ref`` ("namespace/name"); a grace period >= 0 replaces the pod's own
    terminationGracePeriodSeconds (``kubectl drain --grace-period``), -1 keeps the pod's. (Typed Any:
    lightkube's ``Pod.Eviction`` is a class attribute, not usable as a type.)"""
    namespace, name = ref.split("/", 1)
    options = DeleteOptions(gracePeriodSeconds=grace_period_seconds) if grace_period_seconds >= 0 else None
    return Pod.Eviction(metadata=ObjectMeta(name=name, namespace=namespace), deleteOptions=options)


def _evict(client: Client, ref: str, grace_period_seconds: int = -1) -> tuple[bool, str]:
    """(done, why not): done when the pod was evicted or is gone; why not when it should be retried.

    Raises KubeError (unretryable refusal) for answers that waiting will not change.
    """
    namespace, name = ref.split("/", 1)
    try:
        client.create(eviction(ref, grace_period_seconds), name, namespace=namespace)
    except ApiError as exc:
        code = exc.status.code or 0
        if code == 404:
            return True, ""
        why = eviction_refusal(exc.status.to_dict(), namespace)
        if code in RETRY_CODES:
            return False, why
        raise KubeError(why) from None
    except httpx2.TransportError as exc:
        return False, f"API unreachable: {type(exc).__name__}"
    return True, ""


def drain(
    client: Client,
    node: str,
    *,
    timeout: float = 300.0,
    delete_emptydir: bool = True,
    grace_period_seconds: int = -1,
    retry_interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainReport:
    """Cordon ``node``, evict its pods (retrying refusals), wait until they are gone; within ``timeout``.

    ``grace_period_seconds`` >= 0 is each evicted pod's termination grace (-1: the pod's own).
    Raises DrainBlocked naming each pod still on the node and the last reason. Never uncordons.
    """
    start = clock()
    deadline = start + timeout
    cordoned = cordon(client, node)
    pods = pods_on(client, node)
    plan = plan_drain(pods, delete_emptydir=delete_emptydir)
    if plan.blockers:
        raise DrainBlocked(node, plan.blockers, detail="(nothing evicted)", cordoned_by_drain=cordoned)
    uids = {pod_ref(p): (p.get("metadata") or {}).get("uid") for p in pods}
    pending = list(plan.evict)
    reasons: dict[str, str] = {}
    evicted: list[str] = []
    while pending:
        for ref in list(pending):
            try:
                done, why = _evict(client, ref, grace_period_seconds)
            except KubeError as exc:
                raise DrainBlocked(node, [f"{ref}: {exc}"], cordoned_by_drain=cordoned) from None
            if done:
                pending.remove(ref)
                evicted.append(ref)
                note = plan.notes.get(ref)
                log.info("drain %s: evicted %s%s", node, ref, f" ({note})" if note else "")
            else:
                reasons[ref] = why
        if not pending:
            break
        left = deadline - clock()
        if left <= 0:
            blockers = [f"{ref}: {reasons[ref]}" for ref in pending]
            raise DrainBlocked(node, blockers, detail=f"after {timeout:.0f} s", cordoned_by_drain=cordoned)
        sleep(min(retry_interval, left))
    leaving = {r: uids.get(r) for r in (*evicted, *plan.terminating)}
    _wait_gone(client, node, leaving, deadline, cordoned, clock=clock, sleep=sleep)
    return DrainReport(
        node=node,
        evicted=tuple(f"{r} ({plan.notes[r]})" if r in plan.notes else r for r in evicted),
        skipped=plan.skipped,
        seconds=round(clock() - start, 3),
        cordoned=cordoned,
    )


def still_leaving(pods: Iterable[Obj], leaving: Mapping[str, Any]) -> list[str]:
    """Refs of ``leaving`` (ref -> uid, None when unknown) still among ``pods``.

    A pod recreated under the same name (a StatefulSet's) has a new uid and is not the one evicted.
    """
    out = []
    for pod in pods:
        ref = pod_ref(pod)
        if ref in leaving and leaving[ref] in (None, (pod.get("metadata") or {}).get("uid")):
            out.append(ref)
    return out


def _wait_gone(
    client: Client,
    node: str,
    leaving: Mapping[str, Any],
    deadline: float,
    cordoned: bool,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Poll until none of the evicted pods is on the node any more (graceful termination takes time)."""
    while leaving:
        still = still_leaving(pods_on(client, node), leaving)
        if not still:
            return
        left = deadline - clock()
        if left <= 0:
            blockers = [f"{ref}: evicted but still terminating" for ref in still]
            raise DrainBlocked(node, blockers, detail="at the deadline", cordoned_by_drain=cordoned)
        sleep(min(1.0, left))


def drain_or_uncordon(client: Client, node: str, **kw: Any) -> DrainReport:
    """``drain``; when it is blocked, uncordon the node (if this drain cordoned it) and re-raise.

    A node an operator had cordoned before stays cordoned: undoing their decision is not ours to do.
    """
    try:
        return drain(client, node, **kw)
    except DrainBlocked as exc:
        if not exc.cordoned_by_drain:
            raise DrainBlocked(
                exc.node,
                exc.blockers,
                detail=_join(exc.detail, "(left cordoned: it was cordoned before the drain)"),
                cordoned_by_drain=False,
            ) from None
        try:
            uncordon(client, node)
        except KubeError as undo:
            raise DrainBlocked(
                exc.node, exc.blockers, detail=_join(exc.detail, f"(and {undo})"), cordoned_by_drain=True
            ) from None
        raise DrainBlocked(
            exc.node, exc.blockers, detail=_join(exc.detail, "(node uncordoned)"), cordoned_by_drain=True
        ) from None


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)
