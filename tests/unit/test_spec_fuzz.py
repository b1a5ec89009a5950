"""Property test: whatever the loader is fed, the only failure is a SpecError that names a path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capstan.errors import SpecError
from capstan.spec import parse_spec, parse_spec_text

EXAMPLES = Path(__file__).parents[2] / "examples"
BASES = [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["10.0.0.0/8", "1.36.4", "control-plane", "etcd", "20%", "-1", "", "0.0.0.0", "vip"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last]["x" + str(abs(hash(repr(value))) % 1000)] = value
    elif action == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    return doc


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        doc = _mutate(doc, path, action, draw(values))
    return doc


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_fail_only_with_a_path(doc: dict[str, Any]) -> None:
    try:
        parse_spec(doc)
    except SpecError as err:
        assert err.path, f"no path in: {err}"
        assert "\n" not in str(err)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_fails_only_with_spec_error(text: str) -> None:
    try:
        parse_spec_text(text)
    except SpecError as err:
        assert str(err)
