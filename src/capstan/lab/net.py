"""The lab's network: bridge, veths, network namespaces, guard rules and injected faults.

Safety first: before anything is created the whole lab range is blackholed in the root namespace (so
a lab address that is not up goes nowhere, never to the real network), IPv4 forwarding must be off,
and each lab's nft table drops anything forwarded between its bridge and another interface and lets
hosts reach only the lab's mirror port on the root side. Faults are nft tables *inside* a host's
network namespace, rebuilt whole from the recorded state each time, so heal is exact and idempotent.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence

from capstan.errors import LabError
from capstan.lab.names import LAB_RANGE
from capstan.lab.procs import run
from capstan.lab.state import HostState, LabState

FAULT_TABLE = "capstan_fault"


def ensure_blackhole() -> None:
    """Blackhole 10.250.0.0/16 (idempotent). It stays after the last lab: harmless and protective."""
    run(["ip", "route", "replace", "blackhole", str(LAB_RANGE)])


def check_forwarding_off() -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        if fh.read().strip() != "0":
            raise LabError(
                "net.ipv4.ip_forward is on in the root namespace; the lab refuses to run with it on"
            )


def address_in_use(addr: str) -> bool:
    out = run(["ip", "-4", "-o", "addr", "show"]).stdout
    return any(f" {addr}/" in line for line in out.splitlines())


def link_exists(name: str) -> bool:
    return name in links()


def links() -> set[str]:
    """Names of every interface in the root namespace (one `ip` call instead of one per name)."""
    out = run(["ip", "-o", "link", "show"]).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def table_exists(table: str) -> bool:
    return run(["nft", "list", "table", "inet", table], check=False).returncode == 0


def netns_names() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()}


def guard_rules(table: str, bridge: str, bridge_ip: str, ports: Iterable[int]) -> str:
    """nft script for the lab's root-namespace guard table (replaces any previous version)."""
    allowed = ", ".join(str(p) for p in sorted(set(ports))) or "0"
    br = f'iifname "{bridge}"'
    return f"""table inet {table}
delete table inet {table}
table inet {table} {{
  chain forward_guard {{
    type filter hook forward priority 0; policy accept;
    {br} oifname != "{bridge}" drop
    oifname "{bridge}" iifname != "{bridge}" drop
  }}
  chain input_guard {{
    type filter hook input priority 0; policy accept;
    {br} ct state established,related accept
    {br} ip daddr {bridge_ip} tcp dport {{ {allowed} }} accept
    {br} meta l4proto {{ icmp, ipv6-icmp }} accept
    {br} drop
  }}
}}
"""


def create_bridge(state: LabState, bridge_ip: str) -> None:
    br = state.bridge
    run(["ip", "link", "add", br, "type", "bridge"])
    run(["ip", "addr", "add", f"{bridge_ip}/24", "dev", br])
    run(["ip", "link", "set", br, "up"])
    run(["nft", "-f", "-"], input=guard_rules(state.table, br, bridge_ip, [state.mirror_port]))


def create_host_links(state: LabState, hosts: Sequence[HostState], gateway: str) -> None:
    """Namespaces and veths in one `ip -batch`, then each namespace's addresses in parallel."""
    lines = []
    for h in hosts:
        lines.append(f"netns add {h.netns}")
        lines.append(f"link add {h.veth} type veth peer name eth0 netns {h.netns}")
        lines.append(f"link set {h.veth} master {state.bridge} up")
    run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
    procs = []
    for h in hosts:
        script = (
            f"addr add {h.ip}/24 dev eth0\nlink set lo up\nlink set eth0 up\n"
            f"route add default via {gateway}\n"
        )
        p = subprocess.Popen(
            ["ip", "-n", h.netns, "-batch", "-"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((h, p, script))
    errors = []
    for h, p, script in procs:
        _, err = p.communicate(script)
        if p.returncode != 0:
            errors.append(f"{h.name}: {err.strip()}")
    if errors:
        raise LabError(f"lab {state.name}: configuring host interfaces failed: {'; '.join(errors)}")


def set_link(veth: str, up: bool) -> None:
    run(["ip", "link", "set", veth, "up" if up else "down"])


def fault_rules(block_ips: Iterable[str], loss: int) -> str:
    """nft script for one host's fault table: drop to/from partitioned peers, random loss both ways.

    Loopback is never touched (a host's own 127.0.0.1 keeps working, as on a real machine whose NIC
    misbehaves). Loss applies to each packet in either direction with probability ``loss``%.
    """
    ips = sorted(set(block_ips))
    inp, out = ['iifname "lo" accept'], ['oifname "lo" accept']
    if ips:
        peers = ", ".join(ips)
        inp.append(f"ip saddr {{ {peers} }} drop")
        out.append(f"ip daddr {{ {peers} }} drop")
    if loss >= 100:  # nft's numgen comparison cannot express 100
        inp.append("drop")
        out.append("drop")
    elif loss > 0:
        inp.append(f"numgen random mod 100 < {loss} drop")
        out.append(f"numgen random mod 100 < {loss} drop")
    body_in = "\n    ".join(inp)
    body_out = "\n    ".join(out)
    return f"""table inet {FAULT_TABLE}
delete table inet {FAULT_TABLE}
table inet {FAULT_TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    {body_in}
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    {body_out}
  }}
}}
"""


def apply_faults(state: LabState, host: HostState) -> None:
    """Rebuild the host's fault table from its recorded partitions and loss (or remove it)."""
    ns = f"--net=/run/netns/{host.netns}"
    if not host.partitions and host.loss == 0:
        script = f"table inet {FAULT_TABLE}\ndelete table inet {FAULT_TABLE}\n"
    else:
        script = fault_rules((state.host(p).ip for p in host.partitions), host.loss)
    run(["nsenter", ns, "nft", "-f", "-"], input=script)


def teardown(state: LabState) -> None:
    """Remove veths, namespaces, the bridge and the guard table; missing pieces are fine."""
    ours = [h.veth for h in state.hosts] + [state.bridge]
    present = links()
    lines = [f"link del {name}" for name in ours if name in present]
    existing = netns_names()
    lines += [f"netns del {h.netns}" for h in state.hosts if h.netns in existing]
    if lines:
        run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
    if table_exists(state.table):
        run(["nft", "delete", "table", "inet", state.table])
    present, existing = links(), netns_names()
    left = [name for name in ours if name in present]
    left += [h.netns for h in state.hosts if h.netns in existing]
    if left:
        raise LabError(f"lab {state.name}: could not remove {', '.join(left)}")
