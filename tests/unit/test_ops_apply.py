"""The executor on FakeTransport: order, dry run, failures; and a whole gather → plan → apply round."""

from __future__ import annotations

import re

import pytest

from capstan.errors import CommandFailed, ConnectError, TransportTimeout
from capstan.facts import FactsQuery, HostFacts, UnitState, gather_facts
from capstan.ops import Command, Op, PutFile, apply, file, service, sysctl
from capstan.remote import Err, FakeTransport, Ok, fan_out, raise_failures

OPS = [
    Op("file /etc/a", (PutFile("/etc/a", b"A", 0o600, "root", "root"),)),
    Op("sysctl x", (), "already set"),
    Op(
        "service etcd",
        (
            Command(("systemctl", "daemon-reload")),
            Command(
                ("apt-get", "install", "-y", "x"), env=(("DEBIAN_FRONTEND", "noninteractive"),), timeout=900
            ),
        ),
    ),
]


def test_apply_runs_every_step_in_order_with_sudo_and_reports_changes() -> None:
    fake = FakeTransport("h1")
    result = apply(fake, OPS)
    assert [(c.kind, c.command) for c in fake.calls] == [
        ("put", "/etc/a"),
        ("run", "systemctl daemon-reload"),
        ("run", "apt-get install -y x"),
    ]
    assert all(c.sudo for c in fake.calls)
    assert fake.calls[2].env == {"DEBIAN_FRONTEND": "noninteractive"} and fake.calls[2].timeout == 900
    assert fake.files["/etc/a"].data == b"A" and fake.files["/etc/a"].mode == 0o600
    assert result.changed and len(result.steps) == 3 and not result.dry_run
    assert (result.changed_count, result.unchanged_count) == (2, 1)
    assert result.description == "2 of 3 operations changed: file /etc/a, service etcd"


def test_dry_run_returns_the_steps_and_runs_nothing() -> None:
    fake = FakeTransport("h1", default=None)  # any command would raise UnscriptedCommand
    result = apply(fake, OPS, dry_run=True)
    assert fake.calls == [] and result.dry_run and result.changed
    assert [str(s) for s in result.steps] == [
        "put /etc/a (1 bytes, mode 0600 root:root)",
        "systemctl daemon-reload",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y x",
    ]


def test_converged_ops_run_nothing_and_say_unchanged() -> None:
    fake = FakeTransport("h1", default=None)
    result = apply(fake, Op("sysctl x", (), "already set"))
    assert not result.changed and result.steps == () and result.description == "sysctl x" and fake.calls == []


def test_the_first_failing_step_stops_the_host_with_a_clear_error() -> None:
    fake = FakeTransport("h1").on("systemctl daemon-reload", "", exit_code=1, stderr="Failed to reload")
    with pytest.raises(CommandFailed) as info:
        apply(fake, OPS)
    assert str(info.value) == "h1: `systemctl daemon-reload` exited 1: Failed to reload"
    assert fake.commands == ["systemctl daemon-reload"], "apt-get never ran"


def test_transport_errors_propagate_for_the_retry_policy() -> None:
    fake = FakeTransport("h1").fail_next(TransportTimeout("h1", "no answer"))
    with pytest.raises(TransportTimeout):
        apply(fake, OPS)


def test_gather_plan_apply_on_many_hosts_one_unreachable() -> None:
    """One host down never stops the others; the aggregate error names it."""
    query = FactsQuery(
        files=("/etc/default/etcd",), sysctls=("net.ipv4.ip_forward",), units=("etcd",), binaries=()
    )

    def gathered_output(hostname: str, ip_forward: str) -> str:
        return (
            f"\n@@capstan@@ hostname\n{hostname}\n@@capstan@@ tools\nsystemctl\nsysctl\n"
            f"@@capstan@@ units\netcd|active|enabled\n@@capstan@@ stat\n"
            f"@@capstan@@ sysctls\n0|1|\n@@capstan@@ sysctl-values\n"
            f"/proc/sys/net/ipv4/ip_forward:{ip_forward}\n@@capstan@@ end\n"
        )

    hosts = [FakeTransport(f"h{i}") for i in range(1, 5)]
    for i, h in enumerate(hosts, 1):
        h.on(re.compile("@@capstan@@"), gathered_output(f"h{i}", "1" if i == 1 else "0"))
    hosts[2].go_down(ConnectError("h3", "connection refused"))

    def converge(t: FakeTransport) -> bool:
        facts = gather_facts(t, query)
        cfg = file(facts, "/etc/default/etcd", f"ETCD_NAME={facts.hostname}\n")
        ops = [cfg, sysctl(facts, "net.ipv4.ip_forward", 1), service(facts, "etcd", depends_on=[cfg])]
        return apply(t, ops).changed

    results = fan_out(converge, hosts, limit=2)
    assert list(results) == ["h1", "h2", "h3", "h4"]
    assert results["h1"] == Ok(True) and results["h4"] == Ok(True)
    assert isinstance(results["h3"], Err)
    assert hosts[0].commands[1:] == ["systemctl restart etcd"], "ip_forward already 1 on h1"
    assert hosts[1].commands[1:] == ["sysctl -w net.ipv4.ip_forward=1", "systemctl restart etcd"]
    assert hosts[1].files["/etc/default/etcd"].data == b"ETCD_NAME=h2\n"
    with pytest.raises(Exception, match=r"converge failed on 1 of 4 hosts \(h3\): h3: connection refused"):
        raise_failures(results, "converge")


def test_facts_from_fake_are_typed() -> None:
    fake = FakeTransport("h9").on(
        re.compile("@@capstan@@"), "\n@@capstan@@ units\netcd|active|static\n@@capstan@@ end\n"
    )
    facts = gather_facts(fake, FactsQuery(units=("etcd",), binaries=()))
    assert isinstance(facts, HostFacts) and facts.unit("etcd") == UnitState(
        active_state="active", enabled_state="static"
    )
    assert fake.calls[0].sudo and fake.calls[0].timeout == 60
