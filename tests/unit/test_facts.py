"""capstan.facts: the pure parser on captured outputs, the query, and the script run for real here."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from capstan.errors import CapstanError, TransportError
from capstan.facts import (
    DefaultRoute,
    FactNotGathered,
    FactsQuery,
    HostFacts,
    Listener,
    arch_of,
    build_script,
    family_of,
    gather_facts,
    parse_facts,
    parse_version,
    sysctl_path,
)
from capstan.remote import FakeTransport, Result
from capstan.tasks.create.facts import clock_skew

# Captured on a Debian 12 machine (meminfo and /sys/module trimmed), for the query below.
DEBIAN_QUERY = FactsQuery(
    units=("etcd", "haproxy"),
    files=("/etc/hostname", "/nonexist", "/etc"),
    contents=("/etc/fstab",),
    disk=("/var/lib/etcd", "/"),
    sysctls=(
        "net.ipv4.ip_forward",
        "net.bridge.bridge-nf-call-iptables",
        "vm.overcommit_memory",
        "net.ipv4.ip_local_reserved_ports",
        "no.such",
    ),
    users=("root", "etcd"),
    groups=("root", "etcd"),
    packages=("curl", "socat"),
    binaries=("etcd", "containerd", "kubeadm"),
)
DEBIAN_OUTPUT = """
@@capstan@@ os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian

@@capstan@@ uname
x86_64
6.18.44-fc-v595

@@capstan@@ hostname
vm

@@capstan@@ cpus
2

@@capstan@@ meminfo
MemTotal:       24684096 kB
MemFree:        23853204 kB
SwapTotal:             0 kB
SwapFree:              0 kB

@@capstan@@ swaps
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority

@@capstan@@ addr
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever

@@capstan@@ route
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
*\t0000FA0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0

@@capstan@@ tcp
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1130 1 0
   1: 020200C0:C4DA 507100CB:0050 06 00000000:00000000 03:00000B14 00000000     0        0 0 3 0

@@capstan@@ tcp6
  sl  local_address                         remote_address                        st tx_queue rx_queue

@@capstan@@ modules-builtin
br_netfilter

@@capstan@@ sysfs-modules
bridge
ip_set
nf_conntrack
overlay

@@capstan@@ time
1795862102

@@capstan@@ tools
apt-get
dpkg-query
sysctl
systemctl

@@capstan@@ bin etcd /usr/bin/etcd
etcd Version: 3.4.23
Git SHA: Not provided (use ./build instead of go build)
Go Version: go1.19.8

@@capstan@@ bin containerd /usr/bin/containerd
containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3

@@capstan@@ units
etcd||enabled
haproxy|active|enabled

@@capstan@@ stat
regular file|755|root|root|2049|131090|3|2026-11-20 10:01:02.5 +0000|2026-11-20 10:01:02.5 +0000|/etc/hostname
directory|755|root|root|2049|2|4096|2026-11-20 10:01:02.5 +0000|2026-11-20 10:01:02.5 +0000|/etc
regular file|644|root|root|2049|131091|37|2026-11-20 10:01:02.5 +0000|2026-11-20 10:01:02.5 +0000|/etc/fstab

@@capstan@@ sums
427f93cafd9cc19be6eec03e590c9c6cdf9f688a5eaf21fa8d72351e2b15fd05  /etc/hostname
a6b093c9916c6c54e5d634d3689f1a0132e14cce0b8e50ff445da8e85acfbd17  /etc/fstab

@@capstan@@ content 3
IyBVTkNPTkZJR1VSRUQgRlNUQUIgRk9SIEJBU0UgU1lTVEVNCg==

@@capstan@@ disk
0|/dev/vda         264212084 23605100  82785812      23% /
1|/dev/vda         264212084 23605100  82785812      23% /

@@capstan@@ sysctls
0|1|
1|1|
2|1|
3|1|
4|0|

@@capstan@@ sysctl-values
/proc/sys/net/ipv4/ip_forward:0
/proc/sys/net/bridge/bridge-nf-call-iptables:1
/proc/sys/vm/overcommit_memory:0
/proc/sys/net/ipv4/ip_local_reserved_ports:

@@capstan@@ users
root|0
etcd|102

@@capstan@@ groups
root|0
etcd|

@@capstan@@ packages dpkg
curl|install ok installed|7.88.1-10+deb12u15

@@capstan@@ end
"""


def test_parse_captured_debian_output() -> None:
    f = parse_facts(DEBIAN_OUTPUT, DEBIAN_QUERY, host="h1")
    assert f.host == "h1"
    assert (f.os.id, f.os.version_id, f.os.codename, f.os.family) == ("debian", "12", "bookworm", "debian")
    assert (f.machine, f.arch, f.kernel, f.hostname, f.cpus) == (
        "x86_64",
        "amd64",
        "6.18.44-fc-v595",
        "vm",
        2,
    )
    assert f.memory_mb == 24684096 // 1024 and f.swap.total_mb == 0 and not f.swap.active
    assert f.interfaces == {"lo": ("127.0.0.1/8",), "eth0": ("192.0.2.2/24",)}
    assert f.default_route == DefaultRoute(interface="eth0", gateway="192.0.2.1", src="192.0.2.2")
    assert f.primary_ipv4 == "192.0.2.2"
    assert f.listeners == (Listener(address="0.0.0.0", port=2024),)  # the ESTABLISHED line is not a listener
    assert f.modules.supported is False and f.modules.present("br_netfilter") and f.modules.present("overlay")
    assert not f.modules.present("ip_vs")
    assert f.time == 1795862102 and f.has_tool("sysctl") and not f.has_tool("modprobe")
    etcd = f.binary("etcd")
    assert etcd is not None and (etcd.path, etcd.version) == ("/usr/bin/etcd", "3.4.23")
    assert f.binary("containerd") is not None and f.binary("containerd").version == "1.6.20~ds1"  # type: ignore[union-attr]
    assert f.binary("kubeadm") is None
    assert not f.unit("etcd").active and f.unit("etcd").enabled and f.unit("haproxy").active
    hostname = f.file("/etc/hostname")
    assert hostname is not None and hostname.is_file and hostname.mode == 0o755 and hostname.size == 3
    assert hostname.sha256 == "427f93cafd9cc19be6eec03e590c9c6cdf9f688a5eaf21fa8d72351e2b15fd05"
    assert f.file("/nonexist") is None
    etc = f.file("/etc")
    assert etc is not None and etc.is_dir and etc.sha256 is None
    assert f.content("/etc/fstab") == b"# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"
    assert f.free_mb("/var/lib/etcd") == 82785812 // 1024
    assert f.sysctls == {
        "net.ipv4.ip_forward": "0",
        "net.bridge.bridge-nf-call-iptables": "1",
        "vm.overcommit_memory": "0",
        "net.ipv4.ip_local_reserved_ports": "",
        "no.such": None,
    }
    assert f.users == {"root": 0, "etcd": 102} and f.groups == {"root": 0, "etcd": None}
    assert f.package_db == "dpkg" and f.packages == {"curl": "7.88.1-10+deb12u15", "socat": None}


RHEL_QUERY = FactsQuery(
    packages=("curl", "socat", "kernel-headers"), binaries=("kubelet",), units=("kubelet",)
)
RHEL_OUTPUT = """
@@capstan@@ os-release
NAME="Rocky Linux"
VERSION_ID="9.4"
ID="rocky"
ID_LIKE="rhel centos fedora"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
@@capstan@@ uname
aarch64
5.14.0-427.el9.aarch64
@@capstan@@ meminfo
MemTotal:        8000000 kB
SwapTotal:       2097148 kB
@@capstan@@ swaps
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/dm-1                               partition\t2097148\t\t0\t\t-2
@@capstan@@ addr
2: ens3    inet 10.1.0.5/24 brd 10.1.0.255 scope global dynamic ens3\\       valid_lft 86000sec
3: ens4    inet 172.16.0.5/16 scope global ens4\\       valid_lft forever
3: ens4    inet 172.16.9.9/16 scope global secondary ens4\\       valid_lft forever
@@capstan@@ route
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
ens3\t00000000\t0100010A\t0003\t0\t0\t100\t00000000\t0\t0\t0
ens4\t00000000\t010010AC\t0003\t0\t0\t50\t00000000\t0\t0\t0
ens4\t00000000\t020010AC\t0002\t0\t0\t1\t00000000\t0\t0\t0
@@capstan@@ tcp6
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1A0A 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000001000000:0CEA 00000000000000000000000000000000:0000 0A 0
@@capstan@@ modules
br_netfilter 32768 0 - Live 0x0000000000000000
overlay 200704 0 - Live 0x0000000000000000
@@capstan@@ bin kubelet /usr/local/bin/kubelet
Kubernetes v1.36.4
@@capstan@@ packages rpm
curl|install ok installed|7.76.1-29.el9
package socat is not installed
kernel-headers|install ok installed|5.14.0-427.el9
@@capstan@@ end
"""


def test_parse_rhel_like_output_with_swap_ipv6_and_rpm() -> None:
    f = parse_facts(RHEL_OUTPUT, RHEL_QUERY, host="r1")
    assert (f.os.id, f.os.id_like, f.os.family, f.arch) == (
        "rocky",
        ("rhel", "centos", "fedora"),
        "rhel",
        "arm64",
    )
    assert f.swap.active and f.swap.total_mb == 2047 and f.swap.devices == ("/dev/dm-1",)
    assert f.interfaces["ens4"] == ("172.16.0.5/16", "172.16.9.9/16")
    # lowest metric among *up* default routes; the third one lacks RTF_UP
    assert f.default_route == DefaultRoute(interface="ens4", gateway="172.16.0.1", src="172.16.0.5")
    assert f.listening_ports == frozenset({6666, 3306})
    assert {listener.address for listener in f.listeners} == {"::", "::1"}
    assert f.modules.supported and f.modules.loaded == frozenset({"br_netfilter", "overlay"})
    assert f.binary("kubelet") is not None and f.binary("kubelet").version == "1.36.4"  # type: ignore[union-attr]
    assert f.package_db == "rpm"
    assert f.packages == {"curl": "7.76.1-29.el9", "socat": None, "kernel-headers": "5.14.0-427.el9"}
    assert f.unit("kubelet").active_state == "" and not f.unit("kubelet").exists  # no systemctl section


def test_output_without_end_marker_is_a_retryable_transport_error() -> None:
    cut = DEBIAN_OUTPUT.split("@@capstan@@ users")[0]
    with pytest.raises(TransportError, match="h1: facts output ended early"):
        parse_facts(cut, DEBIAN_QUERY, host="h1")
    with pytest.raises(TransportError):
        parse_facts("", FactsQuery(), host="h1")


def test_unqueried_items_raise_fact_not_gathered_and_absent_ones_are_none() -> None:
    f = parse_facts(DEBIAN_OUTPUT, DEBIAN_QUERY, host="h1")
    assert f.sysctl("no.such") is None
    for probe in (
        lambda: f.sysctl("kernel.panic"),
        lambda: f.file("/etc/passwd"),
        lambda: f.unit("kubelet"),
        lambda: f.package("rsync"),
        lambda: f.user("nobody"),
        lambda: f.content("/etc/hostname"),  # stat'ed but its content was not asked for
    ):
        with pytest.raises(FactNotGathered, match="h1"):
            probe()


def test_host_facts_survive_a_json_round_trip() -> None:
    f = parse_facts(DEBIAN_OUTPUT, DEBIAN_QUERY, host="h1")
    assert HostFacts.model_validate_json(f.model_dump_json()) == f


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("v1.31.2", "1.31.2"),
        ("Kubernetes v1.36.4", "1.36.4"),
        ("Client Version: v1.32.4-dispatcher\nKustomize Version: v5.5.0", "1.32.4-dispatcher"),
        ("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/", "2.6.12-1+deb12u4"),
        ("nginx version: nginx/1.22.1", "1.22.1"),
        ("runc version 1.1.5+ds1\ncommit: x\ngo: go1.19.8", "1.1.5+ds1"),
        ("crictl version v1.36.0", "1.36.0"),
        ("etcdctl version: 3.4.23\nAPI version: 3.4", "3.4.23"),
        ("sh: 1: kubeadm: not found", None),
    ],
)
def test_parse_version(text: str, version: str | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("s390x", "s390x")]
)
def test_arch_of(machine: str, arch: str) -> None:
    assert arch_of(machine) == arch


@pytest.mark.parametrize(
    ("os_id", "like", "family"),
    [
        ("ubuntu", ("debian",), "debian"),
        ("debian", (), "debian"),
        ("almalinux", ("rhel", "centos", "fedora"), "rhel"),
        ("fedora", (), "rhel"),
        ("opensuse-leap", ("suse", "opensuse"), "suse"),
        ("flatcar", (), "other"),
    ],
)
def test_family_of(os_id: str, like: tuple[str, ...], family: str) -> None:
    assert family_of(os_id, like) == family


def test_sysctl_path_handles_slashes_standing_for_dots() -> None:
    assert sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    assert sysctl_path("net.ipv4.conf.eth0/100.rp_filter") == "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"units": ("kubelet; rm -rf /",)}, "units"),
        ({"users": ("Root",)}, "users"),
        ({"files": ("relative/path",)}, "files"),
        ({"contents": ("/etc/a\nb",)}, "contents"),
        ({"binaries": ("bash",)}, "binaries"),
        ({"packages": "curl"}, "packages"),
    ],
)
def test_query_rejects_unsafe_or_unknown_items(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(CapstanError, match=f"facts query {field}"):
        FactsQuery(**kwargs)  # type: ignore[arg-type]


def test_query_union_keeps_order_and_drops_duplicates() -> None:
    a = FactsQuery(files=("/a", "/b"), sysctls=("x.y",), binaries=())
    b = FactsQuery(files=("/b", "/c"), units=("u",), binaries=("etcd",))
    assert (a | b).files == ("/a", "/b", "/c") and (a | b).units == ("u",) and (a | b).binaries == ("etcd",)
    assert FactsQuery.union([a, b]) == a | b
    assert FactsQuery(files=["/x", "/x"]).files == ("/x",)  # type: ignore[arg-type]


def test_script_is_valid_posix_sh_and_quotes_odd_paths() -> None:
    odd = "/tmp/it's a $(dangerous) `file`"
    script = build_script(FactsQuery(files=(odd,), contents=(odd,), disk=(odd,), units=("a@b.service",)))
    if shutil.which("dash"):
        subprocess.run(["dash", "-n", "-c", script], check=True)
    subprocess.run(["sh", "-n", "-c", script], check=True)
    assert shlex.quote(odd) in script


# -- the script, run for real on this machine ---------------------------------------------------


def _local_run(call_script: str) -> Result:
    done = subprocess.run(["sh", "-c", call_script], capture_output=True, text=True, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


def test_gather_on_this_machine_gives_sane_facts(tmp_path: Path) -> None:
    odd = tmp_path / "odd name's $(x).conf"
    odd.write_bytes(b"key = value\n\xff\x00binary\n")
    passwd = Path("/etc/passwd")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    query = FactsQuery(
        files=(str(passwd), str(tmp_path), str(tmp_path / "missing")),
        contents=(str(odd),),
        disk=(str(tmp_path / "not" / "yet"),),
        sysctls=("kernel.ostype", "net.ipv4.ip_local_port_range", "does.not.exist"),
        users=("root", "no_such_user_x"),
        groups=("root",),
        packages=("coreutils", "no-such-package-x"),
    )
    fake = FakeTransport("local").on(
        lambda text: "@@capstan@@" in text, lambda call: _local_run(str(call.argv))
    )
    try:
        facts = gather_facts(fake, query)
    finally:
        listener.close()
    assert fake.calls[0].sudo is True and len(fake.calls) == 1, "one round trip, privileged"
    assert facts.host == "local"
    assert facts.cpus == os.cpu_count()
    assert facts.memory_mb > 100
    assert facts.hostname == socket.gethostname()
    assert facts.arch == arch_of(os.uname().machine) and facts.kernel == os.uname().release
    assert abs(facts.time - time.time()) < 300
    assert facts.os.id and facts.os.family in ("debian", "rhel", "suse", "other")
    assert port in facts.listening_ports
    assert "lo" in facts.interfaces and "127.0.0.1/8" in facts.interfaces["lo"]
    info = facts.file(str(passwd))
    assert info is not None and info.sha256 == hashlib.sha256(passwd.read_bytes()).hexdigest()
    assert info.mode == passwd.stat().st_mode & 0o7777 and info.owner == "root"
    assert facts.file(str(tmp_path)) is not None and facts.file(str(tmp_path)).is_dir  # type: ignore[union-attr]
    assert facts.file(str(tmp_path / "missing")) is None
    assert facts.content(str(odd)) == odd.read_bytes()
    assert (facts.free_mb(str(tmp_path / "not" / "yet")) or 0) > 0
    assert facts.sysctl("kernel.ostype") == "Linux"
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert facts.sysctl("net.ipv4.ip_local_port_range") == f"{low} {high}"
    assert facts.sysctl("does.not.exist") is None
    assert facts.users == {"root": 0, "no_such_user_x": None} and facts.groups == {"root": 0}
    if shutil.which("dpkg-query") or shutil.which("rpm"):
        assert facts.package("coreutils") is not None and facts.package("no-such-package-x") is None
    for name, info_ in facts.binaries.items():
        found = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        assert (info_ is not None) == (found is not None), name
        if info_ is not None:
            assert info_.version is None or re.match(r"^\d+\.\d+", info_.version)


def test_file_facts_for_odd_names_empty_links_and_big_files_in_one_stat_and_one_sha256sum(
    tmp_path: Path,
) -> None:
    made = {
        "pipe|in|name": b"a|b\n",
        "back\\slash": b"backslash\n",
        "empty": b"",
        "big": b"x" * (3 << 20),  # past the sum cache's threshold: hashed by sumof, not the batch
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "link").symlink_to(tmp_path / "pipe|in|name")
    paths = [str(tmp_path / n) for n in [*made, "link"]] + [str(tmp_path), str(tmp_path / "absent")]
    fake = FakeTransport("local").on(
        lambda text: "@@capstan@@" in text, lambda call: _local_run(str(call.argv))
    )
    facts = gather_facts(fake, FactsQuery(files=tuple(paths), binaries=()))
    for name, data in made.items():
        info = facts.file(str(tmp_path / name))
        assert info is not None and info.is_file, name
        assert (info.sha256, info.size) == (hashlib.sha256(data).hexdigest(), len(data)), name
    link = facts.file(str(tmp_path / "link"))
    assert link is not None and link.is_file and link.sha256 == hashlib.sha256(b"a|b\n").hexdigest()
    folder = facts.file(str(tmp_path))
    assert folder is not None and folder.is_dir and folder.sha256 is None
    assert facts.file(str(tmp_path / "absent")) is None
    script = build_script(FactsQuery(files=tuple(paths), binaries=()))
    assert script.count("stat -L -c '%F") == 1 and script.count("sha256sum -- ") == 1


# `systemctl show -p LoadState -p ActiveState -p UnitFileState -- kubelet nope etcd`, as systemd 252
# prints it (property order is systemd's, blocks separated by blank lines) and as the lab's emulator
# does (no blank lines; a missing unit is "static" and "unknown" there).
SHOW_SYSTEMD = """
@@capstan@@ units-show
LoadState=loaded
ActiveState=active
UnitFileState=enabled

LoadState=not-found
ActiveState=inactive
UnitFileState=

LoadState=loaded
ActiveState=failed
UnitFileState=disabled

@@capstan@@ end
"""
SHOW_EMULATOR = """
@@capstan@@ units-show
ActiveState=active
LoadState=loaded
UnitFileState=enabled
ActiveState=unknown
LoadState=not-found
UnitFileState=static
ActiveState=failed
LoadState=loaded
UnitFileState=disabled
@@capstan@@ end
"""


@pytest.mark.parametrize("output", [SHOW_SYSTEMD, SHOW_EMULATOR], ids=["systemd", "emulator"])
def test_unit_states_from_one_systemctl_show_match_is_active_and_is_enabled(output: str) -> None:
    q = FactsQuery(units=("kubelet", "nope", "etcd"), binaries=())
    units = parse_facts(output, q, host="h").units
    assert (units["kubelet"].active, units["kubelet"].enabled, units["kubelet"].exists) == (True, True, True)
    assert (units["nope"].active_state, units["nope"].enabled_state, units["nope"].exists) == (
        "inactive",
        "not-found",
        False,
    )
    assert (units["etcd"].active_state, units["etcd"].enabled_state) == ("failed", "disabled")


def test_a_show_output_of_the_wrong_shape_is_ignored_and_the_per_unit_answers_count() -> None:
    q = FactsQuery(units=("kubelet", "etcd"), binaries=())
    output = (
        "\n@@capstan@@ units-show\nActiveState=active\n"
        "@@capstan@@ units\netcd|active|enabled\n@@capstan@@ end\n"
    )
    units = parse_facts(output, q, host="h").units
    assert units["etcd"].active and not units["kubelet"].exists


def test_the_units_section_asks_systemctl_show_once_for_every_unit() -> None:
    script = build_script(FactsQuery(units=("etcd", "kubelet"), binaries=()))
    assert script.count("systemctl show") == 1
    assert "-p LoadState -p ActiveState -p UnitFileState -- etcd.service kubelet.service" in script
    assert "-eq 6 ]" in script  # 3 properties for each of the 2 units, else unit by unit


def test_a_unit_asked_by_two_names_is_asked_once_and_answers_both() -> None:
    """``kubelet`` and ``kubelet.service`` (two phases' queries merged) are one unit: systemd's
    emulator prints one block for both, so asking twice would never match the expected shape."""
    q = FactsQuery(units=("kubelet", "haproxy", "kubelet.service", "cron.timer"), binaries=())
    script = build_script(q)
    assert "-- kubelet.service haproxy.service cron.timer 2>" in script
    assert "-eq 9 ]" in script
    output = (
        "\n@@capstan@@ units-show\n"
        "ActiveState=active\nLoadState=loaded\nUnitFileState=enabled\n\n"
        "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n\n"
        "ActiveState=inactive\nLoadState=loaded\nUnitFileState=enabled\n@@capstan@@ end\n"
    )
    units = parse_facts(output, q, host="h").units
    assert units["kubelet"] == units["kubelet.service"] and units["kubelet"].active
    assert not units["haproxy"].exists and not units["cron.timer"].active


def test_clock_skew_counts_only_what_lies_outside_the_gather_window() -> None:
    assert clock_skew(1000, 990.0, 1010.0) == 0  # a slow gather: any reading inside is in time
    assert clock_skew(999, 999.5, 1000.0) == 0  # whole seconds: 999 stands for up to 999.99...
    assert clock_skew(1030, 990.0, 1010.0) == 20  # ahead of the answer's arrival
    assert clock_skew(970, 990.0, 1010.0) == 19  # behind the request's sending (970 + 1 s)


def test_sysctl_values_are_matched_by_their_whole_path_and_joined_across_lines() -> None:
    query = FactsQuery(
        sysctls=("net.ipv4.conf.eth0:1.forwarding", "dev.raid.speed_limit_min", "a.b"), binaries=()
    )
    out = (
        "\n@@capstan@@ sysctls\n0|1|\n1|1|\n2|1|\n"
        "@@capstan@@ sysctl-values\n"
        "/proc/sys/net/ipv4/conf/eth0:1/forwarding:1\n"
        "/proc/sys/dev/raid/speed_limit_min:1000\n/proc/sys/dev/raid/speed_limit_min:\t2000\n"
        "@@capstan@@ end\n"
    )
    facts = parse_facts(out, query, host="h")
    assert facts.sysctls == {
        "net.ipv4.conf.eth0:1.forwarding": "1",
        "dev.raid.speed_limit_min": "1000 2000",
        "a.b": "",  # readable and empty: grep printed no line for it
    }
