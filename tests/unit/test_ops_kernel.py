"""Kernel operations: sysctls, modules, swap. Facts in → steps out."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from capstan.facts import FileInfo, HostFacts, ModuleInfo, SwapInfo
from capstan.ops import PutFile, kernel_module, kernel_modules, swap_off, sysctl, sysctls
from capstan.ops.kernel import render_sysctl_file


def strs(op: Any) -> list[str]:
    return [str(s) for s in op.steps]


# -- sysctl --------------------------------------------------------------------------------------

SYSCTL_CASES = [
    pytest.param(
        "net.ipv4.ip_forward", "1", "0", True, ["sysctl -w net.ipv4.ip_forward=1"], "", id="differs"
    ),
    pytest.param("net.ipv4.ip_forward", 1, "1", True, [], "already set", id="converged-int-value"),
    pytest.param(
        "net.ipv4.ip_local_port_range",
        "32768   60999",
        "32768\t60999",
        True,
        [],
        "already set",
        id="whitespace-normalised",
    ),
    pytest.param("vm.overcommit_memory", "1", "0", False, [], "runtime value left alone", id="runtime-off"),
    pytest.param(
        "net.bridge.bridge-nf-call-iptables",
        "1",
        None,
        True,
        ["sysctl -w net.bridge.bridge-nf-call-iptables=1"],
        "",
        id="bridge-key-appears-after-module-load",
    ),
    pytest.param("net.ipv6.conf.all.forwarding", "1", None, True, [], "not available", id="absent-key"),
    pytest.param(
        "net.ipv4.ip_local_reserved_ports",
        "30000-32767",
        "",
        True,
        ["sysctl -w net.ipv4.ip_local_reserved_ports=30000-32767"],
        "",
        id="empty-current-value",
    ),
]


@pytest.mark.parametrize(("key", "value", "current", "runtime", "steps", "note"), SYSCTL_CASES)
def test_sysctl(
    key: str, value: str | int, current: str | None, runtime: bool, steps: list[str], note: str
) -> None:
    op = sysctl(HostFacts(host="h1", sysctls={key: current}), key, value, runtime=runtime)
    assert strs(op) == steps
    assert note in op.note


def test_sysctls_persist_every_key_but_set_only_the_allowed_prefixes() -> None:
    values = {"net.ipv4.ip_forward": "1", "kernel.panic": "10", "vm.panic_on_oom": "0"}
    f = HostFacts(
        host="h1",
        files={"/etc/sysctl.d/99-capstan.conf": None},
        sysctls={"net.ipv4.ip_forward": "0", "kernel.panic": "0", "vm.panic_on_oom": "1"},
    )
    ops = sysctls(f, values, runtime_prefixes=("net.",))
    persist = ops[0].steps[0]
    assert isinstance(persist, PutFile) and persist.path == "/etc/sysctl.d/99-capstan.conf"
    assert persist.content.decode().splitlines()[1:] == [
        "net.ipv4.ip_forward = 1",
        "kernel.panic = 10",
        "vm.panic_on_oom = 0",
    ]
    assert [strs(op) for op in ops[1:]] == [["sysctl -w net.ipv4.ip_forward=1"], [], []]
    assert all(sysctls(f, values)[i].changed for i in range(1, 4)), "runtime_prefixes=None sets all"


def test_sysctls_converged() -> None:
    values = {"net.ipv4.ip_forward": "1"}
    content = render_sysctl_file(values)
    info = FileInfo(
        kind="regular file",
        mode=0o644,
        owner="root",
        group="root",
        sha256=hashlib.sha256(content).hexdigest(),
    )
    f = HostFacts(
        host="h1", files={"/etc/sysctl.d/99-capstan.conf": info}, sysctls={"net.ipv4.ip_forward": "1"}
    )
    assert not any(op.changed for op in sysctls(f, values))


# -- modules -------------------------------------------------------------------------------------

MODULE_CASES = [
    pytest.param(ModuleInfo(loaded=frozenset({"ip_vs"})), {"modprobe"}, [], "loaded", id="loaded"),
    pytest.param(ModuleInfo(), {"modprobe"}, ["modprobe ip_vs"], "", id="load"),
    pytest.param(ModuleInfo(builtin=frozenset({"ip_vs"})), {"modprobe"}, [], "built into", id="builtin"),
    pytest.param(ModuleInfo(sysfs=frozenset({"ip_vs"})), set(), [], "built into", id="sysfs-only"),
    pytest.param(ModuleInfo(), set(), [], "skipped: modprobe not available", id="no-modprobe-lab"),
    pytest.param(
        ModuleInfo(supported=False), {"modprobe"}, [], "no loadable modules", id="monolithic-kernel"
    ),
]


@pytest.mark.parametrize(("mods", "tools", "steps", "note"), MODULE_CASES)
def test_kernel_module(mods: ModuleInfo, tools: set[str], steps: list[str], note: str) -> None:
    op = kernel_module(HostFacts(host="h1", modules=mods, tools=frozenset(tools)), "ip_vs")
    assert strs(op) == steps and note in op.note


def test_br_netfilter_built_in_without_modprobe_is_converged_not_failed() -> None:
    f = HostFacts(
        host="lab1",
        modules=ModuleInfo(supported=False, builtin=frozenset({"br_netfilter"})),
        files={"/etc/modules-load.d/capstan.conf": None},
    )
    ops = kernel_modules(f, ["br_netfilter", "ip_vs"])
    persist = ops[0].steps[0]
    assert isinstance(persist, PutFile) and persist.content.decode().splitlines()[1:] == [
        "br_netfilter",
        "ip_vs",
    ]
    assert not ops[1].changed and "built into the kernel" in ops[1].note
    assert not ops[2].changed and "skipped" in ops[2].note


def test_module_names_with_dashes_match_loaded_underscore_names() -> None:
    f = HostFacts(
        host="h1", modules=ModuleInfo(loaded=frozenset({"nf_conntrack"})), tools=frozenset({"modprobe"})
    )
    assert not kernel_module(f, "nf-conntrack").changed


# -- swap ----------------------------------------------------------------------------------------

FSTAB = (
    b"UUID=1 / ext4 defaults 0 1\n"
    b"/dev/sda2 none swap sw 0 0\n"
    b"# /swapfile none swap sw 0 0\n"
    b"/swap.img\tnone\tswap\tsw\t0\t0\n"
)
FSTAB_OFF = (
    b"UUID=1 / ext4 defaults 0 1\n"
    b"# disabled by capstan (kubelet needs swap off): /dev/sda2 none swap sw 0 0\n"
    b"# /swapfile none swap sw 0 0\n"
    b"# disabled by capstan (kubelet needs swap off): /swap.img\tnone\tswap\tsw\t0\t0\n"
)


def swap_facts(fstab: bytes | None, devices: tuple[str, ...]) -> HostFacts:
    info = (
        None
        if fstab is None
        else FileInfo(kind="regular file", mode=0o644, owner="root", group="root", content=fstab)
    )
    return HostFacts(
        host="h1", files={"/etc/fstab": info}, swap=SwapInfo(total_mb=2048 if devices else 0, devices=devices)
    )


def test_swap_off_turns_swap_off_and_comments_fstab() -> None:
    op = swap_off(swap_facts(FSTAB, ("/dev/sda2",)))
    assert str(op.steps[0]) == "swapoff -a"
    put = op.steps[1]
    assert isinstance(put, PutFile) and put.path == "/etc/fstab" and put.content == FSTAB_OFF


@pytest.mark.parametrize(
    ("fstab", "devices", "steps"),
    [
        (FSTAB_OFF, (), []),
        (None, (), []),
        (FSTAB_OFF, ("/dev/sda2",), ["swapoff -a"]),
        (FSTAB, (), [f"put /etc/fstab ({len(FSTAB_OFF)} bytes, mode 0644 root:root)"]),
    ],
)
def test_swap_off_cases(fstab: bytes | None, devices: tuple[str, ...], steps: list[str]) -> None:
    assert strs(swap_off(swap_facts(fstab, devices))) == steps
