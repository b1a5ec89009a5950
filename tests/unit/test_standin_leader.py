"""Leader election of the controller-manager and scheduler stand-ins (``common/leader.py``), against the
in-process API server with the scheduler's own identity (so its RBAC on leases is exercised too).

Time is a fake clock each candidate reads, so "the lease lapsed" needs no waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_standin_apiserver_support import Api, Pki, make_pki

from capstan.lab.standins.apiserver import controller
from capstan.lab.standins.common.client import KubeClient
from capstan.lab.standins.common.leader import LeaderElector

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def api(pki: Pki) -> Iterator[Api]:
    server = Api(pki, authorization_mode="Node,RBAC")
    yield server
    server.close()


@pytest.fixture
def client(api: Api, pki: Pki) -> KubeClient:
    return api.client(pki.client("system:kube-scheduler"))


def elector(client: KubeClient, who: str, clock: Clock) -> LeaderElector:
    return LeaderElector(client, "kube-scheduler", identity=who, clock=clock)


def test_one_candidate_leads_and_the_other_takes_over_only_after_the_lease_lapsed(client: KubeClient) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(client, "cp1_a", clock_a), elector(client, "cp2_b", clock_b)
    assert a.leading() and not b.leading()
    assert client.get(LEASE)["spec"]["holderIdentity"] == "cp1_a"
    for _ in range(10):  # a renews every 2 s; b keeps seeing a changing record: never takes it
        clock_a.now += 2
        clock_b.now += 2
        assert a.leading() and not b.leading()
    clock_b.now += 14  # a has stopped renewing (it is frozen): 14 s is still inside b's 15 s
    assert not b.leading()
    clock_b.now += 2
    assert b.leading()
    spec = client.get(LEASE)["spec"]
    assert spec["holderIdentity"] == "cp2_b" and spec["leaseTransitions"] == 1
    clock_a.now += 2  # a wakes up: it sees b's lease and stops acting at once
    assert not a.leading()


def test_a_released_lease_is_taken_at_the_next_try(client: KubeClient) -> None:
    clock = Clock()
    a, b = elector(client, "cp1_a", clock), elector(client, "cp2_b", clock)
    assert a.leading() and not b.leading()
    a.release()
    assert not a.leading() and client.get(LEASE)["spec"]["holderIdentity"] == ""
    clock.now += 2
    assert b.leading()


def test_a_leader_that_cannot_reach_the_api_stops_acting_after_the_renew_deadline(
    api: Api, client: KubeClient
) -> None:
    clock = Clock()
    a = elector(client, "cp1_a", clock)
    assert a.leading()
    api.close()  # no answer at all from here on
    clock.now += 8
    assert a.leading()  # 8 s without a renewal: still inside the 10 s deadline
    clock.now += 4
    assert not a.leading()


def test_the_controller_loop_runs_its_steps_only_while_leading() -> None:
    import threading

    stop, ran, turns = threading.Event(), [], iter([False, True, False])

    def leading() -> bool:
        try:
            return next(turns)
        except StopIteration:
            stop.set()
            return False

    controller._every(0.0, [lambda: ran.append(1)], stop, leading)
    assert ran == [1]
