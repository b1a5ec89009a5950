"""The host-operation layer on real lab hosts: convergence, power cuts, cut links, changed host keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from capstan.errors import ConnectError, HostKeyError, TransportError
from capstan.facts import gather_facts
from capstan.lab import Lab
from capstan.ops import apply, osprep, osprep_query
from capstan.remote import Err, Ok, fan_out
from capstan.remote.fabric import FabricTransport

pytestmark = pytest.mark.lab

LAB_HOSTS = 5


def transport(lab: Lab, host: str, known_hosts: Path | None = None, **kw: float) -> FabricTransport:
    return FabricTransport(
        lab.ip(host),
        name=host,
        known_hosts=known_hosts or lab.known_hosts_path,
        key_filename=lab.key_path,
        connect_timeout=kw.get("connect_timeout", 3.0),
        channel_timeout=kw.get("channel_timeout", 3.0),
        command_timeout=kw.get("command_timeout", 30.0),
    )


@pytest.fixture
def transports(lab: Lab) -> Iterator[dict[str, FabricTransport]]:
    made = {h: transport(lab, h) for h in lab.hosts}
    yield made
    for t in made.values():
        t.close()


def converge(t: FabricTransport) -> tuple[int, int]:
    facts = gather_facts(t, osprep_query())
    result = apply(t, osprep(facts, hostname=t.host, runtime_sysctl_prefixes=("net.",)))
    return result.changed_count, result.unchanged_count


def test_osprep_converges_and_second_run_changes_nothing(
    lab: Lab, transports: dict[str, FabricTransport]
) -> None:
    first = fan_out(lambda h: converge(transports[h]), lab.hosts)
    assert all(isinstance(r, Ok) for r in first.values()), first
    assert all(r.value[0] > 0 for r in first.values() if isinstance(r, Ok))
    second = fan_out(lambda h: converge(transports[h]), lab.hosts)
    assert {h: r.value[0] for h, r in second.items() if isinstance(r, Ok)} == dict.fromkeys(lab.hosts, 0)
    # ground truth from inside a host: the persisted file and a namespaced runtime value
    out = lab.exec("w1", ["sh", "-c", "cat /etc/sysctl.d/99-capstan.conf; sysctl -n net.ipv4.ip_forward"])
    assert "kernel.panic = 10" in out.stdout or "kernel.panic=10" in out.stdout
    assert out.stdout.strip().endswith("1")


def test_power_cut_mid_fan_out_names_the_host_and_rerun_converges(lab: Lab) -> None:
    victim = "cp2"
    ts = {h: transport(lab, h) for h in lab.hosts}
    try:
        for t in ts.values():
            t.run(["true"])  # connections open before the cut

        def work(h: str) -> str:
            if h == victim:
                lab.crash(victim)
            return ts[h].run(["sh", "-c", "sleep 0.5; hostname"]).stdout.strip()

        results = fan_out(work, lab.hosts)
        dead = results[victim]
        assert isinstance(dead, Err) and isinstance(dead.error, TransportError)
        assert victim in str(dead.error)
        assert all(isinstance(results[h], Ok) and results[h].value == h for h in lab.hosts if h != victim)
        lab.boot(victim)
        changed, _ = converge(ts[victim])  # the same transport reconnects after the reboot
        assert converge(ts[victim])[0] == 0
        assert changed >= 0
    finally:
        for t in ts.values():
            t.close()


def test_cut_link_fails_within_timeout_and_reconnects_after_heal(lab: Lab) -> None:
    t = transport(lab, "w2", connect_timeout=2.0, channel_timeout=2.0, command_timeout=4.0)
    try:
        assert t.run(["hostname"]).stdout.strip() == "w2"
        lab.cut("w2")
        started = time.monotonic()
        with pytest.raises(TransportError):
            t.run(["hostname"])
        assert time.monotonic() - started < 15  # seconds, not paramiko's default hour
        lab.heal("w2")
        deadline = time.monotonic() + 20
        while True:
            try:
                assert t.run(["hostname"]).stdout.strip() == "w2"
                break
            except TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        lab.heal("w2")
        t.close()


def test_unreachable_port_is_a_connect_error(lab: Lab) -> None:
    t = FabricTransport(
        lab.ip("w1"),
        name="w1",
        port=2,
        known_hosts=lab.known_hosts_path,
        key_filename=lab.key_path,
        connect_timeout=2.0,
    )
    with pytest.raises(ConnectError, match="w1"):
        t.run(["true"])


def test_changed_host_key_is_refused_naming_the_host(lab: Lab, tmp_path: Path) -> None:
    # Last in the module: it re-keys w1, so the lab's own known_hosts no longer matches w1 afterwards.
    known = tmp_path / "known_hosts"
    t = transport(lab, "w1", known_hosts=known)
    t.run(["true"])  # trust on first use records the key
    t.close()
    assert known.read_text().strip()
    # re-key the host: a new ed25519 host key, then restart sshd through the emulator
    lab.exec(
        "w1",
        [
            "sh",
            "-c",
            "rm -f /etc/ssh/ssh_host_ed25519_key*; ssh-keygen -q -t ed25519 -N '' "
            "-f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh",
        ],
    )
    lab.wait_ssh("w1")
    t2 = transport(lab, "w1", known_hosts=known)
    try:
        with pytest.raises(HostKeyError, match="w1"):
            t2.run(["true"])
    finally:
        t2.close()
