"""The supported option matrix: which CNI x runtime x kube-proxy mode x API endpoint capstan supports.

Kubespray's option space multiplies to thousands of paths, most never tested; like its CI did, we keep
an explicit, short list and reject everything else at validation time with the reason. One table in
code (here) and one in the README (generated from here by ``matrix_markdown``). A combination is in the
table only if the components are known to work together upstream:

- cilium replaces kube-proxy's service handling with eBPF socket load-balancing and conflicts with
  kube-proxy's IPVS mode, so it runs beside iptables or nftables kube-proxy only;
- flannel's nftables support is new and it relies on kube-proxy for services, so iptables and IPVS;
- calico works with all three kube-proxy modes;
- both runtimes and all four endpoint kinds work with every CNI above.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

RUNTIMES = ("containerd", "cri-o")
ENDPOINTS = ("haproxy", "nginx", "external", "vip")

_PROXY_MODES_BY_CNI: dict[str, tuple[str, ...]] = {
    "calico": ("ipvs", "iptables", "nftables"),
    "cilium": ("iptables", "nftables"),
    "flannel": ("ipvs", "iptables"),
}


@dataclass(frozen=True)
class Combination:
    cni: str
    runtime: str
    proxy_mode: str
    endpoint: str


SUPPORTED: frozenset[Combination] = frozenset(
    Combination(cni, rt, pm, ep)
    for cni, modes in _PROXY_MODES_BY_CNI.items()
    for rt, pm, ep in product(RUNTIMES, modes, ENDPOINTS)
)


def why_unsupported(combo: Combination) -> str | None:
    """None when supported, else a one-line reason naming the offending option."""
    if combo in SUPPORTED:
        return None
    modes = _PROXY_MODES_BY_CNI.get(combo.cni)
    if modes is None:
        return f"network plugin {combo.cni!r} is not supported (supported: {', '.join(_PROXY_MODES_BY_CNI)})"
    if combo.proxy_mode not in modes:
        return (
            f"kube-proxy mode {combo.proxy_mode!r} is not supported with {combo.cni} (use {', '.join(modes)})"
        )
    return f"{combo} is outside the supported matrix"


def matrix_markdown() -> str:
    """The README table: one row per CNI, listing what it combines with."""
    lines = [
        "| network plugin | container runtime | kube-proxy mode | API endpoint |",
        "|---|---|---|---|",
    ]
    for cni, modes in _PROXY_MODES_BY_CNI.items():
        lines.append(f"| {cni} | {', '.join(RUNTIMES)} | {', '.join(modes)} | {', '.join(ENDPOINTS)} |")
    lines.append(f"\n{len(SUPPORTED)} supported combinations; everything else is rejected by validation.")
    return "\n".join(lines)
