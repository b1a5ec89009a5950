"""Packages, systemd services, users/groups and hostname: facts in → steps out."""

from __future__ import annotations

from typing import Any

import pytest

from capstan.errors import PlanError
from capstan.facts import FileInfo, HostFacts, OsInfo, UnitState
from capstan.ops import Command, Op, file, group, hostname, packages, service, unit_file, user


def strs(op: Any) -> list[str]:
    return [str(s) for s in op.steps]


# -- packages ------------------------------------------------------------------------------------

DEBIAN = OsInfo(id="ubuntu", id_like=("debian",), family="debian", pretty_name="Ubuntu 24.04 LTS")
ROCKY = OsInfo(id="rocky", family="rhel", pretty_name="Rocky Linux 9")


def pkg_facts(os: OsInfo, installed: dict[str, str | None], tools: set[str] | None = None) -> HostFacts:
    return HostFacts(host="h1", os=os, packages=installed, tools=frozenset(tools or ()))


def test_apt_installs_only_missing_packages_noninteractively() -> None:
    op = packages(
        pkg_facts(DEBIAN, {"curl": "7.88", "socat": None, "ipset": None}), ["curl", "socat", "ipset"]
    )
    [step] = op.steps
    assert isinstance(step, Command) and step.env == (("DEBIAN_FRONTEND", "noninteractive"),)
    assert step.argv[-2:] == ("socat", "ipset") and "apt-get install" in step.argv[2]
    assert op.note == "missing: socat, ipset"


def test_dnf_on_the_rhel_family_and_per_family_names() -> None:
    names = {"debian": ["conntrack"], "rhel": ["conntrack-tools"]}
    op = packages(pkg_facts(ROCKY, {"conntrack": None, "conntrack-tools": None}, {"dnf"}), names)
    assert strs(op) == ["dnf install -y conntrack-tools"]
    op = packages(pkg_facts(ROCKY, {"conntrack-tools": None}, {"yum"}), names)
    assert strs(op) == ["yum install -y conntrack-tools"]


def test_converged_host_has_no_package_step_even_without_a_package_manager() -> None:
    other = OsInfo(id="flatcar", family="other")
    assert packages(pkg_facts(other, {"curl": "8.0"}), ["curl"]).steps == ()
    assert packages(pkg_facts(DEBIAN, {"curl": "8.0"}), ["curl"]).note == "all installed"


def test_unsupported_family_with_missing_packages_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="h1: cannot install curl on 'Flatcar'"):
        packages(
            pkg_facts(OsInfo(id="flatcar", family="other", pretty_name="Flatcar"), {"curl": None}), ["curl"]
        )


# -- systemd -------------------------------------------------------------------------------------


def svc_facts(active: str, enabled: str) -> HostFacts:
    return HostFacts(
        host="h1",
        units={"etcd": UnitState(active_state=active, enabled_state=enabled)},
        tools=frozenset({"systemctl"}),
    )


SERVICE_CASES = [
    pytest.param("active", "enabled", {}, [], id="converged"),
    pytest.param("inactive", "disabled", {}, ["systemctl enable etcd", "systemctl start etcd"], id="fresh"),
    pytest.param(
        "",
        "",
        {"unit_changed": True},
        ["systemctl daemon-reload", "systemctl enable etcd", "systemctl start etcd"],
        id="new-unit",
    ),
    pytest.param(
        "active", "enabled", {"config_changed": True}, ["systemctl restart etcd"], id="config-changed"
    ),
    pytest.param(
        "active",
        "enabled",
        {"unit_changed": True},
        ["systemctl daemon-reload", "systemctl restart etcd"],
        id="unit-changed",
    ),
    pytest.param(
        "inactive", "enabled", {"config_changed": True}, ["systemctl start etcd"], id="start-not-restart"
    ),
    pytest.param("active", "static", {}, [], id="static-counts-as-enabled"),
    pytest.param(
        "active",
        "enabled",
        {"running": False, "enabled": False},
        ["systemctl disable etcd", "systemctl stop etcd"],
        id="stop-and-disable",
    ),
    pytest.param("failed", "enabled", {}, ["systemctl start etcd"], id="failed-is-started"),
]


@pytest.mark.parametrize(("active", "enabled", "kw", "steps"), SERVICE_CASES)
def test_service(active: str, enabled: str, kw: dict[str, bool], steps: list[str]) -> None:
    assert strs(service(svc_facts(active, enabled), "etcd", **kw)) == steps


def test_service_restarts_only_when_a_dependency_changed() -> None:
    f = HostFacts(
        host="h1",
        units={"etcd": UnitState(active_state="active", enabled_state="enabled")},
        files={"/etc/default/etcd": None, "/etc/systemd/system/etcd.service": None},
        tools=frozenset({"systemctl"}),
    )
    cfg = file(f, "/etc/default/etcd", "ETCD_NAME=h1\n")
    unit = unit_file(f, "etcd.service", "[Service]\n")
    assert cfg.changed and unit.changed and unit.description == "unit file /etc/systemd/system/etcd.service"
    assert strs(service(f, "etcd", depends_on=[cfg])) == ["systemctl restart etcd"]
    assert strs(service(f, "etcd", depends_on=[Op("file /etc/default/etcd")])) == [], "unchanged: no restart"


def test_service_refuses_masked_units_and_missing_systemctl() -> None:
    with pytest.raises(PlanError, match="masked"):
        service(svc_facts("inactive", "masked"), "etcd")
    no_systemctl = HostFacts(host="h1", units={"etcd": UnitState()})
    with pytest.raises(PlanError, match="systemctl not found"):
        service(no_systemctl, "etcd")


# -- users, groups, hostname ---------------------------------------------------------------------


def test_group_and_user_are_created_only_when_missing() -> None:
    f = HostFacts(host="h1", users={"etcd": None, "root": 0}, groups={"etcd": None, "root": 0})
    assert strs(group(f, "etcd")) == ["groupadd --system etcd"]
    assert strs(user(f, "etcd", group="etcd", home="/var/lib/etcd", comment="etcd user")) == [
        "useradd --no-create-home --shell /usr/sbin/nologin --system --gid etcd --home-dir /var/lib/etcd "
        "--comment 'etcd user' etcd"
    ]
    assert group(f, "root").steps == () and user(f, "root").steps == ()


@pytest.mark.parametrize(
    ("running", "persisted", "changed"),
    [("node1", b"node1\n", False), ("vm", b"vm\n", True), ("node1", b"old\n", True), ("node1", None, True)],
)
def test_hostname(running: str, persisted: bytes | None, changed: bool) -> None:
    info = None if persisted is None else FileInfo(kind="regular file", content=persisted)
    op = hostname(HostFacts(host="h1", hostname=running, files={"/etc/hostname": info}), "node1")
    assert op.changed == changed
    if changed:
        assert op.steps[0].argv[-1] == "node1"  # type: ignore[union-attr]
