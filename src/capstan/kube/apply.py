"""Server-side apply of plain object dicts, reporting which ones actually changed.

Objects are sent as the dicts capstan rendered (lightkube's typed models are used only to route a kind
to its URL), so a field the client library does not know is still applied. Apply is idempotent on the
server; to report "0 changes" honestly on a converged cluster, each object is read before the apply
and compared with what the apply returned, ignoring the bookkeeping the server updates on every write
(resourceVersion, managedFields, status). Namespaces and CustomResourceDefinitions go first, so the
objects that need them can follow in the same batch; a kind defined by a CRD of the batch is routed
through a generic resource made from that CRD.

A converged object is not sent again: every applied object carries the sha256 of what capstan rendered
(annotation ``capstan.io/applied-sha256``), and an object whose live copy was applied by capstan's
field manager and already holds every rendered field, that annotation included, is left alone. A
changed manifest changes the digest, so it is applied (and fields capstan no longer sets are dropped
by server-side apply, as before); an object edited by someone else no longer holds every rendered field
and is applied back. Why: a converged re-run would otherwise send every addon object (hundreds with
a CNI manifest) through the API server again only to learn that nothing changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_resources_from_crd
from lightkube.types import PatchType

from capstan.kube.access import FIELD_MANAGER, KubeError

if TYPE_CHECKING:
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

Obj = dict[str, Any]
APPLIED_DIGEST = "capstan.io/applied-sha256"
FIRST_KINDS = ("Namespace", "CustomResourceDefinition")
_VOLATILE_META = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp")


@dataclass
class ApplyResult:
    """Object references (``Kind namespace/name``) that changed and that were already as wanted."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def apply_order(objs: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """Namespaces, then CRDs, then everything else in the given order (a stable sort)."""
    items = [dict(o) for o in objs]
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    return sorted(items, key=lambda o: rank.get(str(o.get("kind")), len(FIRST_KINDS)))


def comparable(obj: Mapping[str, Any] | None) -> Obj | None:
    """``obj`` without what the server rewrites on every write (None stays None)."""
    if obj is None:
        return None
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in _VOLATILE_META:
            meta.pop(key, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop("deprecated.daemonset.template.generation", None)
            if not annotations:
                meta.pop("annotations")
    return out


def stamped(obj: Mapping[str, Any]) -> Obj:
    """``obj`` with the sha256 of its rendered form as an annotation (see the module docstring)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_DIGEST: digest}
    return out


def applied_by_capstan(live: Mapping[str, Any]) -> bool:
    """True when capstan's field manager has server-side applied ``live``."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    return any(e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply" for e in entries)


def _check(obj: Mapping[str, Any]) -> None:
    meta = obj.get("metadata")
    if not obj.get("apiVersion") or not obj.get("kind") or not isinstance(meta, dict) or not meta.get("name"):
        raise KubeError(f"cannot apply {ref(obj)}: apiVersion, kind and metadata.name are required")


def resource_of(obj: Mapping[str, Any]) -> Any:
    """The lightkube resource class that routes ``obj`` (built-in kinds, or kinds of known CRDs)."""
    try:
        return resource_registry.load(str(obj["apiVersion"]), str(obj["kind"]))
    except (LoadResourceError, AttributeError, ImportError, KeyError):
        raise KubeError(
            f"cannot apply {ref(obj)}: {obj.get('apiVersion')} {obj.get('kind')} is neither a built-in "
            "kind nor defined by a CustomResourceDefinition of the same manifest"
        ) from None


def _register_crds(objs: Iterable[Obj]) -> None:
    for obj in objs:
        if obj.get("kind") == "CustomResourceDefinition":
            create_resources_from_crd(cast("CustomResourceDefinition", from_dict(obj)))


def _as_dict(found: Any) -> Obj:
    return dict(found.to_dict()) if hasattr(found, "to_dict") else dict(found)


def apply_objects(client: Client, objs: Iterable[Mapping[str, Any]], *, dry_run: bool = False) -> ApplyResult:
    """Server-side apply each object (field manager ``capstan``, conflicts forced); report changes.

    ``dry_run`` reads and compares only: an object that is missing or differs counts as changed.
    Raises KubeError naming the object on the first refusal.
    """
    ordered = apply_order(objs)
    for obj in ordered:
        _check(obj)
    _register_crds(ordered)
    ordered = [stamped(obj) for obj in ordered]
    targets = [(obj, *_where(obj)) for obj in ordered]
    listed = _prefetch(client, targets)
    result = ApplyResult()
    for obj, res, namespace, name in targets:
        key = (res, namespace, name)
        before = listed[key] if key in listed else _read(client, obj, res, namespace, name)
        current = before is not None and _contains(comparable(before), comparable(obj))
        if dry_run or (current and before is not None and applied_by_capstan(before)):
            (result.unchanged if current else result.changed).append(ref(obj))
            continue
        try:
            after = client.patch(
                res,
                name,
                obj,
                namespace=namespace,
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
            )
        except ApiError as exc:
            raise KubeError(f"cannot apply {ref(obj)}: {exc.status.message}") from None
        same = comparable(before) == comparable(_as_dict(after))
        (result.unchanged if same else result.changed).append(ref(obj))
    return result


def _where(obj: Obj) -> tuple[Any, str | None, str]:
    """(resource class, namespace or None, name) of a checked object."""
    res = resource_of(obj)
    namespace = None
    if issubclass(res, NamespacedResource):
        namespace = str(obj["metadata"].get("namespace") or "default")
    return res, namespace, str(obj["metadata"]["name"])


def _read(client: Client, obj: Obj, res: Any, namespace: str | None, name: str) -> Obj | None:
    try:
        return _as_dict(client.get(res, name, namespace=namespace))
    except ApiError as exc:
        if exc.status.code != 404:
            raise KubeError(f"cannot read {ref(obj)}: {exc.status.message}") from None
        return None


def _prefetch(
    client: Client, targets: list[tuple[Obj, Any, str | None, str]]
) -> dict[tuple[Any, str | None, str], Obj | None]:
    """The live objects, one LIST per (resource, namespace) instead of a GET per object.

    A list the server refuses (a kind defined by a CRD of this very batch is not served yet) leaves its
    objects out; they are read one by one when their turn comes. List items carry no kind and
    apiVersion; the resource they were listed through does.
    """
    groups: dict[tuple[Any, str | None], list[tuple[Obj, str]]] = {}
    for obj, res, namespace, name in targets:
        groups.setdefault((res, namespace), []).append((obj, name))
    live: dict[tuple[Any, str | None, str], Obj | None] = {}
    for (res, namespace), members in groups.items():
        if len(members) < 2:
            continue  # one GET costs what one LIST does
        try:
            items = client.list(res, namespace=namespace) if namespace is not None else client.list(res)
            found = {str(d["metadata"]["name"]): d for d in (_as_dict(i) for i in items)}
        except ApiError:
            continue
        for obj, name in members:
            item = found.get(name)
            kind = {"apiVersion": obj["apiVersion"], "kind": obj["kind"]}
            live[(res, namespace, name)] = {**item, **kind} if item is not None else None
    return live


def _contains(live: Any, want: Any) -> bool:
    """True when every field of ``want`` has the same value in ``live`` (lists item by item)."""
    if isinstance(want, Mapping):
        return isinstance(live, Mapping) and all(k in live and _contains(live[k], v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(live, list)
            and len(live) == len(want)
            and all(_contains(a, b) for a, b in zip(live, want, strict=True))
        )
    return bool(live == want)
