"""OS preparation: a fresh host gets the full set, a converged host gets nothing, the lab gets less."""

from __future__ import annotations

import hashlib

import pytest

from capstan.facts import FileInfo, HostFacts, ModuleInfo, OsInfo, SwapInfo, parse_facts
from capstan.ops import (
    MODULES_FILE,
    OSPREP_MODULES,
    OSPREP_PACKAGES,
    OSPREP_SYSCTLS,
    SYSCTL_FILE,
    Command,
    PutFile,
    osprep,
    osprep_query,
)
from capstan.ops.kernel import render_sysctl_file

DEBIAN = OsInfo(id="debian", version_id="12", family="debian", pretty_name="Debian GNU/Linux 12 (bookworm)")


def _info(content: bytes, *, keep: bool = False) -> FileInfo:
    sha = hashlib.sha256(content).hexdigest()
    return FileInfo(
        kind="regular file",
        mode=0o644,
        owner="root",
        group="root",
        sha256=sha,
        content=content if keep else None,
    )


def fresh_host() -> HostFacts:
    """A Debian host never touched by capstan: swap on, nothing loaded, packages partly missing."""
    pkgs: dict[str, str | None] = dict.fromkeys(p for names in OSPREP_PACKAGES.values() for p in names)
    pkgs.update(curl="7.88", tar="1.34")
    return HostFacts(
        host="node1",
        os=DEBIAN,
        hostname="debian",
        swap=SwapInfo(total_mb=1024, devices=("/dev/sda2",)),
        modules=ModuleInfo(loaded=frozenset({"overlay"})),
        tools=frozenset({"modprobe", "sysctl", "apt-get"}),
        files={
            SYSCTL_FILE: None,
            MODULES_FILE: None,
            "/etc/fstab": _info(b"/dev/sda2 none swap sw 0 0\n", keep=True),
            "/etc/hostname": _info(b"debian\n", keep=True),
        },
        sysctls={k: ("1" if k == "net.bridge.bridge-nf-call-iptables" else "0") for k in OSPREP_SYSCTLS}
        | {"net.bridge.bridge-nf-call-ip6tables": None, "net.bridge.bridge-nf-call-arptables": None},
        packages=pkgs,
    )


def converged_host() -> HostFacts:
    modules_file = (
        "# Managed by capstan: changes here are overwritten on the next run.\n"
        + "".join(f"{m}\n" for m in OSPREP_MODULES)
    ).encode()
    return HostFacts(
        host="node1",
        os=DEBIAN,
        hostname="node1",
        modules=ModuleInfo(loaded=frozenset(OSPREP_MODULES)),
        tools=frozenset({"modprobe", "sysctl", "apt-get"}),
        files={
            SYSCTL_FILE: _info(render_sysctl_file(OSPREP_SYSCTLS)),
            MODULES_FILE: _info(modules_file),
            "/etc/fstab": _info(b"UUID=1 / ext4 defaults 0 1\n", keep=True),
            "/etc/hostname": _info(b"node1\n", keep=True),
        },
        sysctls=dict(OSPREP_SYSCTLS),
        packages={p: "1.0" for names in OSPREP_PACKAGES.values() for p in names},
    )


def test_fresh_host_gets_every_step_in_a_safe_order() -> None:
    ops = osprep(fresh_host(), hostname="node1")
    steps = [str(s) for op in ops for s in op.steps]
    assert steps[0].startswith("sh -c") and steps[0].endswith(" capstan node1")  # hostname
    missing = (
        "socat conntrack ipset ipvsadm nftables iptables ebtables openssl rsync ca-certificates iproute2"
    )
    assert "apt-get install" in steps[1] and steps[1].endswith(f"capstan {missing}")
    assert steps[1].startswith("DEBIAN_FRONTEND=noninteractive ")
    assert steps[2] == "swapoff -a" and steps[3].startswith("put /etc/fstab (")
    assert steps.index("modprobe br_netfilter") < steps.index(
        "sysctl -w net.bridge.bridge-nf-call-ip6tables=1"
    )
    assert "modprobe overlay" not in steps
    assert (
        f"put {SYSCTL_FILE} ({len(render_sysctl_file(OSPREP_SYSCTLS))} bytes, mode 0644 root:root)" in steps
    )
    assert "sysctl -w vm.overcommit_memory=1" in steps and "sysctl -w kernel.panic=10" in steps
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=1" not in steps, "already 1"


def test_converged_host_yields_no_step_at_all() -> None:
    ops = osprep(converged_host(), hostname="node1")
    assert [str(op) for op in ops if op.changed] == []
    assert len(ops) == 3 + 1 + len(OSPREP_MODULES) + 1 + len(OSPREP_SYSCTLS)


def test_lab_host_sets_only_net_sysctls_and_skips_unloadable_modules() -> None:
    lab = fresh_host().model_copy(
        update={
            "modules": ModuleInfo(
                supported=False, builtin=frozenset({"br_netfilter"}), sysfs=frozenset({"overlay"})
            ),
            "tools": frozenset({"sysctl"}),
            "swap": SwapInfo(),
            "packages": {p: "1" for names in OSPREP_PACKAGES.values() for p in names},
        }
    )
    ops = osprep(lab, hostname="node1", runtime_sysctl_prefixes=("net.",))
    runtime = [str(s) for op in ops for s in op.steps if isinstance(s, Command) and s.argv[0] == "sysctl"]
    assert runtime and all(cmd.startswith("sysctl -w net.") for cmd in runtime)
    module_ops = [op for op in ops if op.description.startswith("kernel module")]
    assert not any(op.changed for op in module_ops)
    assert {op.note for op in module_ops} == {
        "built into the kernel",
        "skipped: this kernel has no loadable modules",
    }
    assert not any("apt-get" in str(s) for op in ops for s in op.steps), "packages present: no package step"
    persisted = [s for op in ops for s in op.steps if isinstance(s, PutFile) and s.path == SYSCTL_FILE]
    assert b"vm.overcommit_memory = 1" in persisted[0].content, "non-net keys are still persisted"


def test_osprep_query_covers_everything_osprep_reads() -> None:
    """Like pyinfra's fact-argument guard: plan against facts parsed for exactly this query."""
    query = osprep_query()
    output = "\n@@capstan@@ os-release\nID=debian\n@@capstan@@ end\n"
    facts = parse_facts(output, query, host="node1")
    osprep(facts, hostname="node1")  # raises FactNotGathered if the query missed something
    assert set(query.sysctls) == set(OSPREP_SYSCTLS) and query.binaries == ()


@pytest.mark.parametrize("family", ["debian", "rhel"])
def test_every_family_has_the_kubernetes_essentials(family: str) -> None:
    names = set(OSPREP_PACKAGES[family])
    assert {"curl", "socat", "ipset", "ipvsadm", "nftables", "tar", "openssl", "rsync"} <= names
    assert names & {"conntrack", "conntrack-tools"}
    assert set(OSPREP_PACKAGES[family]) <= set(osprep_query().packages)
