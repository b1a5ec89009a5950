"""Lab naming, addressing, topology and nft rule text: pure functions, no host needed."""

from __future__ import annotations

import ipaddress

import pytest

from capstan.errors import LabError
from capstan.lab import net
from capstan.lab.names import (
    HostSpec,
    bridge_name,
    check_lab_name,
    default_octet,
    default_topology,
    host_ip,
    hosts_from_pairs,
    netns_name,
    veth_name,
)

CP = ("control-plane", "etcd")


@pytest.mark.parametrize("name", ["a", "lab", "twelve-chars", "a-much-longer-lab-name-1", "x" * 32])
def test_interface_names_fit_the_kernel_limit(name: str) -> None:
    assert len(bridge_name(name)) <= 15
    assert len(veth_name(name, 239)) <= 15
    assert bridge_name(name) == bridge_name(name)  # deterministic


def test_short_names_stay_readable_and_long_ones_stay_distinct() -> None:
    assert bridge_name("lab") == "cl-lab"
    assert bridge_name("a-much-longer-lab-name-1") != bridge_name("a-much-longer-lab-name-2")
    assert veth_name("one", 0) != veth_name("two", 0)
    assert netns_name("lab", "cp1") == "capstan-lab-cp1"


@pytest.mark.parametrize("bad", ["", "UPPER", "-x", "x-", "a_b", "x" * 33, "a/b"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(LabError, match="lab name"):
        check_lab_name(bad)


def test_subnet_is_derived_from_the_name_inside_the_lab_range() -> None:
    for name in ("lab", "other", "t123"):
        octet = default_octet(name)
        assert 1 <= octet <= 254 and octet == default_octet(name)
        ip = ipaddress.IPv4Address(host_ip(octet, 0))
        assert ip in ipaddress.IPv4Network("10.250.0.0/16")
        assert str(ip).endswith(".11")
    assert host_ip(7, 1) == "10.250.7.12"


def test_default_topology_is_three_control_planes_and_two_workers() -> None:
    assert default_topology() == [
        HostSpec("cp1", CP),
        HostSpec("cp2", CP),
        HostSpec("cp3", CP),
        HostSpec("w1", ("worker",)),
        HostSpec("w2", ("worker",)),
    ]


def test_host_count_fills_control_planes_first() -> None:
    assert [h.name for h in default_topology(1)] == ["cp1"]
    assert [h.name for h in default_topology(4)] == ["cp1", "cp2", "cp3", "w1"]
    assert [h.name for h in default_topology(workers=1)] == ["cp1", "cp2", "cp3", "w1"]
    assert [h.name for h in default_topology(5, workers=4)] == ["cp1", "w1", "w2", "w3", "w4"]


def test_etcd_count_stays_odd() -> None:
    two = default_topology(2)
    assert [h.roles for h in two] == [CP, ("control-plane",)]


@pytest.mark.parametrize(("hosts", "workers"), [(0, None), (3, 3), (2, 5), (300, None)])
def test_impossible_topologies_are_refused(hosts: int, workers: int | None) -> None:
    with pytest.raises(LabError, match="topology"):
        default_topology(hosts, workers)


def test_explicit_hosts_are_checked() -> None:
    assert hosts_from_pairs([("db", ["etcd"]), ("api", ["control-plane"])])[0] == HostSpec("db", ("etcd",))
    with pytest.raises(LabError, match=r"hosts\[1\].name"):
        hosts_from_pairs([("a", ["etcd"]), ("a", ["worker"])])
    with pytest.raises(LabError, match=r"hosts\[0\].roles"):
        hosts_from_pairs([("a", ["master"])])
    with pytest.raises(LabError, match=r"hosts\[0\].name"):
        hosts_from_pairs([("Bad_Name", ["worker"])])


def test_guard_rules_drop_forwarding_and_open_only_the_mirror_port() -> None:
    rules = net.guard_rules("cl-lab", "cl-lab", "10.250.5.1", [8080])
    assert 'iifname "cl-lab" oifname != "cl-lab" drop' in rules
    assert 'oifname "cl-lab" iifname != "cl-lab" drop' in rules
    assert "ip daddr 10.250.5.1 tcp dport { 8080 } accept" in rules
    assert rules.rstrip().endswith("}")
    assert 'iifname "cl-lab" drop' in rules


def test_fault_rules_cover_partitions_and_loss_but_never_loopback() -> None:
    rules = net.fault_rules(["10.250.5.12", "10.250.5.13"], 30)
    assert "ip saddr { 10.250.5.12, 10.250.5.13 } drop" in rules
    assert "ip daddr { 10.250.5.12, 10.250.5.13 } drop" in rules
    assert rules.count("numgen random mod 100 < 30 drop") == 2
    assert rules.index('iifname "lo" accept') < rules.index("ip saddr")
    total = net.fault_rules([], 100)
    assert "numgen" not in total and total.count("    drop") == 2
    assert "saddr" not in net.fault_rules([], 5)
