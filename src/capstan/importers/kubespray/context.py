"""The mapping context: cluster-wide Kubespray variables in, a spec dict and warnings out.

Why a context object: every mapper needs the same four things (read a variable with Ansible's loose
typing, remember that it was read, write a spec field remembering which variable it came from, and
report in the words of the file the user must edit). Keeping them here makes each mapper a short list
of ``key -> spec path`` lines, and lets the importer list every variable no mapper read.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from capstan.errors import SpecError
from capstan.importers.kubespray.common import Var, Warnings, has_vault, is_template, short

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class Ctx:
    """Cluster-wide variables being mapped, the ``spec`` dict being built, and what was read."""

    def __init__(self, variables: dict[str, Var], warnings: Warnings) -> None:
        self.vars = variables
        self.warnings = warnings
        self.spec: dict[str, Any] = {}
        self.origin: dict[str, str] = {}  # "spec.kubernetes.podCidr" -> "kube_pods_subnet in <file>"
        self.seen: set[str] = set()

    # ------------------------------------------------------------------ reading and reporting

    def has(self, key: str) -> bool:
        return key in self.vars

    def source(self, key: str) -> str:
        return self.vars[key].source if key in self.vars else ""

    def raw(self, key: str) -> Any:
        """The value as written (templates included), marking the key read; None when absent."""
        self.seen.add(key)
        var = self.vars.get(key)
        return None if var is None else var.value

    def get(self, key: str) -> Any:
        """The value, or None when it is absent, null, vault-encrypted or a Jinja template (reported)."""
        value = self.raw(key)
        if value is None:
            return None
        if has_vault(value):
            self.warn(key, "encrypted with ansible-vault, cannot be imported; capstan's default applies")
            return None
        if is_template(value):
            self.warn(key, f"cannot evaluate the Jinja template {short(value)}; capstan's default applies")
            return None
        return value

    def warn(self, key: str, message: str) -> None:
        src = self.source(key)
        self.warnings.add(f"{src}: {key}: {message}" if src else f"{key}: {message}")

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(self.source(key), f"{key}: {message}")

    def put(self, path: str, value: Any, key: str) -> None:
        """Set ``spec.<path>`` (camelCase, dot-separated) and remember which variable set it."""
        node = self.spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        src = self.source(key)
        self.origin[f"spec.{path}"] = f"{key} in {src}" if src else key

    def default_differs(self, key: str, kubespray: str, capstan: str, path: str) -> None:
        """Report a key left unset whose Kubespray default differs from capstan's (capstan's applies)."""
        if key not in self.vars:
            self.warnings.add(
                f"{key} is not set: Kubespray's default is {kubespray}, "
                f"capstan's default {capstan} applies ({path})"
            )

    # ------------------------------------------------------------------ typed getters

    def boolean(self, key: str) -> bool | None:
        value = self.get(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self.error(key, f"expected true or false, got {short(value)}")

    def integer(self, key: str) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise self.error(key, f"expected a whole number, got {short(value)}")

    def string(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"expected a string, got {short(value)}")
        return str(value)

    def strings(self, key: str) -> list[str] | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_inline(value)
        if not isinstance(value, list | tuple) or any(isinstance(v, dict | list) for v in value):
            raise self.error(key, f"expected a list of strings, got {short(value)}")
        return [str(v).lower() if isinstance(v, bool) else str(v) for v in value]

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_inline(value)
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {short(value)}")
        return {str(k): v for k, v in value.items()}

    def seconds(self, key: str) -> int | None:
        """A duration as Kubespray writes them (``360``, ``"360s"``, ``"5m"``, ``"1h0m0s"``) in seconds."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        m = _DURATION.match(str(value).strip())
        if not m or not any(m.groups()):
            raise self.error(key, f"expected a duration such as 360s or 5m, got {short(value)}")
        h, mi, s = (int(g or 0) for g in m.groups())
        return h * 3600 + mi * 60 + s

    def choice(self, key: str, allowed: dict[str, str], rejected: dict[str, str] | None = None) -> str | None:
        """Map an enumerated value; anything else is an error naming the key and the supported values."""
        value = self.string(key)
        if value is None:
            return None
        if value in allowed:
            return allowed[value]
        if rejected and value in rejected:
            raise self.error(key, f"{value!r} is not supported: {rejected[value]}")
        raise self.error(key, f"{value!r} is not supported (supported: {', '.join(allowed)})")


def parse_inline(text: str) -> Any:
    """A list or mapping written inline as a string (INI values that were not Python literals)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def flag_value(value: Any) -> str:
    """A command-line flag value as kubeadm writes it (booleans lower-case, lists comma-joined)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(flag_value(v) for v in value)
    return str(value)
