"""The lab behaves like a set of real machines: SSH, private disks, init, faults, mirror, clean teardown."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from capstan.errors import LabError
from capstan.lab import Lab, emulator, procs
from capstan.lab import host as hostmod
from capstan.lab.mirror import read_sums
from capstan.lab.rootfs import EMULATOR_PYC, emulator_sources
from capstan.lab.state import lab_dir
from capstan.spec import load_spec
from capstan.versions import artifacts_for

pytestmark = pytest.mark.lab

LAB_HOSTS = 3


def ssh(lab: Lab, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.ssh_argv(host, [command]), capture_output=True, text=True, timeout=30)


def connects(ip: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=timeout):
            return True
    except OSError:
        return False


def connects_from(lab: Lab, src: str, dst_ip: str, port: int = 22) -> bool:
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1.0).close()"
    return lab.exec(src, ["python3", "-c", probe, dst_ip, str(port)]).returncode == 0


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_ssh_as_root_by_key_on_every_host(lab: Lab) -> None:
    names = {}
    for h in lab.hosts:
        res = ssh(lab, h, "id -u; hostname; cat /etc/machine-id")
        assert res.returncode == 0, res.stderr
        uid, hostname, machine_id = res.stdout.split()
        assert uid == "0"
        names[h] = (hostname, machine_id)
    assert [n for n, _ in names.values()] == lab.hosts
    assert len({m for _, m in names.values()}) == len(lab.hosts)


def test_ssh_refuses_password_login(lab: Lab) -> None:
    argv = lab.ssh_argv("cp1", ["true"])
    argv[argv.index("-i") + 1] = "/dev/null"  # no usable key: only a password could get in
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert res.returncode == 255
    assert "Permission denied (publickey)" in res.stderr


def test_files_are_private_to_each_host(lab: Lab) -> None:
    probe = "/etc/capstan-lab-probe"
    assert lab.exec("cp1", ["sh", "-c", f"echo one > {probe}"]).returncode == 0
    assert lab.exec("cp1", ["cat", probe]).stdout == "one\n"
    assert lab.exec("cp2", ["test", "-e", probe]).returncode == 1
    assert not Path(probe).exists()
    # the lab's own files (keys, other hosts' layers) are hidden from hosts
    listing = lab.exec("cp1", ["ls", "-A", str(lab.dir.parent)])
    assert listing.returncode == 0 and listing.stdout == ""
    assert lab.exec("cp1", ["ls", "-A", "/root/.ssh"]).stdout.split() == ["authorized_keys"]


def test_pid1_is_the_systemctl_emulator(lab: Lab) -> None:
    cmdline = lab.exec("cp2", ["cat", "/proc/1/cmdline"]).stdout.split("\0")
    assert cmdline[:2] == ["/usr/bin/python3", EMULATOR_PYC] and "init" in cmdline
    launcher = lab.exec("cp2", ["cat", "/usr/bin/systemctl"]).stdout
    assert launcher == f'#!/bin/sh\nexec /usr/bin/python3 {EMULATOR_PYC} "$@"\n'
    # what was compiled is the upstream emulator with the lab's shorter waits, nothing else
    tuned, misses = emulator.tune(emulator_sources()[0].read_text())
    assert misses == [] and (lab.dir / "emulator" / "systemctl.py").read_text() == tuned
    version = lab.exec("cp2", ["systemctl", "--version"])
    assert version.returncode == 0 and "systemd" in version.stdout
    assert lab.exec("cp2", ["readlink", "/proc/1/exe"]).stdout.strip().startswith("/usr/bin/python3")


def test_sshd_is_a_unit_and_nothing_else_started(lab: Lab) -> None:
    units = ["ssh", "etcd", "haproxy", "nginx", "containerd"]
    for h in lab.hosts:
        states = lab.exec(h, ["systemctl", "is-active", *units]).stdout.split()
        assert states[0] == "active" and "active" not in states[1:], (h, states)
        comms = set(lab.exec(h, ["ps", "-e", "-o", "comm="]).stdout.split())
        assert comms & {"etcd", "haproxy", "nginx", "containerd", "keepalived", "postgres"} == set(), h


PROBE_UNIT = """[Unit]
Description=capstan lab probe
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


def test_crash_then_boot_keeps_the_disk_and_restarts_enabled_units(lab: Lab) -> None:
    unit = "/etc/systemd/system/capstan-probe.service"
    setup = f"cat > {unit} && echo kept > /root/marker && systemctl enable --now capstan-probe 2>/dev/null"
    assert lab.exec("cp3", ["sh", "-c", setup], input=PROBE_UNIT).returncode == 0
    assert lab.exec("cp3", ["systemctl", "is-active", "capstan-probe"]).stdout.strip() == "active"
    machine_id = lab.exec("cp3", ["cat", "/etc/machine-id"]).stdout
    pids = lab.pids("cp3")
    assert len(pids) >= 4  # unshare, PID 1, sshd, sleep
    lab.crash("cp3")
    assert all(gone(p) for p in pids)
    assert [s.state for s in lab.status() if s.name == "cp3"] == ["crashed"]
    assert not hostmod.sshd_answers(lab.ip("cp3"))
    lab.boot("cp3", timeout=30)
    res = ssh(lab, "cp3", "cat /root/marker /etc/machine-id; systemctl is-active ssh capstan-probe")
    assert res.returncode == 0, res.stderr  # same host key: StrictHostKeyChecking=yes passed
    assert res.stdout == "kept\n" + machine_id + "active\nactive\n"


def test_cut_fails_connections_and_heal_restores(lab: Lab) -> None:
    ip = lab.ip("cp2")
    lab.cut("cp2")
    try:
        assert not connects(ip, timeout=2.0)
        assert [s.cut for s in lab.status() if s.name == "cp2"] == [True]
    finally:
        lab.heal("cp2")
    lab.wait_ssh("cp2", timeout=10)
    assert connects(ip)


def test_partition_blocks_only_the_pair(lab: Lab) -> None:
    ip1, ip2, ip3 = (lab.ip(h) for h in ("cp1", "cp2", "cp3"))
    lab.partition("cp1", "cp2")
    try:
        assert not connects_from(lab, "cp1", ip2)
        assert not connects_from(lab, "cp2", ip1)
        assert connects_from(lab, "cp1", ip3)
        assert connects_from(lab, "cp3", ip2)
        assert connects(ip1) and connects(ip2)  # the root still reaches both
    finally:
        lab.heal("cp1")
    assert connects_from(lab, "cp1", ip2) and connects_from(lab, "cp2", ip1)


def test_total_loss_then_heal(lab: Lab) -> None:
    lab.loss("cp1", 100)
    try:
        assert not connects(lab.ip("cp1"), timeout=1.0)
    finally:
        lab.heal("cp1")
    assert connects(lab.ip("cp1"))


def test_hosts_reach_only_the_mirror_port_on_the_root_side(lab: Lab) -> None:
    with socket.socket() as srv:
        srv.bind((lab.bridge_ip, 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert not connects_from(lab, "cp1", lab.bridge_ip, port)
    assert connects_from(lab, "cp1", lab.bridge_ip, lab.state.mirror_port)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"


def test_mirror_serves_files_matching_their_sums(lab: Lab) -> None:
    sums = read_sums(lab.mirror_dir)
    assert any(p.startswith("github.com/etcd-io/etcd/releases/download/") for p in sums)
    smallest = min(sums, key=lambda p: (lab.mirror_dir / p).stat().st_size)
    res = lab.exec("cp1", ["sh", "-c", f"curl -fsS {lab.mirror_url}/{smallest} | sha256sum"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == sums[smallest]
    listed = lab.exec("cp1", ["curl", "-fsS", f"{lab.mirror_url}/sha256sums.txt"]).stdout
    assert listed == (lab.mirror_dir / "sha256sums.txt").read_text()
    local = hashlib.sha256((lab.mirror_dir / smallest).read_bytes()).hexdigest()
    assert local == sums[smallest]


def test_spec_is_valid_and_points_at_the_lab(lab: Lab) -> None:
    cluster = load_spec(lab.spec_path)
    assert cluster.name == lab.name
    assert [(h.name, h.address, h.bind_ip) for h in cluster.hosts] == [
        (h, lab.ip(h), lab.ip(h)) for h in lab.hosts
    ]
    assert [h.roles for h in cluster.hosts] == [["control-plane", "etcd"]] * 3
    assert cluster.spec.ssh.key_path == str(lab.key_path)
    assert os.stat(lab.key_path).st_mode & 0o777 == 0o600
    assert cluster.spec.artifacts.mirror == lab.mirror_url
    # capstan asks the mirror for the pinned URLs and checks them against the lab's extra sums
    sums = read_sums(lab.mirror_dir)
    extra = cluster.spec.artifacts.extra_checksums
    wanted = artifacts_for(
        cluster.spec.kubernetes.version, "amd64", mirror=lab.mirror_url, extra_checksums=extra
    )
    served = [a for a in wanted if a.name in extra]
    assert {a.name for a in served} >= {"etcd", "containerd", "runc", "crictl"}
    for art in served:
        path = art.url.removeprefix(lab.mirror_url + "/")
        assert sums[path] == art.sha256, art.name


def test_a_taken_subnet_is_refused_without_touching_its_owner(lab: Lab) -> None:
    name = Lab.free_name(f"t{os.getpid()}c")
    with pytest.raises(LabError, match="is taken by lab"):
        Lab.up(name, 1, octet=lab.state.octet)
    assert name not in Lab.existing() and not lab_dir(name).exists()
    assert all(hostmod.sshd_answers(lab.ip(h)) for h in lab.hosts)


def test_two_labs_coexist_and_down_leaves_nothing(lab: Lab, lab_factory: Callable[..., Lab]) -> None:
    other = lab_factory(2)
    assert other.state.octet != lab.state.octet and other.state.bridge != lab.state.bridge
    for h in other.hosts:
        assert ssh(other, h, "hostname").stdout.strip() == h
    pids = [p for h in other.hosts for p in other.pids(h)]
    assert other.state.mirror is not None
    pids.append(other.state.mirror.pid)
    netns = [other.host(h).netns for h in other.hosts]
    links = [other.host(h).veth for h in other.hosts] + [other.state.bridge]
    state_dir = other.dir

    other.down()

    assert all(gone(p) for p in pids)
    assert not set(netns) & set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    for link in links:
        assert subprocess.run(["ip", "link", "show", "dev", link], capture_output=True).returncode != 0
    assert (
        subprocess.run(["nft", "list", "table", "inet", other.state.table], capture_output=True).returncode
        != 0
    )
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f" {state_dir} " not in mounts and f" {state_dir}/" not in mounts
    assert not state_dir.exists()
    assert other.name not in Lab.existing()
    # the first lab is untouched
    assert all(hostmod.sshd_answers(lab.ip(h)) for h in lab.hosts)
    assert all(procs.alive(lab.host(h).init) for h in lab.hosts)
