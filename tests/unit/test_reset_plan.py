"""reset-cluster's pure planning: what each role's host loses, in which order, and nothing on a clean host."""

from __future__ import annotations

import pytest
from test_create_support import TOOLS, cluster

from capstan.errors import CapstanError
from capstan.facts import FileInfo, HostFacts, UnitState
from capstan.ops import Command, Op
from capstan.tasks.reset.plan import ResetTargets, reset_plan, reset_query, reset_targets

DIR = FileInfo(kind="directory", mode=0o755)
FILE = FileInfo(kind="regular file", mode=0o644, size=1)
RUNNING = UnitState(active_state="active", enabled_state="enabled")
ABSENT = UnitState(active_state="inactive", enabled_state="not-found")


def host_with(targets: ResetTargets, present: set[str], running: set[str]) -> HostFacts:
    """Facts for ``targets``' query: ``present`` paths exist (directories unless they look like files)."""
    q = reset_query(targets)
    files = {p: ((FILE if "." in p.rsplit("/", 1)[-1] or "/bin/" in p else DIR) if p in present else None)
             for p in q.files}  # fmt: skip
    units = {u: RUNNING if u in running else ABSENT for u in q.units}
    return HostFacts(host=targets.host, tools=TOOLS, files=files, units=units)


def changed(ops: list[Op]) -> list[str]:
    return [op.description for op in ops if op.changed]


def argv(op: Op) -> tuple[str, ...]:
    step = op.steps[0]
    assert isinstance(step, Command) and not isinstance(step.argv, str)
    return step.argv


def test_control_plane_etcd_host_loses_kube_etcd_runtime_balancer_and_os_prep_files() -> None:
    c = cluster()
    t = reset_targets(c, c.host("cp1"))
    assert t.units == ("kubelet.service", "kube-apiserver-lb.service", "etcd.service", "containerd.service")
    assert set(t.unit_files) == {
        "/etc/systemd/system/kubelet.service",
        "/etc/systemd/system/kubelet.service.d",
        "/etc/systemd/system/kube-apiserver-lb.service",
        "/etc/systemd/system/etcd.service",
        "/etc/systemd/system/containerd.service",
    }
    for path in (
        "/etc/kubernetes", "/etc/kube-lb", "/etc/containerd", "/etc/etcd.env", "/etc/etcdctl.env",
        "/etc/ssl/etcd", "/etc/sysctl.d/99-capstan.conf", "/etc/modules-load.d/capstan.conf",
        "/var/lib/etcd", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/capstan", "/opt/cni",
        "/usr/local/bin/kubeadm", "/usr/local/bin/kubelet", "/usr/local/bin/kubectl",
        "/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/usr/local/bin/containerd", "/usr/local/bin/runc",
        "/usr/local/bin/crictl",
    ):  # fmt: skip
        assert path in t.paths, path
    assert t.kubeadm and t.cri_socket == "unix:///run/containerd/containerd.sock"


def test_worker_keeps_no_etcd_targets_and_etcd_only_host_no_kubernetes_ones() -> None:
    c = cluster()
    w = reset_targets(c, c.host("w1"))
    assert "etcd.service" not in w.units and "/var/lib/etcd" not in w.paths
    assert "/etc/ssl/etcd" not in w.paths and "/usr/local/bin/etcd" not in w.paths
    assert "kubelet.service" in w.units and "/usr/local/bin/kubelet" in w.paths

    hosts = [
        {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]},
        {"name": "e1", "address": "10.0.0.31", "roles": ["etcd"]},
    ]
    c2 = cluster(hosts=hosts)
    e = reset_targets(c2, c2.host("e1"))
    assert e.units == ("etcd.service",)
    assert not e.kubeadm and e.cri_socket is None
    assert not any(p.startswith(("/etc/kubernetes", "/var/lib/kubelet", "/opt/cni")) for p in e.paths)
    assert {"/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/var/lib/etcd"} <= set(e.paths)
    assert "/usr/local/bin/kubelet" not in e.paths


def test_etcd_data_dir_comes_from_the_spec_and_backups_are_kept() -> None:
    c = cluster(etcd={"dataDir": "/srv/etcd", "backup": {"dir": "/var/backups/etcd"}})
    t = reset_targets(c, c.host("cp1"))
    assert "/srv/etcd" in t.paths and "/var/lib/etcd" not in t.paths
    assert not any(p.startswith("/var/backups") for p in t.all_paths)


def test_vip_mode_stops_keepalived_but_leaves_the_packaged_unit() -> None:
    c = cluster(controlPlaneEndpoint={"mode": "vip", "address": "10.0.0.100"})
    cp, w = reset_targets(c, c.host("cp1")), reset_targets(c, c.host("w1"))
    assert "keepalived.service" in cp.units and "/etc/keepalived/keepalived.conf" in cp.paths
    assert not any("keepalived" in p for p in cp.unit_files)
    assert "keepalived.service" not in w.units and "kube-apiserver-lb.service" not in w.units


def test_clean_host_is_a_noop() -> None:
    c = cluster()
    for name in ("cp1", "w1"):
        t = reset_targets(c, c.host(name))
        ops = reset_plan(host_with(t, set(), set()), t)
        assert changed(ops) == []
        assert len(ops) == 1 + len(t.units) + len(t.all_paths)  # each target reported as unchanged


def test_installed_host_is_reset_by_kubeadm_then_services_then_files_then_daemon_reload() -> None:
    c = cluster()
    t = reset_targets(c, c.host("cp1"))
    present = {*t.all_paths, "/usr/local/bin/kubeadm"}
    ops = reset_plan(host_with(t, present, set(t.units)), t)
    done = [op for op in ops if op.changed]
    assert argv(done[0]) == (
        "/usr/local/bin/kubeadm", "reset", "-f", "--cri-socket", "unix:///run/containerd/containerd.sock",
    )  # fmt: skip
    stops = [op.description for op in done[1:5]]
    assert stops == [f"service {u} stopped and disabled" for u in t.units]
    assert done[-1].description == "systemctl daemon-reload"
    removed = [op.description.removeprefix("remove ") for op in done[5:-1]]
    assert "/etc/systemd/system/kubelet.service.d" in removed and "/var/lib/etcd" in removed
    for op in done[5:-1]:  # the path travels as an argument, never inside the script text
        step = op.steps[0]
        assert isinstance(step, Command) and not isinstance(step.argv, str)
        assert step.argv[-1] == op.description.removeprefix("remove ")


def test_path_inside_a_removed_directory_is_not_removed_twice() -> None:
    c = cluster(containerRuntime={"name": "cri-o"})
    t = reset_targets(c, c.host("w1"))
    assert "/usr/libexec/crio" in t.paths and "/usr/libexec/crio/conmon" in t.paths
    ops = reset_plan(host_with(t, set(t.all_paths), set()), t)
    by = {op.description: op for op in ops}
    assert by["remove /usr/libexec/crio"].changed and not by["remove /usr/libexec/crio/conmon"].changed
    assert "service crio.service stopped and disabled" in by


def test_no_kubeadm_binary_means_no_kubeadm_reset_and_stale_units_are_still_stopped() -> None:
    c = cluster()
    t = reset_targets(c, c.host("w1"))
    ops = reset_plan(host_with(t, {"/etc/kubernetes", "/var/lib/kubelet"}, {"kubelet.service"}), t)
    assert changed(ops) == [
        "service kubelet.service stopped and disabled",
        "remove /etc/kubernetes",
        "remove /var/lib/kubelet",
    ]


def test_chosen_hosts_default_to_all_and_reject_unknown_names() -> None:
    from capstan.flows.reset import chosen_hosts

    c = cluster()
    assert chosen_hosts(c, None) == ["cp1", "cp2", "cp3", "w1", "w2"]
    assert chosen_hosts(c, ["w2", "w1", "w2"]) == ["w2", "w1"]
    with pytest.raises(CapstanError, match="--hosts: nope: not a host of cluster t"):
        chosen_hosts(c, ["w1", "nope"])


def test_a_disabled_stopped_package_unit_is_left_but_a_failed_one_is_cleared() -> None:
    c = cluster()
    t = reset_targets(c, c.host("cp1"))
    facts = host_with(t, set(), set())
    units = dict(facts.units)
    units["etcd.service"] = UnitState(active_state="inactive", enabled_state="disabled")  # the OS package's
    units["containerd.service"] = UnitState(active_state="failed", enabled_state="disabled")
    ops = reset_plan(facts.model_copy(update={"units": units}), t)
    assert changed(ops) == ["service containerd.service stopped and disabled"]
