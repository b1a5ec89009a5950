"""The per-cluster lock against a real server: created on demand, strict, one holder, released on
failure, repaired if widened, and a waiter that gives up says so clearly."""

from __future__ import annotations

import contextvars
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from capstan.flows.lock import ClusterBusy, cluster_lock, lock_name

Platform = Any  # conftest.Platform


def limit(platform: Platform, cluster: str) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = platform.api("POST", "/v2/concurrency_limits/filter", {})
    return next((lim for lim in found if lim["name"] == lock_name(cluster)), None)


def name(tag: str) -> str:
    return f"lock-{os.getpid()}-{tag}"


def test_lock_is_created_on_demand_with_one_slot_and_freed_after(platform: Platform) -> None:
    cluster = name("demand")
    assert limit(platform, cluster) is None
    with cluster_lock(cluster, timeout=30):
        held = limit(platform, cluster)
        assert held is not None
        assert (held["limit"], held["active"], held["active_slots"]) == (1, True, 1)
    after = limit(platform, cluster)
    assert after is not None and after["active_slots"] == 0


def test_second_holder_fails_clearly_and_a_waiter_gets_the_lock_once_released(platform: Platform) -> None:
    cluster = name("busy")
    taken, release, released = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with cluster_lock(cluster, timeout=30):
                taken.set()
                release.wait(60)
            released.set()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
            taken.set()

    # The thread carries this context: the fixture's Prefect settings live in a context variable.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(holder,))
    thread.start()
    try:
        assert taken.wait(60) and not errors, errors
        busy = rf"^cluster {cluster} is busy; gave up after 1 s waiting"
        with pytest.raises(ClusterBusy, match=busy), cluster_lock(cluster, timeout=1):
            pytest.fail("two holders of one cluster's lock")
        # A patient waiter: the holder lets go while this one is waiting, and it then gets the lock.
        timer = threading.Timer(1.0, release.set)
        timer.start()
        with cluster_lock(cluster, timeout=60):
            assert released.is_set()
    finally:
        release.set()
        thread.join(60)
    assert not errors, errors


def test_a_failing_body_releases_the_lock(platform: Platform) -> None:
    cluster = name("fail")
    with pytest.raises(RuntimeError, match="boom"), cluster_lock(cluster, timeout=30):
        raise RuntimeError("boom")
    with cluster_lock(cluster, timeout=2):
        pass


def test_a_widened_or_disabled_limit_is_put_back_to_one_active_slot(platform: Platform) -> None:
    cluster = name("wide")
    platform.api("POST", "/v2/concurrency_limits/", {"name": lock_name(cluster), "limit": 5, "active": False})
    with cluster_lock(cluster, timeout=30):
        held = limit(platform, cluster)
        assert held is not None and (held["limit"], held["active"]) == (1, True)


def test_the_decorator_holds_the_lock_of_the_cluster_it_is_given(platform: Platform) -> None:
    from capstan.flows.lock import holds_cluster_lock
    from capstan.spec import load_spec
    from capstan.spec.models import Cluster

    cluster = load_spec(Path(__file__).resolve().parents[2] / "examples" / "single.yaml")
    cluster = cluster.model_copy(
        update={"metadata": cluster.metadata.model_copy(update={"name": name("deco")})}
    )

    @holds_cluster_lock
    def operate(c: Cluster, what: str) -> int | None:
        held = limit(platform, c.name)
        return held["active_slots"] if held is not None and what == "slots" else None

    assert operate(cluster, "slots") == 1
    after = limit(platform, cluster.name)
    assert after is not None and after["active_slots"] == 0
