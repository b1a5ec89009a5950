"""etcd-add's membership calls and etcd-servers' skip rules against scripted hosts (no lab, no Prefect).

The hosts are ``FakeTransport``s answering etcdctl as etcd 3.4 does (texts taken from a real etcd):
what is retried, what is undone, and that nothing is written on a dry run or without a manifest.
"""

from __future__ import annotations

import json
import re

import pytest
from test_create_support import cluster

from capstan.remote.base import Result
from capstan.remote.fake import FakeTransport
from capstan.spec.models import Cluster, Host
from capstan.tasks.create._kubeadm import APISERVER_MANIFEST
from capstan.tasks.membership import etcd_add, etcd_servers
from capstan.tasks.scale.model import EtcdMember
from capstan.tasks.session import Session

HOSTS = [
    {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane", "etcd"]},
    {"name": "e2", "address": "10.0.0.32", "roles": ["etcd"]},
    {"name": "e3", "address": "10.0.0.33", "roles": ["etcd"]},
]
UNHEALTHY = "Error: etcdserver: unhealthy cluster"
ADDED = json.dumps(
    {"member": {"ID": 4390090927710084243, "peerURLs": ["https://10.0.0.33:2380"], "isLearner": True}}
)


def session_with(fakes: dict[str, FakeTransport], *, dry_run: bool = False) -> tuple[Session, Cluster]:
    c = cluster(hosts=HOSTS)

    def factory(_: Cluster, host: Host) -> FakeTransport:
        return fakes[host.name]

    return Session("k", c, factory=factory, dry_run=dry_run), c


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_add, "POLL_INTERVAL", 0.0)


def test_member_add_is_retried_while_etcd_calls_the_cluster_unhealthy() -> None:
    cp1 = FakeTransport("cp1", default=None)
    cp1.on(re.compile(r"member add e3 "), exit_code=1, stderr=f"warn...\n{UNHEALTHY}\n", times=2)
    cp1.on(re.compile(r"member add e3 --peer-urls=https://10.0.0.33:2380 --learner -w json"), ADDED)
    session, c = session_with({"cp1": cp1})
    added = etcd_add._member_add(session, c.host("e3"), c.host("cp1"))
    assert added.hex_id == "3cecbc7065d31c93" and added.learner
    assert sum("member add" in cmd for cmd in cp1.commands) == 3


def test_a_member_add_that_keeps_failing_removes_what_it_may_have_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(etcd_add, "ADD_TIMEOUT", 0.0)
    leftover = {"members": [{"ID": 7, "peerURLs": ["https://10.0.0.33:2380"], "isLearner": True}]}
    cp1 = FakeTransport("cp1", default=None)
    cp1.on(re.compile(r"member add e3 "), exit_code=1, stderr="Error: context deadline exceeded\n")
    cp1.on(re.compile(r"member list -w json"), json.dumps(leftover))
    cp1.on(re.compile(r"member remove 7$"), "Member 7 removed")
    session, c = session_with({"cp1": cp1})
    with pytest.raises(
        etcd_add.EtcdAddFailed, match=r"e3: etcdctl member add through cp1 failed: .*deadline"
    ):
        etcd_add._member_add(session, c.host("e3"), c.host("cp1"))
    assert any(cmd.endswith("member remove 7") for cmd in cp1.commands)


def test_undo_stops_the_new_etcd_and_removes_the_member() -> None:
    cp1 = FakeTransport("cp1", default=None)
    cp1.on(re.compile(r"member remove 3cecbc7065d31c93$"), "removed")
    e3 = FakeTransport("e3", default=None)
    e3.on(re.compile(r"systemctl stop etcd.service"), "")
    session, c = session_with({"cp1": cp1, "e3": e3})
    member = EtcdMember("", ("https://10.0.0.33:2380",), False, id=4390090927710084243)
    err = etcd_add._undo(session, c.host("e3"), c.host("cp1"), member, "start failed: exited 1")
    assert str(err) == "e3: etcd member e3 did not start (start failed: exited 1); member removed again"
    refusing = FakeTransport("cp1", default=None)
    refusing.on(re.compile(r"member remove"), Result(1, "", "Error: etcdserver: unhealthy cluster"))
    session, c = session_with({"cp1": refusing, "e3": e3})
    err = etcd_add._undo(session, c.host("e3"), c.host("cp1"), member, "timeout")
    assert "removing it again failed" in str(err) and "etcdctl member remove 3cecbc7065d31c93" in str(err)


def test_no_healthy_member_names_every_host_tried() -> None:
    cp1 = FakeTransport("cp1", default=None).on(
        re.compile("endpoint health"), exit_code=1, stderr="Error: unhealthy cluster\n"
    )
    e2 = FakeTransport("e2", default=None).on(re.compile("endpoint health"), exit_code=1, stderr="refused\n")
    session, c = session_with({"cp1": cp1, "e2": e2})
    with pytest.raises(etcd_add.EtcdAddFailed, match=r"e3: no healthy etcd member .*cp1: .*; e2: refused"):
        etcd_add.healthy_member(session, c.host("e3"))
    healthy = FakeTransport("e2", default=None).on(re.compile("endpoint health"), "healthy")
    session, c = session_with({"cp1": cp1, "e2": healthy})
    assert etcd_add.healthy_member(session, c.host("e3")).name == "e2"


def test_etcd_servers_skips_a_control_plane_that_has_not_joined_and_writes_nothing_on_a_dry_run() -> None:
    cp1 = FakeTransport("cp1", default=None)
    cp1.on(f"test -f {APISERVER_MANIFEST}", exit_code=1)
    session, c = session_with({"cp1": cp1})
    assert etcd_servers._sync_manifest(session, c.host("cp1"), ["https://10.0.0.11:2379"]) is None
    manifest = "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --etcd-servers=https://10.0.0.11:2379\n"
    cp1 = FakeTransport("cp1", files={APISERVER_MANIFEST: manifest.encode()})
    session, c = session_with({"cp1": cp1}, dry_run=True)
    three = etcd_servers.wanted(c)
    assert etcd_servers._sync_manifest(session, c.host("cp1"), three) is True
    assert etcd_servers._sync_manifest(session, c.host("cp1"), ["https://10.0.0.11:2379"]) is False
    assert not [call for call in cp1.calls if call.kind == "put"]
    assert cp1.get(APISERVER_MANIFEST) == manifest.encode()
