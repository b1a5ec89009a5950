"""Mapping inventory hosts to ``spec.hosts``, ``spec.ssh`` and the bastion.

Groups become roles (kube_control_plane -> control-plane, etcd -> etcd, kube_node -> worker). A host's
connection and node variables are resolved with Ansible's precedence (inventory group variables, then
group_vars/all, then other group_vars by depth, then the host line, then host_vars), so a user set in
``[all:vars]`` and overridden for one host imports as it ran. Settings shared by every host move up to
``spec.ssh`` so the spec stays short; a per-host value stays on the host.

etcd member names default to ``etcd<N>`` as in Kubespray (N = position in the etcd group), so a spec
imported from a running cluster names the members it already has.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from capstan.errors import SpecError
from capstan.importers.kubespray.common import Var, Warnings, has_vault, is_template, short
from capstan.importers.kubespray.context import parse_inline
from capstan.importers.kubespray.files import VarFile
from capstan.importers.kubespray.inventory import Inventory

# Per-host variables that are not connection settings (those all start with ansible_).
HOST_ONLY = {
    "ip",
    "access_ip",
    "ip6",
    "access_ip6",
    "etcd_member_name",
    "node_labels",
    "node_taints",
    "kube_override_hostname",
}
_ALIASES = {
    "ansible_ssh_host": "ansible_host",
    "ansible_ssh_port": "ansible_port",
    "ansible_ssh_user": "ansible_user",
    "ansible_private_key_file": "ansible_ssh_private_key_file",
}
_MAPPED = {
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ip",
    "access_ip",
    "etcd_member_name",
    "node_labels",
    "node_taints",
}
_ROLES = (("kube_control_plane", "control-plane"), ("etcd", "etcd"), ("kube_node", "worker"))


def is_host_key(key: str) -> bool:
    return key.startswith("ansible_") or key in HOST_ONLY


@dataclass
class HostsResult:
    hosts: list[dict[str, Any]] = field(default_factory=list)
    ssh: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # inventory name of spec.hosts[i]


class _Notes:
    """Per-host messages folded to one line per (file, key, message), listing the hosts."""

    def __init__(self) -> None:
        self.hosts: dict[tuple[str, str, str], list[str]] = {}

    def add(self, source: str, key: str, message: str, host: str) -> None:
        self.hosts.setdefault((source, key, message), []).append(host)

    def flush(self, warnings: Warnings) -> None:
        for (source, key, message), hosts in self.hosts.items():
            names = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
            warnings.add(f"{source}: {key} (host{'s' if len(hosts) > 1 else ''} {names}): {message}")


def resolve_host_vars(
    inv: Inventory, group_files: list[VarFile], host_files: list[VarFile], host: str, notes: _Notes
) -> dict[str, Var]:
    """The connection and node variables of one host, by Ansible's precedence; other keys are noted."""
    groups = inv.groups_of(host)
    rank = {g: i for i, g in enumerate(groups)}
    out: dict[str, Var] = {}
    for group in groups:
        out.update({k: v for k, v in inv.groups[group].vars.items() if is_host_key(k)})
    for vf in sorted((f for f in group_files if f.group in rank), key=lambda f: rank[f.group or "all"]):
        out.update({k: Var(v, vf.label, vf.group) for k, v in vf.values.items() if is_host_key(k)})
    own = dict(inv.host_vars.get(host, {}))
    for vf in host_files:
        own.update({k: Var(v, vf.label) for k, v in vf.values.items()})
    for key, var in own.items():
        if is_host_key(key):
            out[key] = var
        else:
            notes.add(var.source, key, "per-host values of cluster settings are not supported; ignored", host)
    resolved: dict[str, Var] = {}
    for key, var in out.items():
        name = _ALIASES.get(key, key)
        if name not in _MAPPED:
            if key == "kube_override_hostname":
                message = "not supported: capstan names each node after its inventory host name; ignored"
            else:
                message = "not mapped; ignored"
            notes.add(var.source, key, message, host)
        elif var.value is None:
            continue
        elif has_vault(var.value) or is_template(var.value):
            what = (
                "encrypted with ansible-vault"
                if has_vault(var.value)
                else f"cannot evaluate {short(var.value)}"
            )
            notes.add(var.source, key, f"{what}; ignored", host)
        else:
            resolved[name] = var
    return resolved


def _text(var: Var | None, key: str, host: str) -> str | None:
    if var is None:
        return None
    if isinstance(var.value, bool) or not isinstance(var.value, str | int | float):
        raise SpecError(var.source, f"{key} of host {host!r}: expected a string, got {short(var.value)}")
    return str(var.value)


def _port(var: Var | None, host: str) -> int | None:
    text = _text(var, "ansible_port", host)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise SpecError(
            var.source if var else "", f"ansible_port of host {host!r}: {text!r} is not a port number"
        )
    return int(text)


def _labels(var: Var | None, host: str) -> dict[str, str]:
    if var is None:
        return {}
    value = parse_inline(var.value) if isinstance(var.value, str) else var.value
    if not isinstance(value, dict):
        raise SpecError(
            var.source, f"node_labels of host {host!r}: expected a mapping, got {short(var.value)}"
        )
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _taints(var: Var | None, host: str) -> list[str]:
    if var is None:
        return []
    value = parse_inline(var.value) if isinstance(var.value, str) else var.value
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise SpecError(
            var.source, f"node_taints of host {host!r}: expected a list of key=value:Effect strings"
        )
    return list(value)


def _fold(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The most common value set (goes to spec.ssh) and the hosts that differ from it."""
    present = [v for v in values.values() if v is not None]
    if not present:
        return None, {}
    common = Counter(present).most_common(1)[0][0]
    return common, {h: v for h, v in values.items() if v is not None and v != common}


def map_hosts(
    inv: Inventory, group_files: list[VarFile], host_files: dict[str, list[VarFile]], warnings: Warnings
) -> HostsResult:
    notes = _Notes()
    members = {group: inv.members(group) for group, _ in _ROLES}
    rr, bastions = inv.members("calico_rr"), inv.members("bastion")
    if rr:
        warnings.add(
            f"{inv.label}: calico_rr: route reflectors are not supported; hosts {', '.join(rr)} "
            "keep only their other roles"
        )
    result = HostsResult()
    users: dict[str, str | None] = {}
    ports: dict[str, int | None] = {}
    keys: dict[str, str | None] = {}
    for host in inv.host_vars:
        roles = [role for group, role in _ROLES if host in members[group]]
        if not roles:
            if host not in bastions:
                warnings.add(
                    f"{inv.label}: host {host!r} is in none of kube_control_plane, kube_node and etcd; "
                    "not imported"
                )
            continue
        hv = resolve_host_vars(inv, group_files, host_files.get(host, []), host, notes)
        entry: dict[str, Any] = {
            "name": host,
            "address": _text(hv.get("ansible_host"), "ansible_host", host) or host,
        }
        for key, spec_key in (("ip", "ip"), ("access_ip", "accessIp")):
            value = _text(hv.get(key), key, host)
            if value is not None:
                entry[spec_key] = value
        entry["roles"] = roles
        labels, taints = _labels(hv.get("node_labels"), host), _taints(hv.get("node_taints"), host)
        if labels:
            entry["labels"] = labels
        if taints:
            entry["taints"] = taints
        if "etcd" in roles:
            member = _text(hv.get("etcd_member_name"), "etcd_member_name", host)
            entry["etcdMemberName"] = member or f"etcd{members['etcd'].index(host) + 1}"
        users[host] = _text(hv.get("ansible_user"), "ansible_user", host)
        ports[host] = _port(hv.get("ansible_port"), host) or 22  # Ansible and capstan both default to 22
        keys[host] = _text(hv.get("ansible_ssh_private_key_file"), "ansible_ssh_private_key_file", host)
        result.hosts.append(entry)
        result.names.append(host)
    _connection(result, users, ports, keys, warnings)
    if bastions:
        _bastion(inv, group_files, host_files, bastions, result, notes, warnings)
    notes.flush(warnings)
    return result


def _connection(
    result: HostsResult,
    users: dict[str, str | None],
    ports: dict[str, int | None],
    keys: dict[str, str | None],
    warnings: Warnings,
) -> None:
    user, user_overrides = _fold(users)
    port, port_overrides = _fold(ports)
    for entry in result.hosts:
        if entry["name"] in user_overrides:
            entry["user"] = user_overrides[entry["name"]]
        if entry["name"] in port_overrides:
            entry["port"] = port_overrides[entry["name"]]
    if user is not None:
        result.ssh["user"] = user
    unset = [h for h, u in users.items() if u is None]
    if unset:
        warnings.add(
            f"ansible_user is not set for {', '.join(unset[:5])}{' and more' if len(unset) > 5 else ''}: "
            f"Ansible connects as your local user, capstan as {user or 'root'} (spec.ssh.user)"
        )
    if port not in (None, 22):
        result.ssh["port"] = port
    key_paths = {k for k in keys.values() if k is not None}
    if len(key_paths) == 1:
        result.ssh["keyPath"] = key_paths.pop()
    elif key_paths:
        warnings.add(
            f"ansible_ssh_private_key_file differs between hosts ({', '.join(sorted(key_paths))}): "
            "capstan uses one key for all hosts; set spec.ssh.keyPath by hand"
        )


def _bastion(
    inv: Inventory,
    group_files: list[VarFile],
    host_files: dict[str, list[VarFile]],
    bastions: list[str],
    result: HostsResult,
    notes: _Notes,
    warnings: Warnings,
) -> None:
    name = bastions[0]
    if len(bastions) > 1:
        warnings.add(
            f"{inv.label}: bastion: capstan uses one bastion; using {name!r}, ignoring "
            f"{', '.join(bastions[1:])}"
        )
    hv = resolve_host_vars(inv, group_files, host_files.get(name, []), name, notes)
    bastion: dict[str, Any] = {"address": _text(hv.get("ansible_host"), "ansible_host", name) or name}
    port = _port(hv.get("ansible_port"), name)
    if port is not None:
        bastion["port"] = port
    user = _text(hv.get("ansible_user"), "ansible_user", name) or result.ssh.get("user")
    if user is not None:
        bastion["user"] = user
    result.ssh["bastion"] = bastion
