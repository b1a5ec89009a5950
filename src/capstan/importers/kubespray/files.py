"""Reading Kubespray's variable files: ``group_vars/`` and ``host_vars/`` laid out the Ansible way.

A group's variables live in ``<dir>/<group>.yml`` or in every YAML file under ``<dir>/<group>/``
(Kubespray's sample uses ``group_vars/all/*.yml`` and ``group_vars/k8s_cluster/*.yml``; older inventories
``k8s-cluster``). ``!vault`` values and vault-encrypted files cannot be read without the password; they
are reported, not guessed. Files that Ansible would skip (other extensions) are reported too, so that
nothing a user wrote disappears without a line saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from capstan.errors import SpecError
from capstan.importers.kubespray.common import Vaulted, Warnings, canonical_group

_VAR_SUFFIXES = {".yml", ".yaml", ".json", ""}


class _Loader(yaml.SafeLoader):
    """SafeLoader that knows Ansible's two tags instead of failing on them."""


def _vault(loader: yaml.SafeLoader, node: yaml.Node) -> Vaulted:
    return Vaulted()


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node)


_Loader.add_constructor("!vault", _vault)
_Loader.add_constructor("!unsafe", _unsafe)


@dataclass
class VarFile:
    """The variables of one file; ``group`` is None for a host_vars file."""

    label: str
    values: dict[str, Any]
    group: str | None = None


def load_yaml_text(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(label, f"{problem}{where}") from None
    except (ValueError, RecursionError) as exc:
        raise SpecError(label, f"cannot parse YAML: {exc}") from None


def read_vars_file(path: Path, label: str, warnings: Warnings) -> dict[str, Any]:
    """The mapping in one variables file ({} for an empty or vault-encrypted file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(label, f"cannot read: {exc}") from None
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        warnings.add(f"{label}: encrypted with ansible-vault; none of its variables are imported")
        return {}
    data = load_yaml_text(text, label)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(label, "expected a mapping of variable names to values")
    return {str(k): v for k, v in data.items()}


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def _is_var_file(path: Path) -> bool:
    return path.suffix in _VAR_SUFFIXES


def label_of(path: Path, base: Path) -> str:
    """How messages name a file: relative to the inventory's directory when it lies below it."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def load_group_vars(directory: Path, base: Path, warnings: Warnings) -> list[VarFile]:
    """Every group variables file under ``directory``, in the order Ansible reads them."""
    out: list[VarFile] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            group = canonical_group(entry.name)
            candidates = _files_under(entry)
        else:
            group = canonical_group(entry.stem if entry.suffix in _VAR_SUFFIXES else entry.name)
            candidates = [entry]
        for path in candidates:
            label = label_of(path, base)
            if not _is_var_file(path):
                warnings.add(
                    f"{label}: not a .yml, .yaml or .json file; Ansible skips it and so does the import"
                )
                continue
            out.append(VarFile(label, read_vars_file(path, label, warnings), group))
    return out


def load_host_vars(directory: Path, host: str, base: Path, warnings: Warnings) -> list[VarFile]:
    """``host_vars/<host>.yml`` (or .yaml, .json, no extension) and ``host_vars/<host>/*.yml``."""
    if not directory.is_dir():
        return []
    out: list[VarFile] = []
    for suffix in ("", ".yml", ".yaml", ".json"):
        path = directory / f"{host}{suffix}"
        if path.is_file():
            out.append(VarFile(label_of(path, base), read_vars_file(path, label_of(path, base), warnings)))
    folder = directory / host
    if folder.is_dir():
        for path in _files_under(folder):
            label = label_of(path, base)
            if _is_var_file(path):
                out.append(VarFile(label, read_vars_file(path, label, warnings)))
            else:
                warnings.add(
                    f"{label}: not a .yml, .yaml or .json file; Ansible skips it and so does the import"
                )
    return out
