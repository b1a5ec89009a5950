"""The one jinja2 environment every rendered file goes through.

Why one place: the safety rules hold for every template at once. ``StrictUndefined`` turns a variable a
template expects but did not get into an error instead of an empty string (an empty ``--etcd-servers``
renders fine and breaks a cluster much later); every jinja2 failure becomes a ``RenderError`` naming the
template, because a broken template is a capstan bug the user must be able to report precisely; and YAML
output is parsed back before it leaves here, so a template can never hand a host a file kubeadm or the
API server would reject as malformed.

Values are quoted with the ``q`` filter (a JSON literal). JSON scalars are valid YAML and valid TOML
basic strings, so a label value such as ``"on"`` or ``"0755"`` keeps its type and no spec value can
inject structure into a file.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2
import yaml

from capstan.errors import RenderError

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser with PyYAML's safe constructors when PyYAML was built with it (same documents,
several times faster: every host's kubeadm configuration is parsed back here on every run)."""

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("capstan", "templates"),
    auto_reload=False,  # templates ship inside the package: no need to stat them on every render
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def _quote(value: object) -> str:
    """A JSON literal: a safe YAML/TOML scalar for strings, numbers and booleans."""
    if value is None:
        raise RenderError(
            "a template quoted a value that is None (a capstan bug: the caller passed no value)"
        )
    if not isinstance(value, str | int | float | bool):
        value = str(value)  # IP addresses, networks
    return json.dumps(value, ensure_ascii=False)


_ENV.filters["q"] = _quote


def render_text(template: str, **context: Any) -> str:
    """Render one template; any jinja2 problem is a RenderError that names the template."""
    try:
        return _ENV.get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {template}: not found ({exc.name})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {template}: syntax error at line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {template}: {exc.message}") from None


def parse_yaml_docs(text: str, source: str) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML stream, each a mapping; RenderError naming ``source`` if not."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=_SAFE_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        raise RenderError(f"template {source}: rendered YAML does not parse: {exc}") from None
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise RenderError(f"template {source}: YAML document {i} is not a mapping")
    return docs


def render_yaml(template: str, **context: Any) -> str:
    """Render a YAML template and check that it parses; returns the text as rendered."""
    text = render_text(template, **context)
    parse_yaml_docs(text, template)
    return text


def render_yaml_docs(template: str, **context: Any) -> list[dict[str, Any]]:
    """Render a YAML template and return its parsed documents."""
    return parse_yaml_docs(render_text(template, **context), template)
