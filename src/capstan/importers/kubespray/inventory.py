"""Reading an Ansible inventory as Kubespray uses it: the INI form and the YAML (``hosts.yaml``) form.

Both forms become one ``Inventory``: groups with their direct hosts, child groups and variables, and the
variables written on each host's own line. Values follow Ansible's rules for INI (host lines are split
like a shell command, then each value is read as a Python literal when it is one), so that
``node_labels="{'pool': 'gpu'}"`` arrives as a mapping, exactly as Kubespray would have seen it.

Why errors carry ``file:line``: a malformed inventory is the first thing a migrating user hits, and
Ansible's own messages about INI files are famously vague.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capstan.errors import SpecError
from capstan.importers.kubespray.common import Var, canonical_group
from capstan.importers.kubespray.files import load_yaml_text

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")
_RANGE = re.compile(r"\[[^\]]*:[^\]]*\]")
_HOST_PORT = re.compile(r"^([^:\s]+):(\d{1,5})$")
_YAML_SUFFIXES = {".yml", ".yaml", ".json"}
_INVENTORY_NAMES = (
    "inventory.ini",
    "hosts.yaml",
    "hosts.yml",
    "inventory.yaml",
    "inventory.yml",
    "hosts.ini",
)


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class Inventory:
    """Groups and hosts of one inventory file; hosts keep the order they first appeared in.

    Membership and depth are computed once per group and cached (inventories of a thousand hosts are
    common among Kubespray users); adding a host or a child group clears the cache.
    """

    label: str
    groups: dict[str, Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Var]] = field(default_factory=dict)
    _members: dict[str, tuple[list[str], frozenset[str]]] = field(default_factory=dict, repr=False)
    _depths: dict[str, int] = field(default_factory=dict, repr=False)

    def group(self, name: str) -> Group:
        name = canonical_group(name)
        if name not in self.groups:
            self._forget()
            self.groups[name] = Group(name)
        return self.groups[name]

    def add_host(self, group: str, name: str, variables: dict[str, Var]) -> None:
        self._forget()
        g = self.group(group)
        if name not in g.hosts:
            g.hosts.append(name)
        self.host_vars.setdefault(name, {}).update(variables)

    def add_child(self, parent: str, child: str) -> None:
        self._forget()
        p, c = self.group(parent), self.group(child)
        if c.name not in p.children:
            p.children.append(c.name)

    def _forget(self) -> None:
        self._members.clear()
        self._depths.clear()

    def _membership(self, name: str) -> tuple[list[str], frozenset[str]]:
        name = canonical_group(name)
        if name not in self._members:
            if name == "all":
                hosts = list(self.host_vars)
            else:
                out: dict[str, None] = {}  # an ordered set
                seen: set[str] = set()
                stack = [name]
                while stack:
                    group = stack.pop()
                    if group in seen or group not in self.groups:
                        continue
                    seen.add(group)
                    out.update(dict.fromkeys(self.groups[group].hosts))
                    stack.extend(reversed(self.groups[group].children))
                hosts = list(out)
            self._members[name] = (hosts, frozenset(hosts))
        return self._members[name]

    def members(self, name: str) -> list[str]:
        """Hosts of a group and of its children, recursively (own hosts first, then each child's)."""
        return self._membership(name)[0]

    def depth(self, name: str) -> int:
        """Nesting depth as Ansible ranks group variables: all is 0, top-level groups 1, children deeper."""
        if name == "all":
            return 0
        if name not in self._depths:
            best, stack, seen = 1, [(name, 1)], set()
            while stack:
                group, d = stack.pop()
                if group in seen:
                    continue
                seen.add(group)
                best = max(best, d)
                stack.extend(
                    (g.name, d + 1) for g in self.groups.values() if group in g.children and g.name != "all"
                )
            self._depths[name] = best
        return self._depths[name]

    def groups_of(self, host: str) -> list[str]:
        """Every group containing ``host``, lowest precedence first (all, then by depth, then by name)."""
        names = [g for g in self.groups if g != "all" and host in self._membership(g)[1]]
        return ["all", *sorted(names, key=lambda g: (self.depth(g), g))]


def find_inventory(path: Path) -> Path:
    """The inventory file itself; a directory is searched for Kubespray's usual file names."""
    if path.is_dir():
        for name in _INVENTORY_NAMES:
            if (path / name).is_file():
                return path / name
        raise SpecError(str(path), f"no inventory file found (looked for {', '.join(_INVENTORY_NAMES)})")
    if not path.exists():
        raise SpecError(str(path), "no such file")
    return path


def read_inventory(path: Path, label: str) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(label, f"cannot read: {exc}") from None
    if path.suffix in _YAML_SUFFIXES:
        return parse_yaml_inventory(text, label)
    return parse_ini_inventory(text, label)


# ---------------------------------------------------------------------------------------------- INI


def ini_value(text: str) -> Any:
    """Ansible's reading of an INI value: a Python literal when it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _split_host(token: str, where: str) -> tuple[str, int | None]:
    if _RANGE.search(token):
        raise SpecError(where, f"host range {token!r} is not supported: list the hosts one per line")
    m = _HOST_PORT.match(token)
    if m:
        return m.group(1), int(m.group(2))
    return token, None


def parse_ini_inventory(text: str, label: str) -> Inventory:
    inv = Inventory(label)
    inv.group("all")
    group, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"{label}:{number}"
        if line.startswith("["):
            m = _SECTION.match(line)
            if not m:
                raise SpecError(
                    where,
                    f"malformed section header {line!r} (expected [group], [group:children] or [group:vars])",
                )
            group, kind = canonical_group(m.group(1)), m.group(2) or "hosts"
            if kind not in ("hosts", "children", "vars"):
                raise SpecError(
                    where, f"unknown section type {kind!r} in {line!r} (expected children or vars)"
                )
            inv.group(group)
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip() or " " in key.strip():
                raise SpecError(where, f"expected key=value in [{group}:vars], got {line!r}")
            inv.group(group).vars[key.strip()] = Var(
                ini_value(value.strip()), f"{label} [{group}:vars]", group
            )
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise SpecError(where, f"cannot split {line!r}: {exc}") from None
        if not tokens:
            continue
        if kind == "children":
            if len(tokens) != 1:
                raise SpecError(
                    where, f"expected one group name per line in [{group}:children], got {line!r}"
                )
            if _RANGE.search(tokens[0]):
                raise SpecError(where, f"group range {tokens[0]!r} is not supported")
            inv.add_child(group, tokens[0])
            continue
        name, port = _split_host(tokens[0], where)
        variables: dict[str, Var] = {}
        if port is not None:
            variables["ansible_port"] = Var(port, label)
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise SpecError(where, f"expected key=value after host {name!r}, got {token!r}")
            variables[key] = Var(ini_value(value), label)
        inv.add_host(group, name, variables)
    return inv


# --------------------------------------------------------------------------------------------- YAML


def parse_yaml_inventory(text: str, label: str) -> Inventory:
    data = load_yaml_text(text, label)
    if data is None:
        raise SpecError(label, "the inventory is empty")
    if not isinstance(data, dict):
        raise SpecError(label, "expected a mapping of groups, e.g. all: {hosts: ..., children: ...}")
    inv = Inventory(label)
    inv.group("all")
    for name, body in data.items():
        _walk_group(inv, label, str(name), body, str(name))
    return inv


def _walk_group(inv: Inventory, label: str, name: str, body: Any, path: str) -> None:
    group = inv.group(name)
    if body is None:
        return
    if not isinstance(body, dict):
        raise SpecError(label, f"{path}: expected a mapping with hosts, children or vars")
    unknown = [str(k) for k in body if k not in ("hosts", "children", "vars")]
    if unknown:
        raise SpecError(label, f"{path}: unknown key {unknown[0]!r} (a group has hosts, children and vars)")
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise SpecError(label, f"{path}.hosts: expected a mapping of host names to their variables")
    for raw_name, host_vars in hosts.items():
        name_, port = _split_host(str(raw_name), f"{label}: {path}.hosts")
        if host_vars is not None and not isinstance(host_vars, dict):
            raise SpecError(label, f"{path}.hosts.{name_}: expected a mapping of variables")
        variables = {str(k): Var(v, label) for k, v in (host_vars or {}).items()}
        if port is not None:
            variables.setdefault("ansible_port", Var(port, label))
        inv.add_host(group.name, name_, variables)
    group_vars = body.get("vars") or {}
    if not isinstance(group_vars, dict):
        raise SpecError(label, f"{path}.vars: expected a mapping of variables")
    for key, value in group_vars.items():
        group.vars[str(key)] = Var(value, f"{label} ({path}.vars)", group.name)
    children = body.get("children") or {}
    if not isinstance(children, dict):
        raise SpecError(label, f"{path}.children: expected a mapping of group names")
    for child, child_body in children.items():
        inv.add_child(group.name, str(child))
        _walk_group(inv, label, str(child), child_body, f"{path}.children.{child}")
