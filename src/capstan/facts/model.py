"""``HostFacts``: what one host looked like when its facts were gathered (typed, immutable).

Facts travel between Prefect tasks and into JSON test fixtures, hence pydantic (bytes as base64).
Per-item facts (files, sysctls, units, packages, users, groups, disk) are dicts holding exactly the
items that were asked for: an item that is absent on the host maps to ``None``, an item that was
never asked for is missing from the dict. The accessors below tell the two apart and raise
``FactNotGathered`` for the second case: that is a bug in the caller's query, never a host state,
so it is deliberately *not* a ``CapstanError``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BinaryInfo",
    "DefaultRoute",
    "FactNotGathered",
    "Family",
    "FileInfo",
    "HostFacts",
    "Listener",
    "ModuleInfo",
    "OsInfo",
    "SwapInfo",
    "UnitState",
]

V = TypeVar("V")
Family = Literal["debian", "rhel", "suse", "other"]

ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect", "generated"})
"""``systemctl is-enabled`` answers that mean "will start when wanted"; nothing to enable."""


class FactNotGathered(LookupError):
    """An operation asked for a fact its facts query did not include (a capstan bug)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


class OsInfo(_Model):
    id: str = ""
    id_like: tuple[str, ...] = ()
    version_id: str = ""
    codename: str = ""
    pretty_name: str = ""
    family: Family = "other"


class SwapInfo(_Model):
    total_mb: int = 0
    devices: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.devices) or self.total_mb > 0


class DefaultRoute(_Model):
    interface: str
    gateway: str | None = None
    src: str | None = None


class UnitState(_Model):
    active_state: str = ""
    enabled_state: str = ""

    @property
    def active(self) -> bool:
        return self.active_state == "active"

    @property
    def enabled(self) -> bool:
        return self.enabled_state in ENABLED_STATES

    @property
    def exists(self) -> bool:
        return self.enabled_state not in ("", "not-found") or self.active_state in ("active", "activating")


class BinaryInfo(_Model):
    path: str
    version: str | None = None
    output: str = ""


class FileInfo(_Model):
    kind: str  # stat %F: "regular file", "directory", ...
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    size: int | None = None
    sha256: str | None = None
    content: bytes | None = None

    @property
    def is_file(self) -> bool:
        return self.kind.startswith("regular")

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"


class Listener(_Model):
    address: str
    port: int


class ModuleInfo(_Model):
    supported: bool = True  # False: the kernel has no loadable modules (/proc/modules absent)
    loaded: frozenset[str] = frozenset()
    builtin: frozenset[str] = frozenset()
    sysfs: frozenset[str] = frozenset()

    def present(self, name: str) -> bool:
        """Loaded, built in, or visible under /sys/module: nothing to load."""
        n = name.replace("-", "_")
        return n in self.loaded or n in self.builtin or n in self.sysfs


class HostFacts(_Model):
    host: str
    os: OsInfo = OsInfo()
    machine: str = ""
    arch: str = ""
    kernel: str = ""
    hostname: str = ""
    cpus: int = 0
    memory_mb: int = 0
    swap: SwapInfo = SwapInfo()
    interfaces: dict[str, tuple[str, ...]] = {}
    default_route: DefaultRoute | None = None
    listeners: tuple[Listener, ...] = ()
    modules: ModuleInfo = ModuleInfo()
    time: int = 0
    tools: frozenset[str] = frozenset()
    binaries: dict[str, BinaryInfo | None] = {}
    units: dict[str, UnitState] = {}
    files: dict[str, FileInfo | None] = {}
    disk_free_mb: dict[str, int | None] = {}
    sysctls: dict[str, str | None] = {}
    users: dict[str, int | None] = {}
    groups: dict[str, int | None] = {}
    package_db: Literal["dpkg", "rpm"] | None = None
    packages: dict[str, str | None] = {}

    @property
    def listening_ports(self) -> frozenset[int]:
        return frozenset(listener.port for listener in self.listeners)

    @property
    def primary_ipv4(self) -> str | None:
        """The default route's source address (the address others most likely reach us on)."""
        return self.default_route.src if self.default_route else None

    def has_tool(self, name: str) -> bool:
        return name in self.tools

    def file(self, path: str) -> FileInfo | None:
        return _get(self.files, path, "files (or contents)", self.host)

    def sha256(self, path: str) -> str | None:
        """sha256 of a managed file; None when it is missing (or not a readable regular file)."""
        info = self.file(path)
        return info.sha256 if info is not None else None

    def content(self, path: str) -> bytes | None:
        info = self.file(path)
        if info is not None and info.is_file and info.content is None:
            raise FactNotGathered(f"{self.host}: content of {path} was not gathered (add it to contents)")
        return info.content if info is not None else None

    def sysctl(self, key: str) -> str | None:
        return _get(self.sysctls, key, "sysctls", self.host)

    def unit(self, name: str) -> UnitState:
        return _get(self.units, name, "units", self.host)

    def package(self, name: str) -> str | None:
        return _get(self.packages, name, "packages", self.host)

    def user(self, name: str) -> int | None:
        return _get(self.users, name, "users", self.host)

    def group(self, name: str) -> int | None:
        return _get(self.groups, name, "groups", self.host)

    def binary(self, name: str) -> BinaryInfo | None:
        return _get(self.binaries, name, "binaries", self.host)

    def free_mb(self, path: str) -> int | None:
        return _get(self.disk_free_mb, path, "disk", self.host)


def _get(table: dict[str, V], key: str, what: str, host: str) -> V:
    try:
        return table[key]
    except KeyError:
        raise FactNotGathered(f"{host}: {key!r} was not in the facts query's {what}") from None
