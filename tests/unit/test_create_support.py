"""Helpers for the create-phase tests: a spec, and ``SimHost``, a host that ops can be applied to.

``SimHost`` keeps files, directories, units, accounts and packages in dicts, builds ``HostFacts`` for a
query exactly as the gather script would (every asked-for item present, absent ones as None), and carries
out the steps an ``apply`` would run. That lets a test take a fresh host, plan, "apply", gather again and
assert that the second plan is empty: the property a converged re-run depends on.

The steps it understands are the ones capstan's ops emit; any other command fails the test, so a new
kind of step cannot slip through unsimulated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from capstan.facts import FactsQuery, FileInfo, HostFacts, Listener, OsInfo, UnitState
from capstan.ops import Command, Op, PutFile
from capstan.spec import parse_spec
from capstan.spec.models import Cluster

DEBIAN = OsInfo(id="debian", version_id="12", family="debian", pretty_name="Debian GNU/Linux 12")
TOOLS = frozenset({"curl", "sha256sum", "tar", "mktemp", "systemctl", "apt-get", "getent", "useradd"})


def spec_doc(**overrides: Any) -> dict[str, Any]:
    """The default test cluster: 3 control planes that are etcd members, 2 workers."""
    hosts = [
        {"name": f"cp{i}", "address": f"10.0.0.{10 + i}", "roles": ["control-plane", "etcd"]}
        for i in (1, 2, 3)
    ] + [{"name": f"w{i}", "address": f"10.0.0.{20 + i}", "roles": ["worker"]} for i in (1, 2)]
    spec: dict[str, Any] = {"hosts": hosts, "kubernetes": {"version": "1.36.4"}}
    spec.update(overrides)
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "t"}, "spec": spec}


def cluster(**overrides: Any) -> Cluster:
    return parse_spec(spec_doc(**overrides))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def member_bytes(member: str) -> bytes:
    """What the simulated archive holds for ``member`` (any fixed bytes do)."""
    return f"contents of {member}\n".encode()


@dataclass
class SimFile:
    data: bytes | None  # None: a directory
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    sha256: str | None = None  # for pulled files whose bytes the simulation does not hold


@dataclass
class SimHost:
    name: str = "node1"
    arch: str = "amd64"
    files: dict[str, SimFile] = field(default_factory=dict)
    units: dict[str, UnitState] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    tools: frozenset[str] = TOOLS
    commands: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in (
            "/",
            "/etc",
            "/etc/systemd",
            "/etc/systemd/system",
            "/usr",
            "/usr/local",
            "/var",
            "/var/lib",
        ):
            self.files.setdefault(d, SimFile(None, 0o755))
        self.files.setdefault("/usr/local/bin", SimFile(None, 0o755))

    # -- facts ---------------------------------------------------------------------------------
    def _info(self, path: str, with_content: bool) -> FileInfo | None:
        f = self.files.get(path)
        if f is None:
            return None
        if f.data is None:
            return FileInfo(kind="directory", mode=f.mode, owner=f.owner, group=f.group)
        return FileInfo(
            kind="regular file",
            mode=f.mode,
            owner=f.owner,
            group=f.group,
            size=len(f.data),
            sha256=f.sha256 or sha(f.data),
            content=f.data if with_content else None,
        )

    def facts(self, q: FactsQuery) -> HostFacts:
        paths = list(dict.fromkeys(q.files + q.contents))
        return HostFacts(
            host=self.name,
            os=DEBIAN,
            arch=self.arch,
            machine="x86_64",
            tools=self.tools,
            listeners=tuple(self.listeners),
            files={p: self._info(p, p in q.contents) for p in paths},
            units={
                u: self.units.get(u, UnitState(active_state="inactive", enabled_state="")) for u in q.units
            },
            users={u: self.users.get(u) for u in q.users},
            groups={g: self.groups.get(g) for g in q.groups},
            packages={p: self.packages.get(p) for p in q.packages},
            package_db="dpkg",
        )

    # -- applying ------------------------------------------------------------------------------
    def apply(self, ops: Iterable[Op]) -> int:
        """Carry out every step of ``ops``; return how many ops changed something."""
        changed = 0
        for op in ops:
            changed += op.changed
            for step in op.steps:
                if isinstance(step, PutFile):
                    self._parent_must_exist(step.path)
                    self.files[step.path] = SimFile(
                        step.content, step.mode, step.owner or "root", step.group or "root"
                    )
                else:
                    self._run(step)
        return changed

    def _parent_must_exist(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0] or "/"
        f = self.files.get(parent)
        assert f is not None and f.data is None, f"{self.name}: {path}: directory {parent} does not exist"

    def _mkdirs(self, path: str, mode: int = 0o755, owner: str = "root", group: str = "root") -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            self.files.setdefault("/" + "/".join(parts[:i]), SimFile(None, 0o755))
        self.files[path] = SimFile(None, mode, owner, group)

    def _run(self, step: Command) -> None:
        argv = step.argv
        assert not isinstance(argv, str), f"unexpected raw script {argv!r}"
        self.commands.append(" ".join(argv))
        if argv[:2] == ("sh", "-c") and "while [ $# -ge 4 ]" in argv[2]:
            self._members_script(argv[4:])
        elif argv[:2] == ("sh", "-c"):
            self._script(argv[4:])
        elif argv[0] == "install" and argv[1] == "-d":
            self._install_d(list(argv[2:]))
        elif argv[:2] == ("mkdir", "-p"):
            for p in argv[2:]:
                self._mkdirs(p)
        elif argv[:2] == ("rm", "-f"):
            for p in argv[2:]:
                self.files.pop(p, None)
        elif argv[0] == "chmod":
            self.files[argv[2]].mode = int(argv[1], 8)
        elif argv[0] == "chown":
            owner, _, group = argv[1].partition(":")
            f = self.files[argv[2]]
            f.owner, f.group = owner or f.owner, group or f.group
        elif argv[0] == "groupadd":
            self.groups[argv[-1]] = 990 + len(self.groups)
        elif argv[0] == "useradd":
            assert "--gid" not in argv or argv[argv.index("--gid") + 1] in self.groups
            self.users[argv[-1]] = 990 + len(self.users)
        elif argv[0] == "systemctl":
            self._systemctl(argv[1], argv[2:])
        else:
            raise AssertionError(f"{self.name}: the simulation does not know {' '.join(argv)!r}")

    def _install_d(self, args: list[str]) -> None:
        mode, owner, group = 0o755, "root", "root"
        while args and args[0].startswith("-"):
            flag, value = args[0], args[1]
            args = args[2:]
            if flag == "-m":
                mode = int(value, 8)
            elif flag == "-o":
                owner = value
            elif flag == "-g":
                group = value
        for p in args:
            self._mkdirs(p, mode, owner, group)

    def _systemctl(self, verb: str, names: tuple[str, ...]) -> None:
        if verb == "daemon-reload":
            return
        for n in names:
            state = self.units.get(n, UnitState(active_state="inactive", enabled_state=""))
            if verb == "enable":
                state = UnitState(active_state=state.active_state, enabled_state="enabled")
            elif verb in ("start", "restart"):
                if verb == "restart":
                    self.restarts.append(n)
                state = UnitState(active_state="active", enabled_state=state.enabled_state)
            self.units[n] = state

    def _members_script(self, args: tuple[str, ...]) -> None:
        """ops.archive_members: (url, sum, mode, owner, group) then (member, dest, stamp, msum) each."""
        _url, want, mode, owner, group = args[:5]
        rest = args[5:]
        assert rest and len(rest) % 4 == 0
        for k in range(0, len(rest), 4):
            member, dest, stamp, _msum = rest[k : k + 4]
            self._parent_must_exist(dest)
            data = member_bytes(member)
            self.files[dest] = SimFile(data, int(mode, 8), owner, group)
            self._mkdirs(stamp.rsplit("/", 1)[0])
            self.files[stamp] = SimFile(f"{want} {member} {sha(data)}\n".encode())

    def _script(self, args: tuple[str, ...]) -> None:
        """The pull scripts of ops.artifacts: (url, sum, dest, mode, owner, group[, member, msum, stamp])."""
        url, want, dest, mode, owner, group = args[:6]
        self._parent_must_exist(dest)
        if len(args) == 6:  # a single file: the download has the wanted sum
            if url.startswith("file://"):
                assert url.removeprefix("file://") in self.files, f"{url} is not on the host"
            self.files[dest] = SimFile(b"", int(mode, 8), owner, group, sha256=want)
            return
        member, _msum, stamp = args[6:9]
        source = url.removeprefix("file://")
        assert url.startswith("file://") and self.files.get(source), f"{member}: archive not fetched first"
        data = member_bytes(member)
        self.files[dest] = SimFile(data, int(mode, 8), owner, group)
        self._mkdirs(stamp.rsplit("/", 1)[0])
        self.files[stamp] = SimFile(f"{want} {member} {sha(data)}\n".encode())


def steps_of(ops: Iterable[Op]) -> list[str]:
    return [str(s) for op in ops for s in op.steps]


def changed(ops: Iterable[Op]) -> list[str]:
    return [op.description for op in ops if op.changed]


def words(ops: Iterable[Op]) -> str:
    """Every step as one text, for `in` checks."""
    return "\n".join(steps_of(ops))


def matches(pattern: str, ops: Iterable[Op]) -> bool:
    return re.search(pattern, words(ops), re.MULTILINE) is not None
