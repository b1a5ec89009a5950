"""runtime phase planning: containerd (and CRI-O) files, unit and service; restarts only on change."""

from __future__ import annotations

import re

import pytest
from test_create_support import SimHost, changed, cluster, words

from capstan.errors import PlanError
from capstan.facts import UnitState
from capstan.ops import Op
from capstan.render import RenderedFile, new_secrets, render_host
from capstan.spec.models import Cluster
from capstan.tasks.create.runtime import runtime_files, runtime_plan, runtime_query

CA_HASH = "sha256:" + "0" * 64
SECRETS = new_secrets()


def files_for(c: Cluster, host: str = "w1") -> dict[str, RenderedFile]:
    return runtime_files(c, render_host(c, host, SECRETS, ca_cert_hash=CA_HASH))


def node(binary: str = "/usr/local/bin/containerd") -> SimHost:
    sim = SimHost("w1")
    sim.files[binary] = type(sim.files["/usr"])(b"\x7fELF")
    return sim


def plan(sim: SimHost, c: Cluster, files: dict[str, RenderedFile]) -> list[Op]:
    return runtime_plan(sim.facts(runtime_query(c, files)), c, files)


def test_containerd_files_are_its_config_unit_and_crictl_config_not_the_kubelets() -> None:
    c = cluster(containerRuntime={"registryMirrors": {"docker.io": ["https://mirror.example"]}})
    assert sorted(files_for(c)) == [
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/config.toml",
        "/etc/crictl.yaml",
        "/etc/systemd/system/containerd.service",
    ]


def test_fresh_node_gets_files_then_enable_and_start_then_converges() -> None:
    c = cluster()
    files = files_for(c)
    sim = node()
    ops = plan(sim, c, files)
    text = words(ops)
    assert "install -d -m 0755 /etc/containerd /var/lib/capstan/applied" in text
    assert text.index("put /etc/containerd/config.toml") < text.index("systemctl start containerd.service")
    assert "systemctl enable containerd.service" in text and "restart" not in text
    last = text.splitlines()[-1]
    assert re.fullmatch(
        r"put /var/lib/capstan/applied/containerd.service \(\d+ bytes, mode 0600 root:root\)", last
    )
    sim.apply(ops)
    assert sim.units["containerd.service"].active and sim.restarts == []
    assert changed(plan(sim, c, files)) == []


def test_a_unit_whose_program_is_not_installed_stops_the_phase_by_name() -> None:
    c = cluster()
    with pytest.raises(
        PlanError, match=r"w1: containerd.service runs /usr/local/bin/containerd, which is not"
    ):
        plan(SimHost("w1"), c, files_for(c))


def test_a_config_change_restarts_once_and_a_mirror_change_does_not() -> None:
    c = cluster()
    sim = node()
    sim.apply(plan(sim, c, files_for(c)))
    mirrors = cluster(containerRuntime={"registryMirrors": {"docker.io": ["https://mirror.example"]}})
    ops = plan(sim, mirrors, files_for(mirrors))
    assert changed(ops) == [
        "directories /etc/containerd/certs.d/docker.io",
        "file /etc/containerd/certs.d/docker.io/hosts.toml",
    ]
    sim.apply(ops)
    sim.files["/etc/containerd/config.toml"].data = b"version = 2\n# edited by hand\n"
    ops = plan(sim, mirrors, files_for(mirrors))
    assert "systemctl restart containerd.service" in words(ops) and "daemon-reload" not in words(ops)
    sim.apply(ops)
    assert sim.restarts == ["containerd.service"]
    assert changed(plan(sim, mirrors, files_for(mirrors))) == []


def test_a_run_that_died_before_the_restart_restarts_next_time() -> None:
    c = cluster()
    files = files_for(c)
    sim = node()
    sim.apply(plan(sim, c, files))
    sim.files[
        "/var/lib/capstan/applied/containerd.service"
    ].data = b"older record\n"  # config written, no restart
    ops = plan(sim, c, files)
    assert changed(ops) == [
        "service containerd.service enabled running",
        "record of the configuration containerd.service runs with",
    ]
    assert "systemctl restart containerd.service" in words(ops)


def test_a_stopped_runtime_is_started_not_restarted() -> None:
    c = cluster()
    files = files_for(c)
    sim = node()
    sim.apply(plan(sim, c, files))
    sim.units["containerd.service"] = UnitState(active_state="failed", enabled_state="enabled")
    assert [s for s in words(plan(sim, c, files)).splitlines()] == ["systemctl start containerd.service"]


def test_cri_o_gets_its_drop_in_policy_and_unit_and_restarts_only_for_the_daemon_config() -> None:
    c = cluster(containerRuntime={"name": "cri-o"})
    files = files_for(c)
    assert sorted(files) == [
        "/etc/crictl.yaml",
        "/etc/crio/crio.conf.d/10-capstan.conf",
        "/etc/crio/policy.json",
        "/etc/systemd/system/crio.service",
    ]
    sim = node("/usr/local/bin/crio")
    ops = plan(sim, c, files)
    assert "install -d -m 0755 /etc/crio /etc/crio/crio.conf.d /var/lib/capstan/applied" in words(ops)
    assert "systemctl start crio.service" in words(ops)
    sim.apply(ops)
    sim.files["/etc/crio/policy.json"].data = b"{}"
    assert "restart" not in words(plan(sim, c, files))
    sim.files["/etc/crio/crio.conf.d/10-capstan.conf"].data = b"[crio]\n"
    assert "systemctl restart crio.service" in words(plan(sim, c, files))
