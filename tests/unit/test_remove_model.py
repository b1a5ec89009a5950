"""remove-node's pure planning: refusals (unknown host, last control plane, etcd quorum) and the plan."""

from __future__ import annotations

import json

import pytest
from test_create_support import cluster

from capstan.spec.models import Cluster
from capstan.tasks.remove.model import (
    Member,
    RemovePlan,
    RemoveRefused,
    describe,
    find_host,
    healthy_members,
    member_of,
    parse_cluster_health,
    parse_members,
    plan_remove,
    remaining_cluster,
)

NODES = {"cp1", "cp2", "cp3", "w1", "w2"}


def member(i: int) -> Member:
    ip = f"10.0.0.{10 + i}"
    return Member(1000 + i, f"etcd-{i}", (f"https://{ip}:2380",), (f"https://{ip}:2379",))


MEMBERS = [member(i) for i in (1, 2, 3)]


def health(*down: int) -> dict[str, bool]:
    return {m.client_urls[0]: (m.id - 1000) not in down for m in MEMBERS}


def plan(c: Cluster, name: str, *, unreachable: bool = False, down: tuple[int, ...] = ()) -> RemovePlan:
    return plan_remove(c, name, unreachable=unreachable, nodes=NODES, members=MEMBERS, health=health(*down))


def test_unknown_host_lists_the_hosts() -> None:
    with pytest.raises(RemoveRefused, match=r"NODE: 'cp9' is not a host of cluster t \(hosts: cp1, cp2, cp3"):
        find_host(cluster(), "cp9")


def test_last_control_plane_is_refused() -> None:
    c = cluster(
        hosts=[
            {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane", "etcd"]},
            {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
        ]
    )
    with pytest.raises(RemoveRefused, match="cp1 is the last control plane of cluster t"):
        plan_remove(c, "cp1", unreachable=False, nodes={"cp1", "w1"}, members=MEMBERS[:1], health=health())


def test_last_etcd_host_and_last_member_are_refused() -> None:
    c = cluster(
        hosts=[
            {"name": "e1", "address": "10.0.0.11", "roles": ["etcd"]},
            {"name": "cp1", "address": "10.0.0.12", "roles": ["control-plane"]},
            {"name": "cp2", "address": "10.0.0.13", "roles": ["control-plane"]},
        ]
    )
    with pytest.raises(RemoveRefused, match="e1 is the last etcd host of cluster t"):
        plan_remove(c, "e1", unreachable=False, nodes={"cp1", "cp2"}, members=MEMBERS[:1], health=health())
    # The spec has three etcd hosts, etcd itself only one member left: that one is refused as well.
    with pytest.raises(RemoveRefused, match="cp1 is the last etcd member"):
        plan_remove(cluster(), "cp1", unreachable=False, nodes=NODES, members=MEMBERS[:1], health=health())


def test_removing_a_healthy_member_while_another_is_down_breaks_quorum() -> None:
    with pytest.raises(RemoveRefused, match=r"removing cp2 would break etcd quorum: 1 healthy of 2"):
        plan(cluster(), "cp2", down=(3,))


def test_the_dead_member_itself_may_go() -> None:
    p = plan(cluster(), "cp3", unreachable=True, down=(3,))
    assert p.member == MEMBERS[2]


def test_no_quorum_now_is_refused() -> None:
    with pytest.raises(RemoveRefused, match=r"etcd has no quorum now \(1 of 3 members healthy, 2 needed\)"):
        plan(cluster(), "cp3", down=(2, 3))


def test_member_found_by_peer_url_not_by_name() -> None:
    c = cluster()
    renamed = [
        Member(7, "cp1", ("https://10.0.0.99:2380",), ()),
        Member(8, "whatever", ("https://10.0.0.12:2380",), ()),
    ]
    assert member_of(c.host("cp2"), renamed) == renamed[1]
    assert member_of(c.host("cp1"), renamed) is None


def test_worker_plan_touches_no_other_host() -> None:
    p = plan_remove(cluster(), "w1", unreachable=False, nodes=NODES, members=[], health={})
    assert (p.member, p.etcd_fixup, p.lb_refresh, p.handover) == (None, (), (), None)
    assert p.registered and not p.control_plane
    assert p.untouched == ("cp1", "cp2", "cp3", "w2") and p.changed_elsewhere == ()
    assert describe(p)[0] == "removing w1: drain, reset the host, delete the Node"


def test_control_plane_plan_fixes_etcd_servers_and_every_balancer() -> None:
    p = plan_remove(cluster(), "cp2", unreachable=False, nodes=NODES, members=MEMBERS, health=health())
    assert p.member == MEMBERS[1] and p.member.hex_id == "3ea"
    assert p.etcd_fixup == ("cp1", "cp3")
    assert p.lb_refresh == ("cp1", "cp3", "w1", "w2")
    assert p.handover is None and p.untouched == ()


def test_first_control_plane_hands_over_to_the_next() -> None:
    p = plan_remove(cluster(), "cp1", unreachable=True, nodes=NODES, members=MEMBERS, health=health(1))
    assert p.handover == "cp2"
    assert p.changed_elsewhere[:1] == ("cp2",)
    text = describe(p)
    assert text[0].startswith(
        "removing cp1 (unreachable: not contacted): remove etcd member 3e9, delete the Node"
    )
    assert "receives the cluster secrets): cp2" in text[1]


def test_not_a_node_nor_a_member_any_more_still_resets_and_fixes_up() -> None:
    p = plan_remove(
        cluster(), "cp2", unreachable=False, nodes={"cp1"}, members=[MEMBERS[0], MEMBERS[2]], health=health()
    )
    assert p.member is None and not p.registered
    assert p.etcd_fixup == ("cp1", "cp3")  # it had the etcd role: a re-run re-checks the apiservers


def test_remaining_cluster_is_the_spec_without_the_host_and_not_rechecked() -> None:
    c = cluster()
    rest = remaining_cluster(c, "cp3")
    assert [h.name for h in rest.hosts] == ["cp1", "cp2", "w1", "w2"]
    assert [h.name for h in rest.etcd_hosts] == ["cp1", "cp2"]  # two members: allowed as a step
    assert [h.name for h in c.hosts] == ["cp1", "cp2", "cp3", "w1", "w2"]  # the spec is not changed


def test_parse_members_and_health() -> None:
    text = json.dumps(
        {
            "members": [
                {"ID": 12345678901234567890, "name": "cp1", "peerURLs": ["https://10.0.0.11:2380"],
                 "clientURLs": ["https://10.0.0.11:2379"]},
                {"ID": 42, "peerURLs": ["https://10.0.0.12:2380"]},
            ]
        }
    )  # fmt: skip
    members = parse_members(text, "cp1")
    assert members[0].hex_id == "ab54a98ceb1f0ad2" and members[1].name == "" and members[1].client_urls == ()
    got = parse_cluster_health(
        '[{"endpoint":"https://10.0.0.11:2379","health":true},{"endpoint":"https://10.0.0.13:2379","health":false}]'
    )
    assert got == {"https://10.0.0.11:2379": True, "https://10.0.0.13:2379": False}
    assert healthy_members(MEMBERS, got) == {1001}
    assert parse_cluster_health("garbage") == {}
    with pytest.raises(Exception, match="cp1: etcd member list is unreadable"):
        parse_members("{", "cp1")
