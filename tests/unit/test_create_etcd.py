"""etcd phase planning: the member's files and service, the bootstrap-state guard, restarts on change."""

from __future__ import annotations

import pytest
from test_create_support import SimFile, SimHost, changed, cluster, spec_doc, words

from capstan.errors import PlanError
from capstan.ops import Op
from capstan.remote import FakeTransport
from capstan.render import RenderedFile, new_secrets, render_host
from capstan.render.etcd import ETCD_ENV_PATH, etcd_env
from capstan.spec import parse_spec
from capstan.spec.models import Cluster
from capstan.tasks.create.etcd import (
    MEMBER_TLS,
    etcd_files,
    etcd_plan,
    etcd_query,
    member_dir,
    member_env,
    parse_member_list,
)
from capstan.tasks.session import Session

SECRETS = new_secrets()


def files_for(c: Cluster, host: str = "cp1") -> dict[str, RenderedFile]:
    return etcd_files(render_host(c, host, SECRETS, ca_cert_hash="sha256:" + "0" * 64))


def member(name: str = "cp1") -> SimHost:
    """An etcd host after the artifacts and pki phases: binary, certificates, the etcd account."""
    sim = SimHost(name)
    sim.files["/usr/local/bin/etcd"] = SimFile(b"\x7fELF etcd")
    sim._mkdirs("/etc/ssl/etcd")
    for path in MEMBER_TLS:
        sim.files[path] = SimFile(f"pem of {path}".encode(), 0o600, "etcd", "etcd")
    sim.groups["etcd"], sim.users["etcd"] = 990, 990
    return sim


def plan(sim: SimHost, c: Cluster, host: str = "cp1") -> list[Op]:
    files = files_for(c, host)
    return etcd_plan(sim.facts(etcd_query(c, files)), c, files)


def env_of(sim: SimHost) -> dict[str, str]:
    data = sim.files[ETCD_ENV_PATH].data or b""
    return dict(
        line.split("=", 1) for line in data.decode().splitlines() if line and not line.startswith("#")
    )


def test_fresh_member_bootstraps_a_new_cluster_with_every_member_then_converges() -> None:
    c = cluster()
    sim = member()
    ops = plan(sim, c)
    assert changed(ops) == [
        "directory /var/lib/etcd",
        "directories /var/lib/capstan/applied",
        "file /etc/etcd.env",
        "file /etc/etcdctl.env",
        "unit file /etc/systemd/system/etcd.service",
        "service etcd.service enabled running",
        "record of the configuration etcd.service runs with",
    ]
    assert "install -d -m 0700 -o etcd -g etcd /var/lib/etcd" in words(ops)
    sim.apply(ops)
    env = env_of(sim)
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_INITIAL_CLUSTER"].count("https://") == 3
    sim._mkdirs(member_dir(c), 0o700, "etcd", "etcd")  # etcd initialised its data directory
    assert changed(plan(sim, c)) == []
    assert sim.restarts == []


def test_a_member_with_data_keeps_its_bootstrap_settings_while_the_spec_grows() -> None:
    c = cluster()
    sim = member()
    sim.apply(plan(sim, c))
    sim._mkdirs(member_dir(c))
    doc = spec_doc()
    doc["spec"]["hosts"] += [
        {"name": f"e{i}", "address": f"10.0.0.{40 + i}", "roles": ["etcd"]} for i in (1, 2)
    ]  # scaled out to 5 members later
    grown = parse_spec(doc)
    assert changed(plan(sim, grown)) == []  # a healthy member is neither rewritten nor restarted
    fresh = member("e1")
    fresh.apply(plan(fresh, grown, "e1"))
    assert env_of(fresh)["ETCD_INITIAL_CLUSTER"].count("https://") == 5  # a member without data: rendered


def test_member_env_replaces_only_bootstrap_values() -> None:
    c = cluster()
    rendered = etcd_env(c, "cp1").content
    installed = rendered.replace(b"ETCD_INITIAL_CLUSTER_STATE=new", b"ETCD_INITIAL_CLUSTER_STATE=existing")
    installed = installed.replace(b"ETCD_SNAPSHOT_COUNT=10000", b"ETCD_SNAPSHOT_COUNT=1")
    kept = member_env(rendered, installed, has_data=True).decode()
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in kept  # never flipped back to new
    assert "ETCD_SNAPSHOT_COUNT=10000" in kept  # an ordinary setting follows the spec
    assert member_env(rendered, installed, has_data=False) == rendered
    assert member_env(rendered, None, has_data=True) == rendered


def test_a_setting_change_rewrites_the_env_and_restarts() -> None:
    c = cluster()
    sim = member()
    sim.apply(plan(sim, c))
    sim._mkdirs(member_dir(c))
    bigger = cluster(etcd={"quotaBackendBytes": 4 * 1024**3})
    ops = plan(sim, bigger)
    assert changed(ops) == [
        "file /etc/etcd.env",
        "service etcd.service enabled running",
        "record of the configuration etcd.service runs with",
    ]
    assert "systemctl restart etcd.service" in words(ops)
    sim.apply(ops)
    assert env_of(sim)["ETCD_QUOTA_BACKEND_BYTES"] == str(4 * 1024**3)
    assert env_of(sim)["ETCD_INITIAL_CLUSTER_STATE"] == "new"


def test_renewed_certificates_restart_the_member_without_writing_files() -> None:
    c = cluster()
    sim = member()
    sim.apply(plan(sim, c))
    sim.files["/etc/ssl/etcd/peer.crt"].data = b"renewed by the pki phase"
    ops = plan(sim, c)
    assert [s for s in words(ops).splitlines() if not s.startswith("put /var/lib/capstan")] == [
        "systemctl restart etcd.service"
    ]


def test_missing_binary_or_certificates_stop_the_phase_by_name() -> None:
    c = cluster()
    sim = member()
    del sim.files["/etc/ssl/etcd/member.key"]
    with pytest.raises(
        PlanError, match=r"cp1: etcd certificates missing \(pki phase\): /etc/ssl/etcd/member.key"
    ):
        plan(sim, c)
    sim = member()
    del sim.files["/usr/local/bin/etcd"]
    with pytest.raises(
        PlanError, match=r"cp1: etcd.service runs /usr/local/bin/etcd, which is not installed"
    ):
        plan(sim, c)


def test_member_list_is_parsed() -> None:
    out = (
        "8e9e05c52164694d, started, cp1, https://10.0.0.11:2380, https://10.0.0.11:2379, false\n"
        "91bc3c398fb3c146, unstarted, , https://10.0.0.12:2380, , false\n"
    )
    assert parse_member_list(out) == [
        ("started", "cp1", "https://10.0.0.11:2380"),
        ("unstarted", "", "https://10.0.0.12:2380"),
    ]


def session_with(
    c: Cluster, with_data: set[str], members_out: str
) -> tuple[Session, dict[str, FakeTransport]]:
    fakes = {}
    for h in c.hosts:
        fake = FakeTransport(h.name)
        fake.on("test -d /var/lib/etcd/member", "", exit_code=0 if h.name in with_data else 1)
        fake.on(lambda cmd: "member list" in cmd, members_out)
        fakes[h.name] = fake
    return Session("unit", c, factory=lambda _c, h: fakes[h.name]), fakes


def test_a_fresh_cluster_may_bootstrap_without_asking_etcd() -> None:
    from capstan.tasks.create.etcd import check_may_bootstrap

    c = cluster()
    session, fakes = session_with(c, set(), "")
    check_may_bootstrap(session, c.host("cp2"))
    assert not any("member list" in cmd for f in fakes.values() for cmd in f.commands)


def test_a_never_started_original_member_may_still_bootstrap() -> None:
    from capstan.tasks.create.etcd import check_may_bootstrap

    c = cluster()
    out = (
        "1, started, cp1, https://10.0.0.11:2380, https://10.0.0.11:2379, false\n"
        "2, started, cp2, https://10.0.0.12:2380, https://10.0.0.12:2379, false\n"
        "3, unstarted, , https://10.0.0.13:2380, , false\n"
    )
    session, fakes = session_with(c, {"cp1", "cp2"}, out)
    check_may_bootstrap(session, c.host("cp3"))
    assert any("member list" in cmd for cmd in fakes["cp1"].commands)


def test_a_host_the_running_cluster_does_not_know_is_refused() -> None:
    from capstan.tasks.create.etcd import check_may_bootstrap

    doc = spec_doc()
    doc["spec"]["hosts"] += [
        {"name": f"e{i}", "address": f"10.0.0.{40 + i}", "roles": ["etcd"]} for i in (1, 2)
    ]
    c = parse_spec(doc)
    out = "".join(
        f"{i}, started, cp{i}, https://10.0.0.1{i}:2380, https://10.0.0.1{i}:2379, false\n" for i in (1, 2, 3)
    )
    session, _ = session_with(c, {"cp1", "cp2", "cp3"}, out)
    with pytest.raises(PlanError, match=r"e1: etcd member e1 is not in the running etcd cluster.*member add"):
        check_may_bootstrap(session, c.host("e1"))


def test_a_member_that_lost_its_data_is_refused() -> None:
    from capstan.tasks.create.etcd import check_may_bootstrap

    c = cluster()
    out = "".join(
        f"{i}, started, cp{i}, https://10.0.0.1{i}:2380, https://10.0.0.1{i}:2379, false\n" for i in (1, 2, 3)
    )
    session, _ = session_with(c, {"cp1", "cp2"}, out)
    with pytest.raises(PlanError, match=r"cp3: etcd member cp3 has run before but its data directory"):
        check_may_bootstrap(session, c.host("cp3"))
