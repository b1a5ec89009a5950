"""One flow at a time per cluster: a strict Prefect global concurrency limit per cluster.

Every lifecycle flow holds ``capstan-cluster-<name>`` (limit 1) for its whole run, so an upgrade never
races a scale-out or the nightly backup on the same machines. The limit is created on demand (and put
back to limit 1 / active if someone changed it), and taken with ``strict=True``: Prefect's
``concurrency()`` silently runs *without* a lock when the limit does not exist.

A second run waits up to a timeout (``timeout=``, else ``CAPSTAN_CLUSTER_LOCK_TIMEOUT`` seconds, else
600) and then fails with ``ClusterBusy`` naming the run that holds the cluster. The holder tags its
flow run ``capstan-cluster:<name>`` (so the UI can also filter runs by cluster); Prefect's API does not
say who holds a global limit's slot. A run that fails releases the slot on the way out; a run whose
process dies loses it when its lease (``LEASE_SECONDS``, renewed in the background) expires.

Use ``with cluster_lock(cluster.name): ...`` in a flow body, or decorate a function whose first
argument is the ``Cluster`` with ``@holds_cluster_lock``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Concatenate, ParamSpec, TypeVar
from uuid import UUID

from capstan.errors import CapstanError
from capstan.spec.models import Cluster

LOCK_PREFIX = "capstan-cluster-"
HOLDER_TAG_PREFIX = "capstan-cluster:"
TIMEOUT_ENV = "CAPSTAN_CLUSTER_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
LEASE_SECONDS = 120.0

P = ParamSpec("P")
R = TypeVar("R")


class ClusterBusy(CapstanError):
    """Another flow run holds the cluster's lock and did not release it within the timeout."""


def lock_name(cluster: str) -> str:
    return f"{LOCK_PREFIX}{cluster}"


def holder_tag(cluster: str) -> str:
    return f"{HOLDER_TAG_PREFIX}{cluster}"


def default_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise CapstanError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise CapstanError(f"{TIMEOUT_ENV}={raw!r}: must not be negative")
    return value


def ensure_limit(name: str) -> None:
    """Create the limit (1 slot, active) if missing; repair it if it was widened or deactivated."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first: fine
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            return
        if current.limit != 1 or not current.active:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))


def _current_flow_run_id() -> UUID | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx.flow_run.id if ctx is not None and ctx.flow_run is not None else None


def _mark_holder(flow_run_id: UUID, cluster: str) -> None:
    """Tag the holding run, so a waiting run can name it (best effort: the lock is already held)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tag = holder_tag(cluster)
        if tag not in run.tags:
            client.update_flow_run(flow_run_id, tags=[*run.tags, tag])


def _describe_holders(cluster: str, me: UUID | None) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[holder_tag(cluster)]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=5,
            )
    except Exception:  # naming the holder is a courtesy; the error must still be raised
        return ""
    names = [f"{r.name} ({r.id})" for r in runs if r.id != me]
    return f" with flow run {names[0]}" if names else ""


def _looks_free(name: str) -> bool:
    """After a timeout: is the slot in fact free (the API, not another run, was the obstacle)?"""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            current = client.read_global_concurrency_limit_by_name(name)
    except Exception:  # cannot tell: report the usual "busy"
        return False
    return current.active_slots < current.limit


@contextmanager
def cluster_lock(cluster: str, *, timeout: float | None = None) -> Iterator[None]:
    """Hold ``cluster``'s lock for the body; raise ``ClusterBusy`` after ``timeout`` seconds of waiting."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency.sync import concurrency

    name = lock_name(cluster)
    wait = default_timeout() if timeout is None else timeout
    ensure_limit(name)
    me = _current_flow_run_id()
    holder = ConcurrencyLeaseHolder(type="flow_run", id=me) if me is not None else None
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=wait,
                    strict=True,
                    lease_duration=LEASE_SECONDS,
                    holder=holder,
                )
            )
        except TimeoutError:
            if _looks_free(name):
                raise CapstanError(
                    f"cluster {cluster}: lock {name} was not granted within {wait:g} s although no run "
                    "holds it (is the Prefect server overloaded?)"
                ) from None
            busy = _describe_holders(cluster, me)
            raise ClusterBusy(
                f"cluster {cluster} is busy{busy}; gave up after {wait:g} s waiting for lock {name}"
            ) from None
        if me is not None:
            # Best effort: a missing tag only makes a later ClusterBusy message less precise.
            with suppress(Exception):
                _mark_holder(me, cluster)
        yield


def holds_cluster_lock(
    fn: Callable[Concatenate[Cluster, P], R],
) -> Callable[Concatenate[Cluster, P], R]:
    """Decorator: run ``fn(cluster, ...)`` holding ``cluster``'s lock (default timeout)."""

    @functools.wraps(fn)
    def wrapper(cluster: Cluster, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with cluster_lock(cluster.name):
            return fn(cluster, *args, **kwargs)

    return wrapper


__all__ = [
    "ClusterBusy",
    "cluster_lock",
    "default_timeout",
    "ensure_limit",
    "holder_tag",
    "holds_cluster_lock",
    "lock_name",
]
