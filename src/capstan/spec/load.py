"""Loading a cluster spec from YAML: parse, validate, resolve defaults, and report errors by path.

Every failure becomes one ``SpecError`` naming the YAML path (``spec.hosts[2].roles``), whatever the
input: a YAML syntax error, a document that is not a mapping, a wrong type, an unknown key, or a
cross-field rule. Nothing else escapes, which the hypothesis test in tests/unit checks on mutated specs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from capstan.errors import SpecError
from capstan.spec.checks import run_checks
from capstan.spec.models import Cluster

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# pydantic inserts the branch it tried into the location of union errors; users never wrote those.
_UNION_TAG = re.compile(
    r"^(int|str|float|bool|none|list\[.*\]|dict\[.*\]|constrained-str|function-.*|.*\[.*\])$"
)

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


def format_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as the YAML path a user would look for."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _UNION_TAG.match(part) and out:
            continue
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _first_error(exc: ValidationError) -> SpecError:
    err = exc.errors(include_url=False)[0]
    path = format_path(tuple(err["loc"]))
    msg = _MESSAGES.get(err["type"], err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    more = exc.error_count() - 1
    if more > 0:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(path, msg)


def parse_spec(data: Any, *, source: str = "cluster spec") -> Cluster:
    """Validate an already-parsed document; raise the first problem as a SpecError."""
    if not isinstance(data, dict):
        raise SpecError("", f"{source}: the document must be a mapping with apiVersion, kind, metadata, spec")
    try:
        cluster = Cluster.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None
    problems = run_checks(cluster)
    if problems:
        raise problems[0]
    if not cluster.spec.kubernetes.version:
        from capstan.versions import default_kubernetes_version

        cluster.spec.kubernetes.version = default_kubernetes_version()
    return cluster


def parse_spec_text(text: str, *, source: str = "cluster spec") -> Cluster:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError("", f"{source}: {problem}{where}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an out-of-range timestamp
        raise SpecError("", f"{source}: cannot parse YAML: {exc}") from None
    return parse_spec(data, source=source)


def load_spec(path: str | Path) -> Cluster:
    """Read and validate ``cluster.yaml``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("", f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("", f"{p}: cannot read: {exc}") from None
    return parse_spec_text(text, source=str(p))


def dump_spec(cluster: Cluster) -> str:
    """YAML of a Cluster with only the fields that differ from the defaults (plus the required ones)."""
    data = cluster.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data = {"apiVersion": cluster.api_version, "kind": cluster.kind, **data}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
