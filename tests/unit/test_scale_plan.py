"""scale-cluster's pure planning: which hosts are new, which existing hosts must change, which phases run."""

from __future__ import annotations

import json

import pytest
from test_create_support import cluster

from capstan.errors import CapstanError
from capstan.tasks.scale.model import (
    EtcdMember,
    ScaleRefused,
    is_member,
    parse_member_list,
    plan_scale,
    scale_phases,
)

MEMBERS = [EtcdMember(f"cp{i}", (f"https://10.0.0.{10 + i}:2380",), True) for i in (1, 2, 3)]


def test_new_worker_touches_no_existing_host() -> None:
    c = cluster()
    plan = plan_scale(c, {"cp1", "cp2", "cp3", "w1"}, MEMBERS)
    assert plan.new_workers == ("w2",)
    assert plan.new_control_planes == () and plan.new_etcd == () and plan.lb_refresh == ()
    assert plan.touched == ("w2",)
    assert plan.untouched == ("cp1", "cp2", "cp3", "w1")
    phases = {p.id: [h.name for h in p.hosts(c)] for p in scale_phases(c, plan)}
    assert list(phases) == ["facts", "pki", "artifacts", "os-prep", "runtime", "api-lb", "worker-join"]
    assert all(hosts == ["w2"] for hosts in phases.values())


def test_new_control_plane_refreshes_every_existing_node_local_balancer() -> None:
    doc_hosts = [
        {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane", "etcd"]},
        {"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]},
        {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
        {"name": "w2", "address": "10.0.0.22", "roles": ["worker"]},
    ]
    c = cluster(hosts=doc_hosts)
    plan = plan_scale(c, {"cp1", "w1"}, MEMBERS[:1])
    assert plan.new_control_planes == ("cp2",) and plan.new_workers == ("w2",)
    assert plan.lb_refresh == ("cp1", "w1")
    assert plan.untouched == ()
    phases = {p.id: [h.name for h in p.hosts(c)] for p in scale_phases(c, plan)}
    assert phases["facts"] == ["cp2", "w2"]
    assert phases["api-lb"] == ["cp2", "w2", "cp1", "w1"]
    assert phases["cp-join"] == ["cp2"] and phases["worker-join"] == ["w2"]
    assert [p.concurrency for p in scale_phases(c, plan) if p.id == "cp-join"] == ["serial"]


def test_external_endpoint_has_no_balancer_to_refresh() -> None:
    doc_hosts = [
        {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane", "etcd"]},
        {"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]},
        {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
    ]
    c = cluster(hosts=doc_hosts, controlPlaneEndpoint={"mode": "external", "address": "10.0.0.5"})
    plan = plan_scale(c, {"cp1", "w1"}, MEMBERS[:1])
    assert plan.lb_refresh == () and plan.untouched == ("cp1", "w1")
    assert "api-lb" not in [p.id for p in scale_phases(c, plan)]


def test_converged_cluster_has_nothing_to_add() -> None:
    c = cluster()
    plan = plan_scale(c, {"cp1", "cp2", "cp3", "w1", "w2", "gone"}, MEMBERS)
    assert plan.new_hosts == () and plan.touched == ()
    assert scale_phases(c, plan) == []


def test_first_control_plane_must_exist() -> None:
    with pytest.raises(ScaleRefused, match=r"first control plane cp1 .*capstan create"):
        plan_scale(cluster(), {"w1"}, MEMBERS)


def test_membership_by_peer_url_when_names_differ() -> None:
    c = cluster()
    renamed = [EtcdMember("etcd-a", ("https://10.0.0.13:2380",), True)]
    assert is_member(c.host("cp3"), renamed)
    assert not is_member(c.host("cp2"), renamed)
    v6 = [EtcdMember("", ("https://[fd00::3]:2380",), False)]
    assert not is_member(c.host("cp3"), v6)


def test_parse_member_list() -> None:
    text = json.dumps(
        {
            "header": {"cluster_id": 1},
            "members": [
                {"ID": 1, "name": "cp1", "peerURLs": ["https://10.0.0.11:2380"], "clientURLs": []},
                {"ID": 2, "peerURLs": ["https://10.0.0.12:2380"]},
            ],
        }
    )
    members = parse_member_list(text, "cp1")
    assert members == [
        EtcdMember("cp1", ("https://10.0.0.11:2380",), True),
        EtcdMember("", ("https://10.0.0.12:2380",), False),
    ]
    with pytest.raises(CapstanError, match="cp1: etcd member list is unreadable"):
        parse_member_list("not json", "cp1")
