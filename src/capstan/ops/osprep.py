"""OS preparation for a Kubernetes node, composed from the basic operations.

The set follows what Kubespray's preinstall does (facts from its defaults, code our own): hostname
= inventory name, required packages, swap off, the netfilter/IPVS/overlay modules persisted in
modules-load.d, and the forwarding/bridge/panic/inotify/reserved-ports sysctls persisted in
``/etc/sysctl.d/99-capstan.conf``. Everything per OS family is chosen from the facts, so the RHEL
family only needs its package names checked on a real host.

The lab shares non-``net.*`` sysctls with the whole machine, so the lab flow passes
``runtime_sysctl_prefixes=("net.",)``: the file still holds every key, but only ``net.*`` values
are written to the running kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from capstan.facts.model import HostFacts
from capstan.facts.query import FactsQuery
from capstan.ops.base import Op
from capstan.ops.kernel import MODULES_FILE, SYSCTL_FILE, kernel_modules, swap_off, sysctls
from capstan.ops.packages import packages as packages_op
from capstan.ops.users import hostname as hostname_op

__all__ = ["OSPREP_MODULES", "OSPREP_PACKAGES", "OSPREP_SYSCTLS", "osprep", "osprep_query"]

OSPREP_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.bridge.bridge-nf-call-arptables": "1",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "fs.inotify.max_user_instances": "8192",
    "fs.inotify.max_user_watches": "524288",
    "net.ipv4.ip_local_reserved_ports": "30000-32767",
}

# Modules load before sysctls: the net.bridge.* keys only exist once br_netfilter is in.
OSPREP_MODULES: tuple[str, ...] = (
    "br_netfilter",
    "overlay",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "nf_conntrack",
)

OSPREP_PACKAGES: dict[str, tuple[str, ...]] = {
    "debian": (
        "curl", "socat", "conntrack", "ipset", "ipvsadm", "nftables", "iptables", "ebtables",
        "tar", "openssl", "rsync", "ca-certificates", "iproute2",
    ),
    # RHEL 9+: iptables-nft also provides the ebtables command (no separate ebtables package).
    "rhel": (
        "curl", "socat", "conntrack-tools", "ipset", "ipvsadm", "nftables", "iptables-nft",
        "tar", "openssl", "rsync", "ca-certificates", "iproute",
    ),
}  # fmt: skip

_PERSIST_FILES = ("/etc/fstab", "/etc/hostname")


def osprep_query(
    *,
    packages: Mapping[str, Sequence[str]] = OSPREP_PACKAGES,
    sysctl_values: Mapping[str, str] = OSPREP_SYSCTLS,
) -> FactsQuery:
    """Facts ``osprep`` needs (package names of every family: the family is not known yet)."""
    return FactsQuery(
        files=(SYSCTL_FILE, MODULES_FILE),
        contents=_PERSIST_FILES,
        sysctls=tuple(sysctl_values),
        packages=tuple(dict.fromkeys(p for names in packages.values() for p in names)),
        binaries=(),
    )


def osprep(
    facts: HostFacts,
    *,
    hostname: str,
    runtime_sysctl_prefixes: tuple[str, ...] | None = None,
    packages: Mapping[str, Sequence[str]] = OSPREP_PACKAGES,
    sysctl_values: Mapping[str, str] = OSPREP_SYSCTLS,
    modules: Sequence[str] = OSPREP_MODULES,
) -> list[Op]:
    """The planned OS preparation for one host (empty steps everywhere once converged).

    ``hostname`` is the inventory name. ``runtime_sysctl_prefixes`` limits which sysctls are set in
    the running kernel (``None``: all); all of them are persisted regardless.
    """
    return [
        hostname_op(facts, hostname),
        packages_op(facts, packages),
        swap_off(facts),
        *kernel_modules(facts, modules, path=MODULES_FILE),
        *sysctls(facts, sysctl_values, path=SYSCTL_FILE, runtime_prefixes=runtime_sysctl_prefixes),
    ]
