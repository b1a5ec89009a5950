"""Making and unmaking a lab's pieces, in order. ``Lab`` (lab.py) is the public face of these steps.

Order matters for safety and for cleanup: the state directory (a tmpfs) and ``lab.json`` come first,
so a failure at any later step can be undone by :func:`teardown` from the record alone; processes go
before interfaces, interfaces before the mount. The mirror is built in a thread while hosts boot,
because packing the binaries is the slowest step on a cold cache.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from capstan.errors import LabError
from capstan.lab import host as hostmod
from capstan.lab import names, net, procs, rootfs, specfile
from capstan.lab.mirror import MirrorEntry, cached_mirror, read_sums, start_server
from capstan.lab.state import HostState, LabState, lab_dir, lab_root, save_state

SPEC_FILE = "cluster.yaml"
KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"

Children = list[subprocess.Popen[bytes]]
"""Processes this Python process started (kept to reap them; others are reaped by their new parent)."""


def mirror_url(state: LabState) -> str:
    return f"http://{names.bridge_ip(state.octet)}:{state.mirror_port}"


def spec_doc(state: LabState, checksums: specfile.Checksums) -> dict[str, Any]:
    d = lab_dir(state.name)
    return specfile.spec_document(
        name=state.name,
        hosts=[(h.name, h.ip, h.roles) for h in state.hosts],
        key_path=d / KEY_FILE,
        known_hosts_path=d / KNOWN_HOSTS_FILE,
        mirror_url=mirror_url(state) if state.mirror_dir else None,
        checksums=checksums,
    )


def claim(state: LabState) -> None:
    """Take the lab's subnet for good: state tmpfs, ``lab.json``, bridge with its address, guard table.

    ``Lab.up`` runs this under the machine-wide allocation lock, so two labs started at the same time
    cannot both pass the collision check for the same /24.
    """
    d = lab_dir(state.name)
    d.mkdir(parents=True, exist_ok=True)
    procs.run(["mount", "-t", "tmpfs", "-o", "mode=700,size=50%", f"capstan-lab-{state.name}", str(d)])
    state.mounted = True
    save_state(state)
    (d / "log").mkdir()
    net.create_bridge(state, names.bridge_ip(state.octet))


def populate(
    state: LabState, children: Children, mirror: bool, entries: Sequence[MirrorEntry] | None, timeout: float
) -> None:
    """Everything after :func:`claim`: keys, host disks, links, boot, mirror, spec; then wait for sshd.

    On failure the caller runs :func:`teardown`.
    """
    deadline = time.monotonic() + timeout
    d = lab_dir(state.name)
    builder = MirrorBuild(entries) if mirror else None

    user = rootfs.new_keypair(f"capstan-lab-{state.name}")
    (d / KEY_FILE).write_bytes(user.private)
    (d / KEY_FILE).chmod(0o600)
    (d / f"{KEY_FILE}.pub").write_text(user.public + "\n")
    rootfs.install_emulator(d / "emulator")
    etc_hosts = rootfs.hosts_file((h.name, h.ip) for h in state.hosts)
    known = []
    for h in state.hosts:
        key = rootfs.new_keypair(f"root@{h.name}")
        known.append((h.name, h.ip, key.public))
        rootfs.prepare_upper(
            hostmod.host_dir(d, h.name) / "upper",
            hostname=h.name,
            host_key=key,
            authorized_key=user.public,
            etc_hosts=etc_hosts,
            emulator=d / "emulator",
        )
    (d / KNOWN_HOSTS_FILE).write_text(specfile.known_hosts(known))

    gateway = names.bridge_ip(state.octet)
    net.create_host_links(state, state.hosts, gateway)
    boot_hosts(state, state.hosts, deadline, children)

    checksums: specfile.Checksums = {}
    if builder is not None:
        base, checksums = builder.result(deadline)
        state.mirror_dir = str(base)
        server = start_server(base, gateway, state.mirror_port, d / "log" / "mirror.log")
        children.append(server)
        state.mirror = procs.ref(server.pid)
        state.checksums = checksums
        save_state(state)
    specfile.write_spec(d / SPEC_FILE, spec_doc(state, checksums))
    hostmod.wait_sshd(state.hosts, max(1.0, deadline - time.monotonic()))


def boot_hosts(state: LabState, hosts: Iterable[HostState], deadline: float, children: Children) -> None:
    """Start every host's PID-1 chain at once, then record the PIDs each one reports."""
    d = lab_dir(state.name)
    started = [(h, hostmod.spawn(d, lab_root(), h)) for h in hosts]
    children += [p for _, p in started]
    try:
        for h, proc in started:
            hostmod.wait_started(d, h, proc, deadline)
            h.state = "up"
    finally:
        save_state(state)


def teardown(state: LabState, children: Children) -> None:
    """Kill recorded processes, remove the network pieces, unmount and delete the state directory."""
    try:
        procs.kill_all([state.mirror], timeout=10.0)
        procs.kill_chains([(h.init, h.outer) for h in state.hosts], timeout=10.0)
    finally:
        children[:] = [p for p in children if p.poll() is None]
    net.teardown(state)
    d = lab_dir(state.name)
    if state.mounted or os.path.ismount(d):
        res = procs.run(["umount", str(d)], check=False)
        if res.returncode != 0 and os.path.ismount(d):
            raise LabError(f"lab {state.name}: cannot unmount {d}: {res.stderr.strip()}")
    if d.is_dir() and not os.path.ismount(d):
        with contextlib.suppress(OSError):  # an emptied mount point; anything else there is not ours
            d.rmdir()


class MirrorBuild:
    """Builds (or finds in the cache) the mirror tree in a thread while the hosts boot."""

    def __init__(self, entries: Sequence[MirrorEntry] | None) -> None:
        self._entries = entries
        self._out: tuple[Path, specfile.Checksums] | None = None
        self._err: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lab-mirror", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from capstan.lab.artifacts import checksum_table, lab_entries

            entries = list(self._entries) if self._entries is not None else lab_entries()
            base = cached_mirror(lab_root() / ".mirror-cache", entries)
            self._out = (base, checksum_table(entries, read_sums(base)))
        except BaseException as exc:
            self._err = exc

    def result(self, deadline: float) -> tuple[Path, specfile.Checksums]:
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._err is not None:
            if isinstance(self._err, LabError):
                raise self._err
            raise LabError(f"building the lab mirror failed: {self._err}") from self._err
        if self._out is None:
            raise LabError("building the lab mirror did not finish in time")
        return self._out
