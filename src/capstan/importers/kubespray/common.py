"""Small shared types of the Kubespray importer: a variable with its origin, and the warning list.

Why every value carries its file: each warning and each error has to name the file a user must edit
(``group_vars/k8s_cluster/k8s-cluster.yml: kube_network_plugin: ...``), long after the files were merged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Kubespray's current group names, keyed by the older spellings still found in inventories.
_GROUP_ALIASES = {
    "kube-master": "kube_control_plane",
    "kube_master": "kube_control_plane",
    "kube-node": "kube_node",
    "k8s-cluster": "k8s_cluster",
}

_TEMPLATE = re.compile(r"\{\{|\{%")


def canonical_group(name: str) -> str:
    """The current Kubespray name of a group, so legacy inventories merge into the same groups."""
    return _GROUP_ALIASES.get(name, name)


class Vaulted:
    """An ``!vault`` value: encrypted with ansible-vault, so its content cannot be imported."""

    def __repr__(self) -> str:
        return "<vault-encrypted>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vaulted)

    def __hash__(self) -> int:
        return 0


@dataclass(frozen=True)
class Var:
    """One variable value and where it was set (file label, with the INI section when there is one)."""

    value: Any
    source: str
    group: str | None = None  # the group whose variables these are; None for host variables


def is_template(value: Any) -> bool:
    """True when a value holds a Jinja expression anywhere (we never evaluate them)."""
    if isinstance(value, str):
        return bool(_TEMPLATE.search(value))
    if isinstance(value, dict):
        return any(is_template(k) or is_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(is_template(v) for v in value)
    return False


def has_vault(value: Any) -> bool:
    if isinstance(value, Vaulted):
        return True
    if isinstance(value, dict):
        return any(has_vault(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_vault(v) for v in value)
    return False


def short(value: Any, limit: int = 60) -> str:
    """A one-line repr of a value for a message; long templates are cut so the line stays readable."""
    text = repr(value).replace("\\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Warnings:
    """Ordered, de-duplicated warning lines: one line per problem, in the order they were found."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        if line not in self._lines:
            self._lines.append(line)

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def lines(self) -> list[str]:
        return list(self._lines)
