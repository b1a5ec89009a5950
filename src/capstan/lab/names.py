"""Pure naming and addressing for labs: no host is touched here, so unit tests cover all of it.

Why a module of its own: every kernel object a lab creates (bridge, veths, network namespaces, nft
table) lives in one machine-wide namespace and several labs coexist, so names must be derived from the
lab name deterministically (``Lab.attach`` and ``down`` find them again) and must fit the kernel's
15-character interface-name limit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from capstan.errors import LabError

LAB_RANGE = ipaddress.IPv4Network("10.250.0.0/16")
"""Every lab /24 lies in this range, which is blackholed in the root namespace before any host exists."""

FIRST_HOST_OCTET = 11
MAX_HOSTS = 240  # .11 .. .250 in the lab's /24
ROLES = ("control-plane", "etcd", "worker")
CP_ROLES = ("control-plane", "etcd")
WORKER_ROLES = ("worker",)

_LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_IFNAMSIZ = 15


@dataclass(frozen=True)
class HostSpec:
    """A host to create: its name and its cluster roles (as written into the lab's cluster.yaml)."""

    name: str
    roles: tuple[str, ...]


def check_lab_name(name: str) -> str:
    """Lab names become parts of file, namespace and spec names, so keep them to a short DNS label."""
    if not _LAB_NAME.match(name):
        raise LabError(f"lab name {name!r}: use 1-32 lowercase letters, digits and '-' (not at the ends)")
    return name


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def lab_id(name: str) -> str:
    """Six hex digits that stand for the lab in names too short to hold the lab name itself."""
    return _digest(name)[:6]


def bridge_name(name: str) -> str:
    """``cl-<name>``, or ``cl-<prefix><id>`` when the name is too long for an interface name."""
    full = f"cl-{name}"
    if len(full) <= _IFNAMSIZ:
        return full
    return f"cl-{name[: _IFNAMSIZ - 3 - 7]}-{lab_id(name)}"


def nft_table(name: str) -> str:
    """The lab's guard table in the root namespace (family inet); same as the bridge name."""
    return bridge_name(name)


def veth_name(name: str, index: int) -> str:
    """Root-side end of host ``index``'s veth: ``cv<id>h<index>`` (at most 12 characters)."""
    return f"cv{lab_id(name)}h{index}"


def netns_name(name: str, host: str) -> str:
    """Named network namespace of a host (``/run/netns/<this>``)."""
    return f"capstan-{name}-{host}"


def default_octet(name: str) -> int:
    """Third octet of the lab's /24 (1..254), derived from the name so it is stable across runs."""
    return 1 + int(_digest(name), 16) % 254


def subnet(octet: int) -> ipaddress.IPv4Network:
    if not 1 <= octet <= 254:
        raise LabError(f"lab subnet octet {octet} is outside 1..254")
    return ipaddress.IPv4Network(f"10.250.{octet}.0/24")


def bridge_ip(octet: int) -> str:
    return str(subnet(octet).network_address + 1)


def host_ip(octet: int, index: int) -> str:
    """Host ``index`` (0-based) gets .11, .12, ... of the lab's /24."""
    if not 0 <= index < MAX_HOSTS:
        raise LabError(f"host index {index} is outside 0..{MAX_HOSTS - 1}")
    return str(subnet(octet).network_address + FIRST_HOST_OCTET + index)


def default_topology(hosts: int | None = None, workers: int | None = None) -> list[HostSpec]:
    """cp1..cpN then w1..wM. Defaults: 3 control planes and 2 workers.

    ``hosts`` alone: the first min(3, hosts) are control planes, the rest workers. ``workers`` alone:
    3 control planes plus that many workers. Both: ``hosts - workers`` control planes. Only an odd
    number of control planes carry the etcd role (the spec rejects an even etcd count), so with two
    control planes only cp1 runs etcd.
    """
    if hosts is None and workers is None:
        n_cp, n_w = 3, 2
    elif hosts is None:
        n_cp, n_w = 3, workers or 0
    elif workers is None:
        n_cp = min(3, hosts)
        n_w = hosts - n_cp
    else:
        n_cp, n_w = hosts - workers, workers
    if n_w < 0 or n_cp < 1:
        raise LabError(f"lab topology: need at least 1 control plane (hosts={hosts}, workers={workers})")
    if n_cp + n_w > MAX_HOSTS:
        raise LabError(f"lab topology: at most {MAX_HOSTS} hosts, asked for {n_cp + n_w}")
    n_etcd = n_cp if n_cp % 2 else n_cp - 1
    cps = [HostSpec(f"cp{i}", CP_ROLES if i <= n_etcd else ("control-plane",)) for i in range(1, n_cp + 1)]
    return cps + [HostSpec(f"w{i}", WORKER_ROLES) for i in range(1, n_w + 1)]


def check_topology(hosts: Sequence[HostSpec]) -> list[HostSpec]:
    """Validate an explicit host list: DNS-label names, unique, known roles, within the /24."""
    if not hosts:
        raise LabError("lab topology: no hosts")
    if len(hosts) > MAX_HOSTS:
        raise LabError(f"lab topology: at most {MAX_HOSTS} hosts, asked for {len(hosts)}")
    seen: set[str] = set()
    for i, h in enumerate(hosts):
        if not _HOST_NAME.match(h.name):
            raise LabError(f"lab hosts[{i}].name {h.name!r}: use a DNS label of at most 32 characters")
        if h.name in seen:
            raise LabError(f"lab hosts[{i}].name: duplicate host name {h.name!r}")
        seen.add(h.name)
        bad = [r for r in h.roles if r not in ROLES]
        if bad or not h.roles:
            raise LabError(f"lab hosts[{i}].roles {list(h.roles)}: roles must be some of {', '.join(ROLES)}")
    return list(hosts)


def hosts_from_pairs(pairs: Iterable[tuple[str, Iterable[str]]]) -> list[HostSpec]:
    """Accept ``[("cp1", ["control-plane", "etcd"]), ...]`` as well as HostSpec objects."""
    return check_topology([HostSpec(name, tuple(roles)) for name, roles in pairs])
