"""``Lab``: bring a set of lab hosts up, change them (faults, crash, boot) and tear them down.

A lab is a bridge with a /24 inside 10.250.0.0/16, one host per network namespace behind a veth,
an artifact mirror on the bridge address, and a state directory (a tmpfs) holding the SSH key, the
ready cluster.yaml, known_hosts, the hosts' upper layers and ``lab.json``. Every change is recorded in
``lab.json`` first-hand, so ``Lab.attach(name)`` in another process can continue where ``up`` left,
and ``down`` removes exactly what was made, by recorded name and PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from capstan.errors import LabError
from capstan.lab import build, names, net, procs, specfile
from capstan.lab import host as hostmod
from capstan.lab.mirror import MirrorEntry
from capstan.lab.names import HostSpec
from capstan.lab.state import HostState, LabState, lab_dir, list_labs, load_state, locked, machine_lock
from capstan.lab.state import save_state as _save

MIRROR_PORT = 8080
HostsArg = int | Sequence[HostSpec | tuple[str, Sequence[str]]] | None


@dataclass(frozen=True)
class HostStatus:
    name: str
    ip: str
    roles: tuple[str, ...]
    state: str  # up | down | crashed
    sshd: bool
    cut: bool
    partitions: tuple[str, ...]
    loss: int


def _topology(hosts: HostsArg, workers: int | None) -> list[HostSpec]:
    if hosts is None or isinstance(hosts, int):
        return names.default_topology(hosts, workers)
    specs = [h if isinstance(h, HostSpec) else HostSpec(h[0], tuple(h[1])) for h in hosts]
    return names.check_topology(specs)


def _preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, nft)")
    missing = [t for t in ("ip", "nft", "nsenter", "unshare", "/usr/sbin/sshd") if not shutil.which(t)]
    if missing:
        raise LabError(f"the lab needs these tools, not found: {', '.join(missing)}")


def _new_state(name: str, topo: Sequence[HostSpec], octet: int | None) -> LabState:
    octet = octet if octet is not None else names.default_octet(name)
    names.subnet(octet)
    hosts = [
        HostState(
            name=h.name,
            roles=list(h.roles),
            index=i,
            ip=names.host_ip(octet, i),
            netns=names.netns_name(name, h.name),
            veth=names.veth_name(name, i),
        )
        for i, h in enumerate(topo)
    ]
    br = names.bridge_name(name)
    return LabState(name, octet, br, names.nft_table(name), hosts=hosts, mirror_port=MIRROR_PORT)


def _check_free(state: LabState) -> None:
    """Refuse a /24, bridge or address that another lab (or anything else on the machine) holds."""
    other = _taken_octets(state.name).get(state.octet)
    if other is not None:
        raise LabError(
            f"lab {state.name}: subnet 10.250.{state.octet}.0/24 is taken by lab {other}; choose another name"
        )
    if net.address_in_use(names.bridge_ip(state.octet)) or net.link_exists(state.bridge):
        raise LabError(
            f"lab {state.name}: {state.bridge} or 10.250.{state.octet}.1 already exists on this machine"
        )
    if net.table_exists(state.table):
        raise LabError(f"lab {state.name}: nft table inet {state.table} already exists on this machine")


def _taken_octets(skip: str) -> dict[int, str]:
    taken = {}
    for other in list_labs():
        st = load_state(other) if other != skip else None
        if st is not None:
            taken[st.octet] = other
    return taken


class Lab:
    """A running lab. Build with :meth:`up` or :meth:`attach`; always end with :meth:`down`."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self._children: list[subprocess.Popen[bytes]] = []

    # ---- views -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.state.name

    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def spec_path(self) -> Path:
        return self.dir / build.SPEC_FILE

    @property
    def key_path(self) -> Path:
        return self.dir / build.KEY_FILE

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / build.KNOWN_HOSTS_FILE

    @property
    def bridge_ip(self) -> str:
        return names.bridge_ip(self.state.octet)

    @property
    def mirror_url(self) -> str:
        return build.mirror_url(self.state)

    @property
    def mirror_dir(self) -> Path:
        return Path(self.state.mirror_dir)

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.state.hosts]

    def host(self, name: str) -> HostState:
        return self.state.host(name)

    def ip(self, name: str) -> str:
        return self.host(name).ip

    # ---- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        name: str = "lab",
        hosts: HostsArg = None,
        *,
        workers: int | None = None,
        octet: int | None = None,
        mirror: bool = True,
        mirror_entries: Sequence[MirrorEntry] | None = None,
        timeout: float = 60.0,
    ) -> Lab:
        """Create and boot a lab; return once every host's sshd answers (or raise after cleaning up).

        ``hosts``: a count (first min(3, n) control planes) or explicit (name, roles) pairs.
        ``octet``: the third octet of the lab's /24 (default: derived from the name).
        """
        names.check_lab_name(name)
        topo = _topology(hosts, workers)
        _preflight()
        with locked(name):
            if load_state(name) is not None or os.path.ismount(lab_dir(name)):
                raise LabError(f"lab {name} already exists (capstan lab down --name {name})")
            lab = cls(_new_state(name, topo, octet))
            specfile.check_document(build.spec_doc(lab.state, {}))  # a bad topology fails before any change
            net.ensure_blackhole()
            net.check_forwarding_off()
            with machine_lock():
                _check_free(lab.state)  # before the try: on a collision nothing is ours to remove
                try:
                    build.claim(lab.state)
                except BaseException:
                    lab._teardown()
                    raise
            try:
                build.populate(lab.state, lab._children, mirror, mirror_entries, timeout)
            except BaseException:
                lab._teardown()
                raise
            return lab

    @classmethod
    def attach(cls, name: str) -> Lab:
        state = load_state(names.check_lab_name(name))
        if state is None:
            raise LabError(f"no lab named {name} (labs: {', '.join(list_labs()) or 'none'})")
        return cls(state)

    @staticmethod
    def existing() -> list[str]:
        """Names of the labs recorded under the lab root."""
        return list_labs()

    @classmethod
    def destroy(cls, name: str) -> None:
        """``down`` by name; also cleans the leftovers (mount, bridge, table) of a lab without state."""
        names.check_lab_name(name)
        with locked(name):
            state = load_state(name)
            if state is None:
                br = names.bridge_name(name)
                if not (os.path.ismount(lab_dir(name)) or net.link_exists(br)):
                    raise LabError(f"no lab named {name} (labs: {', '.join(list_labs()) or 'none'})")
                state = LabState(name, names.default_octet(name), br, names.nft_table(name), hosts=[])
            cls(state)._teardown()

    @staticmethod
    def free_name(prefix: str) -> str:
        """``prefix`` or ``prefix-N``: a name with no lab and a derived subnet no other lab uses."""
        taken = _taken_octets("")
        for n in range(1, 1000):
            cand = prefix if n == 1 else f"{prefix}-{n}"
            if cand not in list_labs() and names.default_octet(cand) not in taken:
                ip = names.bridge_ip(names.default_octet(cand))
                if not net.address_in_use(ip):
                    return names.check_lab_name(cand)
        raise LabError(f"no free lab name with prefix {prefix!r}")

    def down(self) -> None:
        """Remove everything the lab made: processes, namespaces, links, nft table, mounts, state."""
        with locked(self.name):
            self._refresh()
            self._teardown()

    # ---- faults ------------------------------------------------------------------------------
    def crash(self, name: str) -> None:
        """Power cut: SIGKILL the host's PID 1 (its PID namespace dies with it); its disk is kept."""
        with locked(self.name):
            self._refresh()
            h = self.host(name)
            procs.kill_chains([(h.init, h.outer)])
            self._reap()
            h.state = "crashed"
            self._save()

    def boot(self, name: str, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Start a stopped or crashed host again with its upper layer as it was (a reboot)."""
        with locked(self.name):
            self._refresh()
            h = self.host(name)
            if procs.alive(h.init):
                raise LabError(f"host {name} is already running")
            build.boot_hosts(self.state, [h], time.monotonic() + timeout, self._children)
        if wait and not h.cut:
            self.wait_ssh(name, timeout)

    def cut(self, name: str) -> None:
        """Unplug the host's cable: its veth goes down on the bridge side."""
        with locked(self.name):
            self._refresh()
            h = self.host(name)
            net.set_link(h.veth, up=False)
            h.cut = True
            self._save()

    def heal(self, name: str) -> None:
        """Undo every fault of this host: cable back in, partitions involving it, packet loss."""
        with locked(self.name):
            self._refresh()
            h = self.host(name)
            net.set_link(h.veth, up=True)
            h.cut = False
            touched = [h]
            for peer in list(h.partitions):
                p = self.host(peer)
                p.partitions = [x for x in p.partitions if x != name]
                touched.append(p)
            h.partitions, h.loss = [], 0
            for t in touched:
                net.apply_faults(self.state, t)
            self._save()

    def partition(self, a: str, b: str) -> None:
        """Drop all traffic between hosts a and b (rules inside both hosts' network namespaces)."""
        if a == b:
            raise LabError(f"cannot partition host {a} from itself")
        with locked(self.name):
            self._refresh()
            ha, hb = self.host(a), self.host(b)
            for x, y in ((ha, hb), (hb, ha)):
                if y.name not in x.partitions:
                    x.partitions.append(y.name)
                net.apply_faults(self.state, x)
            self._save()

    def loss(self, name: str, percent: int) -> None:
        """Drop ``percent``% of the host's packets at random, in each direction (0 removes the loss)."""
        if not 0 <= percent <= 100:
            raise LabError(f"loss percent {percent} is outside 0..100")
        with locked(self.name):
            self._refresh()
            h = self.host(name)
            h.loss = percent
            net.apply_faults(self.state, h)
            self._save()

    # ---- inside hosts ------------------------------------------------------------------------
    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host (all its namespaces), for tests' ground truth. Not over SSH."""
        self._refresh()
        return hostmod.run_in(self.host(name), argv, input=input, env=env, timeout=timeout)

    def wait_ssh(self, name: str, timeout: float = 30.0) -> None:
        hostmod.wait_sshd([self.host(name)], timeout)

    def ssh_argv(self, name: str, command: Sequence[str] = ()) -> list[str]:
        """The `ssh` command line that logs into a host with the lab's key and known_hosts."""
        opts = {
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(self.known_hosts_path),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "BatchMode": "yes",
            "ConnectTimeout": "3",
            "LogLevel": "ERROR",
        }
        argv = ["ssh", "-F", "/dev/null", "-i", str(self.key_path)]
        for k, v in opts.items():
            argv += ["-o", f"{k}={v}"]
        return [*argv, f"root@{self.ip(name)}", *command]

    def pids(self, name: str) -> list[int]:
        """PIDs of every process of the host (its PID namespace, plus the unshare holding it)."""
        self._refresh()
        h = self.host(name)
        if not procs.alive(h.init):
            return []
        assert h.init is not None and h.outer is not None
        inode = procs.ns_inode(h.init.pid, "pid")
        inside = procs.pids_in_ns("pid", inode) if inode is not None else []
        return [h.outer.pid, *inside]

    def status(self) -> list[HostStatus]:
        self._refresh()
        out = []
        for h in self.state.hosts:
            up = procs.alive(h.init)
            state = "up" if up else ("crashed" if h.state == "crashed" else "down")
            sshd = up and not h.cut and hostmod.sshd_answers(h.ip)
            out.append(
                HostStatus(h.name, h.ip, tuple(h.roles), state, sshd, h.cut, tuple(h.partitions), h.loss)
            )
        return out

    # ---- internals ---------------------------------------------------------------------------
    def _save(self) -> None:
        _save(self.state)

    def _refresh(self) -> None:
        """Re-read lab.json: another process (the CLI, another test) may have changed the lab."""
        fresh = load_state(self.name)
        if fresh is not None:
            self.state = fresh

    def _reap(self) -> None:
        self._children[:] = [p for p in self._children if p.poll() is None]

    def _teardown(self) -> None:
        build.teardown(self.state, self._children)
