"""What to gather from a host, and the one POSIX sh script that gathers it in one round trip.

Kubespray spends much of a run on fact gathering (minutes at scale); capstan asks for everything a
plan needs in a single ``sh -c`` per host and parses the text in pure Python (``parse.py``). The
script never fails on a missing tool or file: each section degrades to empty output, and a final
``end`` marker proves the output is complete.

Per-item lists (files, sysctls, users...) are embedded as shell-quoted words; items that would
break the line-oriented output (newlines) or that must be plain names are rejected up front.
Items are reported by index rather than by name, so odd path characters never need parsing; files are
the exception: all of them go to one ``stat`` and the small ones to one ``sha256sum`` (three processes
per file cost some 80 ms of CPU per 30 files on the lab machine, the two batched calls 4 ms), which
report each by the path as given, last on its line, where any character but a newline is unambiguous.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, fields

from capstan.errors import CapstanError
from capstan.facts.hashing import SIGNATURE_FORMAT, SUM_CACHE_DIR, SUM_CACHE_MIN_SIZE, SUM_FUNCTION

__all__ = [
    "BINARY_VERSION_COMMANDS",
    "MARKER",
    "SUM_CACHE_DIR",
    "SUM_FUNCTION",
    "TOOLS",
    "FactsQuery",
    "build_script",
    "sysctl_path",
]

MARKER = "@@capstan@@"
UNIT_PROPERTIES = ("LoadState", "ActiveState", "UnitFileState")
"""What ``systemctl show`` is asked per unit (``parse`` reads them back in blocks of this size)."""
UNIT_SUFFIXES = (
    ".service", ".socket", ".target", ".timer", ".mount", ".automount", ".path", ".slice", ".scope",
    ".device", ".swap",
)  # fmt: skip


def unit_file_name(name: str) -> str:
    """``kubelet`` -> ``kubelet.service``: the name systemd means, so that ``kubelet`` and
    ``kubelet.service`` asked by two phases are asked once (the lab's systemd emulator answers one
    block for both, which would not match the one-block-per-name ``show`` output parse expects)."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def shown_units(query: FactsQuery) -> tuple[str, ...]:
    """The distinct unit files ``query`` asks about, in order (what the gather asks systemctl)."""
    return tuple(dict.fromkeys(unit_file_name(u) for u in query.units))


BINARY_VERSION_COMMANDS: dict[str, str] = {
    "kubeadm": "kubeadm version -o short",
    "kubelet": "kubelet --version",
    "kubectl": "kubectl version --client",
    "etcd": "etcd --version",
    "etcdctl": "etcdctl version",
    "containerd": "containerd --version",
    "runc": "runc --version",
    "crictl": "crictl --version",
    "haproxy": "haproxy -v",
    "nginx": "nginx -v",
}
"""How each known binary reports its version (stderr is merged: nginx prints there)."""

TOOLS = (
    "apt-get", "base64", "curl", "df", "dnf", "dpkg-query", "getent", "groupadd", "hostname",
    "hostnamectl", "ip", "iptables", "mktemp", "modprobe", "nft", "rpm", "sha256sum", "stat",
    "sudo", "swapoff", "sysctl", "systemctl", "tar", "timeout", "useradd", "yum",
)  # fmt: skip
"""Commands whose presence operations care about (e.g. no ``modprobe`` in the lab)."""

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:+\\-]*$")
_SYSCTL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/+\-]*$")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]*\$?$")


@dataclass(frozen=True)
class FactsQuery:
    """The per-host items a plan needs beyond the always-gathered basics.

    ``files`` get type/mode/owner/sha256; ``contents`` also get the bytes (small config files
    only); ``disk`` paths report free MB of the filesystem holding them (or their nearest existing
    parent). ``binaries`` defaults to every binary capstan knows how to ask for a version.
    """

    units: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    contents: tuple[str, ...] = ()
    disk: tuple[str, ...] = ()
    sysctls: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    binaries: tuple[str, ...] = tuple(BINARY_VERSION_COMMANDS)

    def __post_init__(self) -> None:
        for f in fields(self):
            values = getattr(self, f.name)
            if isinstance(values, str):
                raise CapstanError(
                    f"facts query {f.name}: expected a list of names, got the string {values!r}"
                )
            object.__setattr__(self, f.name, tuple(dict.fromkeys(values)))
        _check(self.units, _NAME, "units")
        _check(self.packages, _NAME, "packages")
        _check(self.sysctls, _SYSCTL, "sysctls")
        _check(self.users, _ACCOUNT, "users")
        _check(self.groups, _ACCOUNT, "groups")
        for name in ("files", "contents", "disk"):
            for path in getattr(self, name):
                if not path.startswith("/") or "\n" in path:
                    raise CapstanError(f"facts query {name}: {path!r} is not an absolute single-line path")
        for b in self.binaries:
            if b not in BINARY_VERSION_COMMANDS:
                raise CapstanError(
                    f"facts query binaries: capstan does not know how to ask {b!r} its version"
                )

    def __or__(self, other: FactsQuery) -> FactsQuery:
        """Union of two queries (order kept, duplicates dropped)."""
        return FactsQuery(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @staticmethod
    def union(queries: Iterable[FactsQuery]) -> FactsQuery:
        result = FactsQuery(binaries=())
        for q in queries:
            result = result | q
        return result


def _check(values: tuple[str, ...], pattern: re.Pattern[str], what: str) -> None:
    for v in values:
        if not pattern.match(v):
            raise CapstanError(f"facts query {what}: {v!r} is not a valid name")


def sysctl_path(key: str) -> str:
    """``/proc/sys`` path of a sysctl key (``/`` in a key stands for a literal dot, as in sysctl(8))."""
    return "/proc/sys/" + "/".join(part.replace("/", ".") for part in key.split("."))


def _words(items: Iterable[str]) -> str:
    return " ".join(shlex.quote(i) for i in items)


_PRELUDE = r"""LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export PATH
NL='
'
s() { printf '\n%s %s\n' '@@capstan@@' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
T=; have timeout && T='timeout 10'
s os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
s uname; uname -m; uname -r
s hostname; cat /proc/sys/kernel/hostname 2>/dev/null || uname -n
s cpus; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null
s meminfo; cat /proc/meminfo 2>/dev/null
s swaps; cat /proc/swaps 2>/dev/null
s addr; ip -o -4 addr show 2>/dev/null
s route; cat /proc/net/route 2>/dev/null
s tcp; cat /proc/net/tcp 2>/dev/null
s tcp6; cat /proc/net/tcp6 2>/dev/null
if [ -r /proc/modules ]; then s modules; cat /proc/modules; fi
s modules-builtin; cat "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null
# br_netfilter built into the kernel shows no module entry, only its sysctls.
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo br_netfilter
s sysfs-modules; ls /sys/module 2>/dev/null
s time; date +%s
"""


def build_script(query: FactsQuery) -> str:
    """The complete gather script for ``query`` (pure; the same query gives the same script)."""
    parts = [_PRELUDE, f's tools; for t in {_words(TOOLS)}; do have "$t" && echo "$t"; done\n']
    for name in query.binaries:
        cmd = BINARY_VERSION_COMMANDS[name]
        parts.append(
            f'if have {name}; then s bin {name} "$(command -v {name})"; $T {cmd} 2>&1 | head -n 5; fi\n'
        )
    if query.units:
        # One `systemctl show` for every unit (each systemctl call is a process, and a slow one under
        # the lab's emulator); it prints one block of exactly the asked properties per unit, in
        # order. Only if its output does not have that shape, ask unit by unit as before.
        shown = shown_units(query)
        words = _words(shown)
        parts.append(
            "if have systemctl; then\n"
            f"  o=$($T systemctl show -p {' -p '.join(UNIT_PROPERTIES)} -- {words} 2>/dev/null)\n"
            f'  if [ "$(printf \'%s\\n\' "$o" | grep -c =)" -eq {len(UNIT_PROPERTIES) * len(shown)} ]'
            "; then s units-show; printf '%s\\n' \"$o\"\n"
            f"  else s units; for u in {words}; do\n"
            '  printf \'%s|%s|%s\\n\' "$u" "$($T systemctl is-active "$u" 2>/dev/null | head -n 1)"'
            ' "$($T systemctl is-enabled "$u" 2>/dev/null | head -n 1)"\n  done; fi\nfi\n'
        )
    stat_paths = list(dict.fromkeys(query.files + query.contents))
    if stat_paths:
        parts.append(SUM_FUNCTION)
        parts.append(
            f'set --; for f in {_words(stat_paths)}; do [ -e "$f" ] && set -- "$@" "$f"; done\n'
            "if [ $# -gt 0 ]; then\n"
            f"  o=$(stat -L -c '%F|%a|%U|%G|{SIGNATURE_FORMAT}|%n' -- \"$@\" 2>/dev/null)"
            "; s stat; printf '%s\\n' \"$o\"\n"
            "  s sums; set --\n"
            "  while IFS='|' read -r fk fm fu fg fd fi fz fy fc fn; do\n"
            '    case $fk in regular*) [ -r "$fn" ] || continue ;; *) continue ;; esac\n'
            f'    if [ "$fz" -lt {SUM_CACHE_MIN_SIZE} ]; then set -- "$@" "$fn"\n'
            '    else printf \'%s  %s\\n\' "$(sumof "$fn" "$fz" "$fd|$fi|$fz|$fy|$fc")" "$fn"; fi\n'
            "  done <<CAPSTAN_STAT\n$o\nCAPSTAN_STAT\n"
            '  [ $# -gt 0 ] && sha256sum -- "$@" 2>/dev/null\n'
            "fi\n"
        )
    for index, path in enumerate(stat_paths):
        if path in query.contents:
            q = shlex.quote(path)
            parts.append(f"if [ -f {q} ] && [ -r {q} ]; then s content {index}; base64 < {q}; fi\n")
    if query.disk:
        parts.append(
            f"s disk; i=0; for p in {_words(query.disk)}; do q=$p\n"
            '  while [ ! -e "$q" ] && [ "$q" != / ]; do q=$(dirname -- "$q"); done\n'
            '  printf \'%s|%s\\n\' "$i" "$(df -Pk -- "$q" 2>/dev/null | tail -n 1)"; i=$((i+1)); done\n'
        )
    if query.sysctls:
        paths = [sysctl_path(k) for k in query.sysctls]
        parts.append(
            # Which keys exist, then every value in one `grep` (lines prefixed by the file's path):
            # a process per key cost more than the rest of the section. Not the shell's `read`: it
            # reads a byte at a time, and /proc/sys answers a read past offset 0 with end-of-file.
            f"s sysctls; i=0; set --; for f in {_words(paths)}; do\n"
            '  if [ -r "$f" ]; then printf \'%s|1|\\n\' "$i"; set -- "$@" "$f"\n'
            "  else printf '%s|0|\\n' \"$i\"; fi; i=$((i+1)); done\n"
            'if [ $# -gt 0 ]; then s sysctl-values; grep -H -s "" -- "$@"; fi\n'
        )
    for section, db in (("users", "passwd"), ("groups", "group")):
        names: tuple[str, ...] = getattr(query, section)
        if names:
            parts.append(  # the third field of the first line, cut out by the shell itself
                f"s {section}; for n in {_words(names)}; do\n"
                f'  l=$(getent {db} "$n" 2>/dev/null || grep "^$n:" /etc/{db} 2>/dev/null)\n'
                '  l=${l%%"$NL"*}; r=${l#*:}; r=${r#*:}; case $l in *:*:*) r=${r%%:*} ;; *) r= ;; esac\n'
                '  printf \'%s|%s\\n\' "$n" "$r"; done\n'
            )
    if query.packages:
        words = _words(query.packages)
        parts.append(
            "if have dpkg-query; then s packages dpkg;"
            f" dpkg-query -W -f='${{Package}}|${{Status}}|${{Version}}\\n' {words} 2>/dev/null\n"
            "elif have rpm; then s packages rpm; rpm -q --qf"
            f" '%{{NAME}}|install ok installed|%{{VERSION}}-%{{RELEASE}}\\n' {words} 2>/dev/null; fi\n"
        )
    parts.append("s end\nexit 0\n")
    return "".join(parts)
