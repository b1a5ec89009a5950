"""Pure parsing of the gather script's output into ``HostFacts``.

Kept free of I/O so captured outputs from real hosts become unit-test fixtures, and so a parser
fix never needs a host to verify. Each section parser is tolerant: a section that is empty
(tool missing, file absent) yields the "unknown" value, never an exception. Only a missing
``end`` marker is an error, because then the output was cut off and every fact is suspect.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import shlex
from collections.abc import Iterator

from capstan.errors import TransportError
from capstan.facts.model import (
    BinaryInfo,
    DefaultRoute,
    Family,
    FileInfo,
    HostFacts,
    Listener,
    ModuleInfo,
    OsInfo,
    SwapInfo,
    UnitState,
)
from capstan.facts.query import (
    MARKER,
    UNIT_PROPERTIES,
    FactsQuery,
    shown_units,
    sysctl_path,
    unit_file_name,
)

__all__ = ["arch_of", "family_of", "parse_facts", "parse_version", "split_sections"]

Section = tuple[str, list[str], list[str]]  # name, marker args, lines

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}
_VERSION = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)?(?:[-+~][0-9A-Za-z.+~-]*)?)")
_DF = re.compile(r"\s(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s")


def split_sections(output: str) -> Iterator[Section]:
    """Yield ``(name, args, lines)`` for every marker line, in output order."""
    current: Section | None = None
    for line in output.splitlines():
        if line.startswith(MARKER + " "):
            if current is not None:
                yield current
            words = line[len(MARKER) + 1 :].split(" ")
            current = (words[0], words[1:], [])
        elif current is not None and line.strip():
            current[2].append(line)
    if current is not None:
        yield current


def parse_version(text: str) -> str | None:
    """The first version-looking token (``v1.31.2`` → ``1.31.2``), or None."""
    m = _VERSION.search(text)
    return m.group(1) if m else None


def arch_of(machine: str) -> str:
    """Kubernetes/Go arch name for ``uname -m`` (unknown names pass through)."""
    return _ARCH.get(machine, machine)


def family_of(os_id: str, id_like: tuple[str, ...]) -> Family:
    ids = {os_id, *id_like}
    if ids & {"debian", "ubuntu"}:
        return "debian"
    if ids & {"rhel", "fedora", "centos", "rocky", "almalinux", "ol", "amzn"}:
        return "rhel"
    if any(i.startswith(("suse", "opensuse", "sles")) for i in ids):
        return "suse"
    return "other"


def _os_release(lines: list[str]) -> OsInfo:
    values: dict[str, str] = {}
    for line in lines:
        key, sep, raw = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        try:
            words = shlex.split(raw)
            values[key.strip()] = words[0] if words else ""
        except ValueError:
            values[key.strip()] = raw.strip().strip("\"'")
    os_id = values.get("ID", "").lower()
    id_like = tuple(values.get("ID_LIKE", "").lower().split())
    return OsInfo(
        id=os_id,
        id_like=id_like,
        version_id=values.get("VERSION_ID", ""),
        codename=values.get("VERSION_CODENAME", ""),
        pretty_name=values.get("PRETTY_NAME", ""),
        family=family_of(os_id, id_like),
    )


def _kb_field(lines: list[str], key: str) -> int:
    for line in lines:
        if line.startswith(key + ":"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) // 1024
    return 0


def _first_int(lines: list[str]) -> int:
    try:
        return int(lines[0].strip())
    except (IndexError, ValueError):
        return 0


def _addresses(lines: list[str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for line in lines:
        words = line.split()
        if len(words) < 4 or "inet" not in words:
            continue
        name = words[1].split("@", 1)[0]
        cidr = words[words.index("inet") + 1]
        found.setdefault(name, []).append(cidr)
    return {k: tuple(v) for k, v in found.items()}


def _hex_ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(value), "little")))


def _default_route(lines: list[str], interfaces: dict[str, tuple[str, ...]]) -> DefaultRoute | None:
    best: tuple[int, str, str] | None = None
    for line in lines[1:]:
        f = line.split()
        if len(f) < 8 or f[1] != "00000000" or f[7] != "00000000":
            continue
        try:
            if not int(f[3], 16) & 0x1:  # RTF_UP
                continue
            metric = int(f[6])
        except ValueError:
            continue
        if best is None or metric < best[0]:
            best = (metric, f[0], f[2])
    if best is None:
        return None
    _, iface, gw = best
    addrs = interfaces.get(iface, ())
    return DefaultRoute(
        interface=iface,
        gateway=None if gw == "00000000" else _hex_ipv4(gw),
        src=addrs[0].split("/")[0] if addrs else None,
    )


def _listeners(lines: list[str], v6: bool) -> list[Listener]:
    found: list[Listener] = []
    for line in lines[1:]:
        f = line.split()
        if len(f) < 4 or f[3] != "0A":  # TCP_LISTEN
            continue
        addr_hex, _, port_hex = f[1].partition(":")
        try:
            if v6:
                raw = b"".join(bytes.fromhex(addr_hex[i : i + 8])[::-1] for i in range(0, 32, 8))
                address = str(ipaddress.IPv6Address(raw))
            else:
                address = _hex_ipv4(addr_hex)
            found.append(Listener(address=address, port=int(port_hex, 16)))
        except ValueError:
            continue
    return found


def _module_name(entry: str) -> str:
    base = entry.strip().rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _file_info(fields: list[str]) -> FileInfo:
    # fields: sum, kind, mode, owner, group, size (stat may have failed: then fewer fields)
    sha = fields[0] if fields and fields[0] not in ("", "-") else None
    kind = fields[1] if len(fields) > 1 and fields[1] else "unknown"
    try:
        mode: int | None = int(fields[2], 8)
    except (IndexError, ValueError):
        mode = None
    size = int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else None
    owner = fields[3] if len(fields) > 3 and fields[3] else None
    group = fields[4] if len(fields) > 4 and fields[4] else None
    return FileInfo(kind=kind, mode=mode, owner=owner, group=group, size=size, sha256=sha)


def _prefixed(lines: list[str], paths: list[str]) -> dict[str, list[str]]:
    """path -> its lines, from ``grep -H "" PATH...`` output (``PATH:line``; the longest path that
    prefixes a line wins, so a path holding a colon is still matched whole)."""
    by_length = sorted(set(paths), key=len, reverse=True)
    out: dict[str, list[str]] = {}
    for line in lines:
        for path in by_length:
            if line.startswith(path + ":"):
                out.setdefault(path, []).append(line[len(path) + 1 :])
                break
    return out


def _sums(lines: list[str]) -> dict[str, str]:
    """path -> sha256 from ``sha256sum`` lines (``HASH  PATH``; GNU escapes a path holding a backslash
    by starting the line with one, and writes ``\\`` for each backslash in it)."""
    out = {}
    for line in lines:
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        digest, sep, path = body[:64], body[64:66], body[66:]
        if len(digest) != 64 or sep not in ("  ", " *") or not path:
            continue
        out[path.replace("\\\\", "\\") if escaped else path] = digest
    return out


def _shown_units(lines: list[str], names: tuple[str, ...]) -> dict[str, UnitState]:
    """Unit states from ``systemctl show -p LoadState -p ActiveState -p UnitFileState U...``.

    The output is one block per unit in argument order, each holding exactly the asked properties
    (blank separator lines may or may not survive); a unit that does not exist says so in LoadState
    (systemd: not-found), which maps to is-active's "inactive" and is-enabled's "not-found".
    """
    values = [line.partition("=") for line in lines if "=" in line]
    size = len(UNIT_PROPERTIES)
    if len(values) != size * len(names):
        return {}
    out = {}
    for index, name in enumerate(names):
        block = {k.strip(): v.strip() for k, _, v in values[index * size : (index + 1) * size]}
        active = block.get("ActiveState", "")
        enabled = block.get("UnitFileState", "")
        if block.get("LoadState") in ("not-found", "not-loaded") and active != "active":
            active, enabled = "inactive", "not-found"  # the emulator says "static"/"unknown" here
        out[name] = UnitState(active_state=active, enabled_state=enabled)
    return out


def _indexed(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    for line in lines:
        head, sep, rest = line.partition("|")
        if sep and head.isdigit():
            yield int(head), rest.split("|")


def parse_facts(output: str, query: FactsQuery, *, host: str) -> HostFacts:
    """Build ``HostFacts`` from the gather script's stdout for ``query``."""
    sections = list(split_sections(output))
    if not sections or sections[-1][0] != "end":
        raise TransportError(host, "facts output ended early (no end marker); the gather script was cut off")
    by_name: dict[str, list[str]] = {}
    for name, _args, lines in sections:
        by_name.setdefault(name, lines)

    def sec(name: str) -> list[str]:
        return by_name.get(name, [])

    uname = sec("uname")
    machine = uname[0].strip() if uname else ""
    interfaces = _addresses(sec("addr"))
    swaps = sec("swaps")
    listeners = dict.fromkeys(_listeners(sec("tcp"), False) + _listeners(sec("tcp6"), True))

    stat_paths = list(dict.fromkeys(query.files + query.contents))
    files: dict[str, FileInfo | None] = dict.fromkeys(stat_paths)
    sums = _sums(sec("sums"))
    for line in sec("stat"):
        # kind|mode|owner|group|device|inode|size|mtime|ctime|path: only the path may hold a "|"
        fields = line.split("|", 9)
        if len(fields) == 10 and fields[9] in files:
            kind, mode, owner, group, size = *fields[:4], fields[6]
            files[fields[9]] = _file_info([sums.get(fields[9], ""), kind, mode, owner, group, size])
    binaries: dict[str, BinaryInfo | None] = dict.fromkeys(query.binaries)
    package_db = None
    for name, args, lines in sections:
        if name == "content" and args and args[0].isdigit() and int(args[0]) < len(stat_paths):
            path = stat_paths[int(args[0])]
            info = files.get(path)
            if info is not None:
                try:
                    data = base64.b64decode("".join(lines), validate=True)
                except binascii.Error:
                    continue
                files[path] = info.model_copy(update={"content": data})
        elif name == "bin" and args and args[0] in binaries:
            text = "\n".join(lines).strip()
            path = args[1] if len(args) > 1 else ""
            binaries[args[0]] = BinaryInfo(path=path, version=parse_version(text), output=text)
        elif name == "packages" and args:
            package_db = args[0]

    disk: dict[str, int | None] = dict.fromkeys(query.disk)
    for i, fields in _indexed(sec("disk")):
        m = _DF.search(" " + "|".join(fields) + " ")
        if i < len(query.disk) and m:
            disk[query.disk[i]] = int(m.group(3)) // 1024
    sysctls: dict[str, str | None] = dict.fromkeys(query.sysctls)
    values = _prefixed(sec("sysctl-values"), [sysctl_path(k) for k in query.sysctls])
    for i, fields in _indexed(sec("sysctls")):
        if i < len(query.sysctls) and fields[0] == "1":
            value = " ".join(values.get(sysctl_path(query.sysctls[i]), []))
            sysctls[query.sysctls[i]] = " ".join(value.split())
    shown = shown_units(query)
    found = {u: UnitState() for u in shown} | _shown_units(sec("units-show"), shown)
    for line in sec("units"):
        name, _, states = line.partition("|")
        active, _, enabled = states.partition("|")
        key = unit_file_name(name)
        if key in found:
            found[key] = UnitState(active_state=active.strip(), enabled_state=enabled.strip())
    units = {u: found[unit_file_name(u)] for u in query.units}
    packages: dict[str, str | None] = dict.fromkeys(query.packages)
    for line in sec("packages"):
        parts = line.split("|")
        if len(parts) == 3 and parts[0] in packages and parts[1].split()[-1:] == ["installed"]:
            packages[parts[0]] = parts[2].strip() or None

    return HostFacts(
        host=host,
        os=_os_release(sec("os-release")),
        machine=machine,
        arch=arch_of(machine),
        kernel=uname[1].strip() if len(uname) > 1 else "",
        hostname=sec("hostname")[0].strip() if sec("hostname") else "",
        cpus=_first_int(sec("cpus")),
        memory_mb=_kb_field(sec("meminfo"), "MemTotal"),
        swap=SwapInfo(
            total_mb=_kb_field(sec("meminfo"), "SwapTotal"),
            devices=tuple(line.split()[0] for line in swaps[1:] if line.split()),
        ),
        interfaces=interfaces,
        default_route=_default_route(sec("route"), interfaces),
        listeners=tuple(listeners),
        modules=ModuleInfo(
            supported="modules" in by_name,
            loaded=frozenset(line.split()[0] for line in sec("modules") if line.split()),
            builtin=frozenset(_module_name(line) for line in sec("modules-builtin") if line.strip()),
            sysfs=frozenset(line.strip() for line in sec("sysfs-modules") if line.strip()),
        ),
        time=_first_int(sec("time")),
        tools=frozenset(line.strip() for line in sec("tools")),
        binaries=binaries,
        units=units,
        files=files,
        disk_free_mb=disk,
        sysctls=sysctls,
        users=_ids(sec("users"), query.users),
        groups=_ids(sec("groups"), query.groups),
        package_db=package_db if package_db in ("dpkg", "rpm") else None,
        packages=packages,
    )


def _ids(lines: list[str], names: tuple[str, ...]) -> dict[str, int | None]:
    ids: dict[str, int | None] = dict.fromkeys(names)
    for line in lines:
        name, _, value = line.partition("|")
        if name in ids and value.strip().isdigit():
            ids[name] = int(value.strip())
    return ids
