"""The create phases' post-check: a just-started service may take a moment; anything else may not."""

from __future__ import annotations

import pytest

from capstan.facts import FactsQuery, HostFacts
from capstan.ops import Op
from capstan.ops.systemd import service
from capstan.remote import FakeTransport
from capstan.spec import parse_spec_text
from capstan.tasks.create._common import PostCheckFailed, check_converged
from capstan.tasks.session import Session

SPEC = """
apiVersion: capstan.dev/v1alpha1
kind: Cluster
metadata: {name: unit}
spec:
  hosts:
    - {name: w1, address: 10.0.0.1, roles: [control-plane, etcd]}
"""
QUERY = FactsQuery(units=("haproxy",), binaries=())


def facts_output(active: str) -> str:
    return (
        "\n@@capstan@@ tools\nsystemctl\n@@capstan@@ units-show\n"
        f"LoadState=loaded\nActiveState={active}\nUnitFileState=enabled\n@@capstan@@ end\n"
    )


def plan(facts: HostFacts) -> list[Op]:
    return [service(facts, "haproxy")]


def session_with(fake: FakeTransport) -> Session:
    cluster = parse_spec_text(SPEC)
    return Session("unit", cluster, factory=lambda _c, _h: fake)


def test_a_service_still_activating_is_asked_again_until_it_is_active() -> None:
    fake = FakeTransport("w1")
    fake.on(lambda c: "systemctl show" in c, facts_output("activating"), times=2)
    fake.on(lambda c: "systemctl show" in c, facts_output("active"))
    s = session_with(fake)
    facts = check_converged(s, s.cluster.host("w1"), QUERY, plan, "api-lb", settle=20)
    assert facts.units["haproxy"].active and len(fake.commands) == 3


def test_a_service_that_never_comes_up_fails_after_the_settle_time_naming_host_and_service() -> None:
    fake = FakeTransport("w1").on(lambda c: "systemctl show" in c, facts_output("failed"))
    s = session_with(fake)
    with pytest.raises(PostCheckFailed, match=r"^w1: api-lb: still not as wanted .*service haproxy"):
        check_converged(s, s.cluster.host("w1"), QUERY, plan, "api-lb", settle=1.5)
    assert 2 <= len(fake.commands) <= 3
