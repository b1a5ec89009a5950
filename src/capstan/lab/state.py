"""A lab's recorded state: what was created, so any later process can change or remove exactly that.

Why on disk: ``capstan lab up`` returns while the hosts keep running; ``crash``, ``status`` and
``down`` run in other processes (or another test session) and must find the PIDs, interfaces and
faults the first one made. The state lives in ``<root>/<name>/lab.json``; ``<root>/<name>`` is a tmpfs
mounted by ``up`` (host upper layers live there too), so ``down`` removes all of it by unmounting.
Writes are atomic (rename) and serialised with a lock file, because CLI commands may race.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capstan.errors import LabError

DEFAULT_ROOT = "/var/lib/capstan-lab"
STATE_FILE = "lab.json"


def lab_root() -> Path:
    """Where labs live: ``$CAPSTAN_LAB_DIR`` or /var/lib/capstan-lab."""
    return Path(os.environ.get("CAPSTAN_LAB_DIR") or DEFAULT_ROOT).absolute()


def lab_dir(name: str) -> Path:
    return lab_root() / name


@dataclass
class ProcRef:
    """A process we started, identified by PID *and* start time so a reused PID is never killed."""

    pid: int
    start: int


@dataclass
class HostState:
    name: str
    roles: list[str]
    index: int
    ip: str
    netns: str
    veth: str
    state: str = "down"  # up | down | crashed
    init: ProcRef | None = None  # the host's PID 1 (as seen from the root namespace)
    outer: ProcRef | None = None  # the unshare process that holds the PID namespace
    cut: bool = False
    partitions: list[str] = field(default_factory=list)  # names of hosts this one cannot reach
    loss: int = 0  # percent of packets dropped in and out


@dataclass
class LabState:
    name: str
    octet: int
    bridge: str
    table: str
    hosts: list[HostState]
    mirror_port: int = 8080
    mirror_dir: str = ""
    mirror: ProcRef | None = None
    mounted: bool = False
    checksums: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def host(self, name: str) -> HostState:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise LabError(f"lab {self.name}: no host named {name!r} (hosts: {known})")


def _proc(data: Any) -> ProcRef | None:
    return ProcRef(**data) if data else None


def state_from_json(data: dict[str, Any]) -> LabState:
    hosts = []
    for h in data.pop("hosts"):
        h["init"], h["outer"] = _proc(h.get("init")), _proc(h.get("outer"))
        hosts.append(HostState(**h))
    data["mirror"] = _proc(data.get("mirror"))
    return LabState(hosts=hosts, **data)


def load_state(name: str) -> LabState | None:
    path = lab_dir(name) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: cannot read lab state: {exc}") from None
    try:
        return state_from_json(data)
    except (TypeError, KeyError) as exc:
        raise LabError(f"{path}: lab state is not in the expected format: {exc}") from None


def save_state(state: LabState) -> None:
    path = lab_dir(state.name) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=1))
    tmp.replace(path)


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise changes to one lab, across processes.

    The lock file sits next to the lab's directory (outside its tmpfs) and is removed again when no lab
    of that name remains, so nothing is left behind; a waiter that wakes up holding a removed file
    simply retries on the new one.
    """
    root = lab_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        if not lab_dir(name).exists():
            path.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Serialise subnet allocation between all labs (a lock on the lab root directory itself)."""
    root = lab_root()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def list_labs() -> list[str]:
    """Names of labs that have a state file under the root (i.e. are up, or half up)."""
    root = lab_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{STATE_FILE}"))
