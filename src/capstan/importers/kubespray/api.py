"""``import_kubespray``: a Kubespray inventory (+ group_vars) in, a validated capstan Cluster out.

The steps: read the inventory (INI or YAML), the group_vars and host_vars files; map hosts and groups;
merge the cluster-wide variables with Ansible's precedence; run every mapper; report every variable no
mapper read; then validate the assembled document with ``capstan.spec.parse_spec`` so that an imported
spec obeys exactly the rules of a hand-written one. A validation error keeps its spec path and gains a
hint naming the inventory host or Kubespray variable it came from.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capstan.errors import CapstanError, SpecError
from capstan.importers.kubespray.common import Var, Warnings, short
from capstan.importers.kubespray.context import Ctx
from capstan.importers.kubespray.files import VarFile, label_of, load_group_vars, load_host_vars
from capstan.importers.kubespray.hosts import HostsResult, is_host_key, map_hosts
from capstan.importers.kubespray.inventory import Inventory, find_inventory, read_inventory
from capstan.importers.kubespray.map_core import (
    map_dns,
    map_endpoint,
    map_kubelet,
    map_kubernetes,
    map_network,
    map_runtime,
)
from capstan.importers.kubespray.map_ops import (
    map_addons,
    map_artifacts,
    map_etcd,
    map_neutral,
    map_pki,
    map_security,
    map_upgrade,
)
from capstan.spec import API_VERSION, Cluster, dump_spec, parse_spec

MAPPERS: tuple[Callable[[Ctx], None], ...] = (
    map_kubernetes,
    map_network,
    map_runtime,
    map_dns,
    map_endpoint,
    map_kubelet,
    map_etcd,
    map_upgrade,
    map_security,
    map_pki,
    map_addons,
    map_artifacts,
    map_neutral,  # last: it only looks at keys no other mapper read
)

# Groups whose variables reach every host that a cluster-wide setting concerns.
_WIDE_GROUPS = {"all", "k8s_cluster", "etcd"}
# Groups Kubespray builds itself, so their group_vars apply even when the inventory does not list them.
_DERIVED_GROUPS = {"all", "k8s_cluster"}
_HOST_PATH = re.compile(r"^spec\.hosts\[(\d+)\]")


@dataclass
class ImportResult:
    """The imported cluster and every warning; ``yaml()`` is the text of ``cluster.yaml``.

    ``mapped`` lists the cluster-wide variables the mappers read (set into the spec, checked to equal
    capstan's behaviour, or reported); every other variable of the inventory is in ``warnings``.
    """

    cluster: Cluster
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    mapped: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        head = [f"# Imported from the Kubespray inventory {self.source} by `capstan import kubespray`."]
        if self.warnings:
            head.append("# Review these import warnings (settings not carried over, or changed):")
            head.extend(f"#   {w}" for w in self.warnings)
        return "\n".join(head) + "\n" + dump_spec(self.cluster)


def import_kubespray(
    inventory: Path, group_vars: Path | None = None, name: str | None = None
) -> ImportResult:
    """Import a Kubespray inventory; raise SpecError for what cannot be imported, warn for the rest."""
    inv_path = find_inventory(Path(inventory))
    base = inv_path.parent
    warnings = Warnings()
    inv = read_inventory(inv_path, label_of(inv_path, base))
    group_files = _group_files(inv, base, Path(group_vars) if group_vars is not None else None, warnings)
    host_files = {h: load_host_vars(base / "host_vars", h, base, warnings) for h in inv.host_vars}
    hosts = map_hosts(inv, group_files, host_files, warnings)
    ctx = Ctx(_cluster_vars(inv, group_files, warnings), warnings)
    for mapper in MAPPERS:
        mapper(ctx)
    for key in ctx.vars:
        if key not in ctx.seen:
            ctx.warn(key, "not mapped: capstan has no equivalent setting; ignored")
    spec: dict[str, Any] = {"hosts": hosts.hosts}
    if hosts.ssh:
        spec["ssh"] = hosts.ssh
    spec.update(ctx.spec)
    if name is None:
        name = _cluster_name(inv_path, warnings)
    doc = {"apiVersion": API_VERSION, "kind": "Cluster", "metadata": {"name": name}, "spec": spec}
    try:
        cluster = parse_spec(doc, source=inv.label)
    except SpecError as exc:
        hint = _hint(exc.path, ctx.origin, hosts)
        raise SpecError(exc.path, f"{exc.message} (in the spec imported from {inv_path}{hint})") from None
    return ImportResult(cluster, warnings.lines(), str(inv_path), sorted(ctx.seen & set(ctx.vars)))


def cli_main(
    inventory: Path | str, group_vars: Path | str | None, output: Path | str, name: str | None
) -> int:
    """``capstan import kubespray``: write the spec, print warnings to stderr and the output path.

    Errors are raised as CapstanError for the CLI's single handler (one line on stderr, exit 2).
    An output of ``-`` writes the spec to stdout instead of a file.
    """
    result = import_kubespray(Path(inventory), Path(group_vars) if group_vars else None, name)
    text = result.yaml()
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if str(output) == "-":
        sys.stdout.write(text)
        return 0
    out = Path(output)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CapstanError(f"{out}: cannot write: {exc.strerror or exc}") from None
    print(out)
    return 0


def _group_files(inv: Inventory, base: Path, directory: Path | None, warnings: Warnings) -> list[VarFile]:
    if directory is None:
        directory = base / "group_vars"
        if not directory.is_dir():
            return []
    elif not directory.is_dir():
        raise SpecError(str(directory), "--group-vars must be a directory (Kubespray's group_vars)")
    label_base = base if directory.resolve().is_relative_to(base.resolve()) else directory.parent
    files = load_group_vars(directory, label_base, warnings)
    kept: list[VarFile] = []
    for vf in files:
        group = vf.group or "all"
        if group not in _DERIVED_GROUPS and not inv.members(group):
            if vf.values:
                warnings.add(
                    f"{vf.label}: the inventory has no hosts in group {group!r}; its variables are ignored"
                )
            continue
        kept.append(vf)
    return kept


def _cluster_vars(inv: Inventory, group_files: list[VarFile], warnings: Warnings) -> dict[str, Var]:
    """Cluster-wide variables merged lowest precedence first, as Ansible would for a host in every group."""

    def rank(group: str) -> tuple[int, str]:
        return (inv.depth(group) if group in inv.groups else 1, group)

    layers: list[tuple[str, Var]] = []
    for group in sorted(inv.groups, key=rank):
        layers.extend(inv.groups[group].vars.items())
    for vf in sorted(group_files, key=lambda f: (f.group != "all", rank(f.group or "all"))):
        layers.extend((key, Var(value, vf.label, vf.group)) for key, value in vf.values.items())
    out: dict[str, Var] = {}
    for key, var in layers:
        if is_host_key(key):
            continue
        previous = out.get(key)
        if previous is not None and previous.value != var.value:
            warnings.add(f"{var.source}: {key}: overrides {short(previous.value)} set in {previous.source}")
        out[key] = var
    for key, var in out.items():
        if var.group is not None and var.group not in _WIDE_GROUPS:
            warnings.add(
                f"{var.source}: {key}: set for group {var.group} only; capstan applies it cluster-wide"
            )
    return out


def _cluster_name(inv_path: Path, warnings: Warnings) -> str:
    """metadata.name from the inventory's directory (Kubespray's cluster_name is the DNS domain)."""
    raw = inv_path.resolve().parent.name
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:63].strip("-") or "cluster"
    if name != raw:
        warnings.add(
            f"metadata.name: {name!r}, made from the inventory directory {raw!r}; use --name to choose"
        )
    return name


def _hint(path: str, origin: dict[str, str], hosts: HostsResult) -> str:
    m = _HOST_PATH.match(path)
    if m and int(m.group(1)) < len(hosts.names):
        return f"; spec.hosts[{m.group(1)}] is inventory host {hosts.names[int(m.group(1))]!r}"
    best = ""
    for spec_path in origin:
        if (path == spec_path or path.startswith((spec_path + ".", spec_path + "["))) and len(
            spec_path
        ) > len(best):
            best = spec_path
    return f"; {best} comes from {origin[best]}" if best else ""
