"""PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch, JSON patch (RFC 6902).

Why strategic merge is more than a merge patch here: ``kubectl apply`` and ``kubectl edit`` send
strategic patches in which a list of containers, ports or conditions carries only the changed items,
keyed by their merge key, plus ``$setElementOrder``/``$patch``/``$retainKeys`` directives. Treating
those lists as replacements would silently drop containers. The merge keys of the common lists are in
``MERGE_KEYS`` (the real ones come from Go struct tags); other lists are replaced, as in a merge patch.
"""

from __future__ import annotations

import copy
from typing import Any

from .status import ApiStatus, bad_request

MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "conditions": ("type",),
    "addresses": ("type",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",),
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _strip(value: Any) -> Any:
    """A patch value without directives, for places where there is nothing to merge into."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return value


def _merge_key(field: str, items: list[Any]) -> str | None:
    for key in MERGE_KEYS.get(field, ()):
        if items and all(isinstance(i, dict) and (key in i or "$patch" in i) for i in items):
            return key
    return None


_PROTOCOL_KEYED = ("containerPort", "port")


def _same(live: dict[str, Any], item: dict[str, Any], key: str) -> bool:
    """Same list entry: ports are keyed by number *and* protocol (53/UDP and 53/TCP are two entries)."""
    if live.get(key) != item.get(key):
        return False
    return key not in _PROTOCOL_KEYED or live.get("protocol", "TCP") == item.get("protocol", "TCP")


def _merge_list(orig: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    result = copy.deepcopy(orig)
    for item in patch:
        if not isinstance(item, dict):
            continue
        idx = next((i for i, o in enumerate(result) if isinstance(o, dict) and _same(o, item, key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
        elif idx is None:
            result.append(_strip(item))
        else:
            result[idx] = strategic_merge(result[idx], item)
    return result


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch (also used to merge a server-side-applied object onto the live one)."""
    if not isinstance(patch, dict):
        return _strip(patch)
    if patch.get("$patch") == "replace":
        return _strip(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain: list[str] | None = None
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k == "$patch":
            continue
        if k == "$retainKeys":
            retain = list(v or [])
        elif k.startswith("$deleteFromPrimitiveList/"):
            name = k.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [x for x in result[name] if x not in (v or [])]
        elif v is None:
            result.pop(k, None)
        elif isinstance(v, dict) and isinstance(result.get(k), dict):
            if v.get("$patch") == "delete":
                result.pop(k, None)
            else:
                result[k] = strategic_merge(result[k], v)
        elif isinstance(v, list) and isinstance(result.get(k), list) and (mk := _merge_key(k, v)):
            result[k] = _merge_list(result[k], v, mk)
        else:
            result[k] = _strip(v)
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch path {path!r} does not start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        try:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _unprocessable(f"doc is missing path: {path!r}") from None
    if not parts:
        raise _unprocessable("the whole document cannot be the target of this operation")
    return cur, parts[-1]


def _unprocessable(msg: str) -> ApiStatus:
    return ApiStatus(422, "Invalid", msg)


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for p in _pointer(path):
        try:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _unprocessable(f"doc is missing path: {path!r}") from None
    return cur


def _add(doc: Any, path: str, value: Any) -> None:
    parent, last = _parent(doc, _pointer(path), path)
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if idx > len(parent):
            raise _unprocessable(f"index out of range in {path!r}")
        parent.insert(idx, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _unprocessable(f"doc is missing path: {path!r}")


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path), path)
    try:
        return parent.pop(int(last) if isinstance(parent, list) else last)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise _unprocessable(f"unable to remove nonexistent key: {last}: missing value") from None


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 operations applied to a copy of ``doc``."""
    if not isinstance(ops, list):
        raise bad_request("json patch body must be a list of operations")
    out = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind == "add":
            _add(out, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(out, path)
        elif kind == "replace":
            _remove(out, path)
            _add(out, path, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str):
                raise bad_request(f"json patch {kind} without 'from': {op!r}")
            value = _remove(out, src) if kind == "move" else copy.deepcopy(_get(out, src))
            _add(out, path, value)
        elif kind == "test":
            if _get(out, path) != op.get("value"):
                raise _unprocessable(f"testing value {path} failed")
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return out
