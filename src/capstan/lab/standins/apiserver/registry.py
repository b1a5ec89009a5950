"""The generic verbs over storage: create, get, list, update, patch (incl. apply) and delete.

Why the care with revisions: every write is a compare-and-swap on the etcd mod_revision the object
was read at, and resourceVersion *is* that revision, so a client holding a stale object gets 409
Conflict exactly as from a real apiserver, and a patch racing another writer is re-applied on the
fresh object. Values are JSON without resourceVersion (it is etcd's to give), like the real one.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from ..common import kubetime
from . import status
from .encryption import Encryption
from .listcache import ListCache
from .patch import json_patch, merge_patch, strategic_merge
from .resources import BUILTIN, CRDS, Resource, builtin, from_crd
from .status import ApiStatus
from .storage import KV, KeyExists, RevisionMismatch, Storage
from .strategy import prepare_create, prepare_update

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PATH_SEGMENT_NAMES = {
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "certificatesigningrequests",
}
PATCH_TYPES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
)


def _name_error(res: Resource, name: str) -> str | None:
    if res.name in _PATH_SEGMENT_NAMES:
        bad = name in (".", "..") or "/" in name or "%" in name
        return "may not contain '/' or '%' or be '.' or '..'" if bad else None
    if res.name == "namespaces":
        ok = len(name) <= 63 and _LABEL.match(name)
        return (
            None
            if ok
            else "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
        )
    ok = len(name) <= 253 and _SUBDOMAIN.match(name)
    return (
        None
        if ok
        else "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
    )


class Registry:
    """Verb semantics for every resource, on a ``Storage``."""

    def __init__(
        self,
        storage: Storage,
        prefix: str = "/registry",
        encryption: Encryption | None = None,
        service_range: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
        disabled_admission: frozenset[str] = frozenset(),
    ) -> None:
        self.storage = storage
        self.prefix = prefix.rstrip("/")
        self.encryption = encryption or Encryption()
        self.service_range = service_range
        self.disabled_admission = disabled_admission  # --disable-admission-plugins
        self._lists = ListCache(storage)

    # ---- resources -------------------------------------------------------------------------
    def crd_resources(self) -> list[Resource]:
        out: list[Resource] = []
        for crd in self._listed(CRDS, CRDS.list_prefix(self.prefix, ""))[0]:
            out.extend(from_crd(crd))
        return out

    def resources(self) -> list[Resource]:
        return [*BUILTIN, *self.crd_resources()]

    def resolve(self, group: str, version: str, name: str) -> Resource | None:
        found = builtin(group, version, name)
        if found is None:
            found = next(
                (r for r in self.crd_resources() if (r.group, r.version, r.name) == (group, version, name)),
                None,
            )
        return found

    # ---- encoding ----------------------------------------------------------------------------
    def _decode(self, res: Resource, kv: KV) -> Obj:
        obj = json.loads(self.encryption.decrypt(res, kv.key, kv.value))
        if not isinstance(obj, dict):
            raise ValueError(f"{kv.key}: stored value is not a JSON object")
        obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        return dict(obj)

    def _encode(self, res: Resource, key: str, obj: Obj) -> bytes:
        stored = dict(obj)
        meta = dict(stored.get("metadata") or {})
        meta.pop("resourceVersion", None)
        meta.pop("selfLink", None)
        stored["metadata"] = meta
        return self.encryption.encrypt(res, key, json.dumps(stored, separators=(",", ":")).encode())

    # ---- reads -------------------------------------------------------------------------------
    def read(self, res: Resource, namespace: str, name: str) -> tuple[Obj, KV]:
        kv = self.storage.get(res.key(self.prefix, namespace, name))
        if kv is None:
            raise status.not_found(res, name)
        return self._decode(res, kv), kv

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        return self.read(res, namespace, name)[0]

    def items(self, res: Resource, namespace: str = "", *preds: Predicate) -> tuple[list[Obj], int]:
        """The stored objects (those matching ``preds``) and the store revision of the read.

        The objects are shared with other callers (``listcache``): read them, never modify them.
        """
        objs, rev = self._listed(res, res.list_prefix(self.prefix, namespace))
        return [o for o in objs if all(p(o) for p in preds)], rev

    def _listed(self, res: Resource, prefix: str) -> tuple[list[Obj], int]:
        """Every object under ``prefix``, decoded; from memory while nothing there changed."""
        return self._lists.listed((prefix, res.api_version, res.kind), lambda kv: self._decode(res, kv))

    def list(self, res: Resource, namespace: str = "", *preds: Predicate) -> Obj:
        objs, rev = self.items(res, namespace, *preds)
        return {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(rev)},
            "items": objs,
        }

    # ---- writes ------------------------------------------------------------------------------
    def _check_body(self, res: Resource, obj: Any, namespace: str) -> Obj:
        if not isinstance(obj, dict):
            raise status.bad_request(f"the body of the request is not a {res.kind} object")
        if obj.get("kind") not in (None, res.kind):
            raise status.bad_request(
                f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({res.kind})"
            )
        if obj.get("apiVersion") not in (None, res.api_version):
            msg = (
                f"the API version in the data ({obj.get('apiVersion')}) does not match "
                f"the expected API version ({res.api_version})"
            )
            raise status.bad_request(msg)
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return dict(obj)

    def create(
        self, res: Resource, namespace: str, body: Any, user: Any = None, dry_run: bool = False
    ) -> Obj:
        obj = self._check_body(res, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise status.invalid(
                    res, "", "metadata.name", "Required value: name or generateName is required"
                )
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta["name"]
        if err := _name_error(res, name):
            raise status.invalid(res, name, "metadata.name", f'Invalid value: "{name}": {err}')
        if res.namespaced:
            self.read(by_ns(), "", namespace)  # NamespaceLifecycle: 404 namespaces "x" not found
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = kubetime.stamp()
        if res.generation:
            meta["generation"] = 1
        if "status" in res.subresources and res.status_on_create == "clear":
            obj.pop("status", None)
        prepare_create(self, res, obj, user)
        key = res.key(self.prefix, namespace, name)
        if dry_run:
            return obj
        try:
            rev = self.storage.create(key, self._encode(res, key, obj))
        except KeyExists:
            raise status.already_exists(res, name) from None
        meta["resourceVersion"] = str(rev)
        return obj

    def write_update(self, res: Resource, kv: KV, old: Obj, new: Obj, subresource: str, dry_run: bool) -> Obj:
        """Apply update rules to ``new`` (read at ``kv``) and write it if anything changed."""
        name = old["metadata"]["name"]
        if str(new["metadata"].get("resourceVersion") or kv.mod_revision) != str(kv.mod_revision):
            raise status.conflict(res, name)
        if subresource == "status" and "status" in res.subresources:
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            new = merged
        else:
            for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if k in old["metadata"]:
                    new["metadata"][k] = old["metadata"][k]
                else:
                    new["metadata"].pop(k, None)
            if "status" in res.subresources and subresource == "":
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if "generation" in old["metadata"] and _spec(new) != _spec(old):
                new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        prepare_update(self, res, new, old, subresource)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old or dry_run:
            return new
        key = kv.key
        try:
            rev = self.storage.update(key, self._encode(res, key, new), kv.mod_revision)
        except RevisionMismatch:
            raise status.conflict(res, name) from None
        new["metadata"]["resourceVersion"] = str(rev)
        return new

    def update(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        new = self._check_body(res, body, namespace)
        if new["metadata"].get("name") != name:
            msg = (
                f"the name of the object ({new['metadata'].get('name')}) "
                f"does not match the name on the URL ({name})"
            )
            raise status.bad_request(msg)
        old, kv = self.read(res, namespace, name)
        return self.write_update(res, kv, old, new, subresource, dry_run)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: bytes,
        content_type: str,
        subresource: str = "",
        field_manager: str = "",
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Returns the patched object and whether it was created (server-side apply only)."""
        ctype = content_type.split(";")[0].strip()
        if ctype not in PATCH_TYPES:
            raise status.unsupported_media(content_type)
        patch = _parse_patch(body, ctype)
        if ctype == "application/apply-patch+yaml" and not field_manager:
            raise status.bad_request(
                "PATCH request is missing the fieldManager parameter (required for apply)"
            )
        for _attempt in range(5):
            try:
                old, kv = self.read(res, namespace, name)
            except ApiStatus as exc:
                if exc.code != 404 or ctype != "application/apply-patch+yaml" or subresource:
                    raise
                return self._apply_create(res, namespace, name, patch, field_manager, dry_run), True
            if ctype == "application/json-patch+json":
                new = json_patch(old, patch)
            elif ctype == "application/merge-patch+json":
                new = merge_patch(old, patch)
            else:
                new = strategic_merge(old, patch)
                if ctype == "application/apply-patch+yaml":
                    _record_apply(new, field_manager, res.api_version)
            if not isinstance(new, dict):
                raise status.bad_request("the patch did not produce an object")
            new = self._check_body(res, new, namespace)
            if new["metadata"].get("name") != name:
                raise status.bad_request("the patch may not change metadata.name")
            explicit_rv = isinstance(patch, dict) and "resourceVersion" in (patch.get("metadata") or {})
            try:
                return self.write_update(res, kv, old, new, subresource, dry_run), False
            except ApiStatus as exc:
                if exc.reason != "Conflict" or explicit_rv:
                    raise
        raise status.conflict(res, name)

    def _apply_create(
        self, res: Resource, namespace: str, name: str, obj: Any, manager: str, dry_run: bool
    ) -> Obj:
        if not isinstance(obj, dict) or (obj.get("metadata") or {}).get("name") != name:
            raise status.bad_request(
                "an applied object must carry metadata.name equal to the name on the URL"
            )
        body = strategic_merge({}, obj)
        _record_apply(body, manager, res.api_version)
        return self.create(res, namespace, body, dry_run=dry_run)

    def delete(
        self, res: Resource, namespace: str, name: str, options: Obj | None = None, dry_run: bool = False
    ) -> Obj:
        old, kv = self.read(res, namespace, name)
        pre = (options or {}).get("preconditions") or {}
        for field, have in (("uid", old["metadata"].get("uid")), ("resourceVersion", str(kv.mod_revision))):
            want = pre.get(field)
            if want and want != have:
                label = "UID" if field == "uid" else "ResourceVersion"
                why = f"Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
                raise status.conflict(res, name, why)
        if res.name == "namespaces" and name in ("default", "kube-system", "kube-public"):
            raise ApiStatus(
                403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted'
            )
        if dry_run:
            return old
        try:
            self.storage.delete(kv.key, kv.mod_revision)
        except RevisionMismatch:
            raise status.conflict(res, name) from None
        if res.name == "namespaces":
            self._purge_namespace(name)
            old.setdefault("status", {})["phase"] = "Terminating"
            old["metadata"]["deletionTimestamp"] = kubetime.stamp()
        return old

    def _purge_namespace(self, namespace: str) -> None:
        """What the namespace controller does on Terminating, done at once: delete every object in it."""
        seen: set[str] = set()
        for res in self.resources():
            if not res.namespaced or res.storage_path in seen:
                continue
            seen.add(res.storage_path)
            kvs, _ = self.storage.list(res.list_prefix(self.prefix, namespace))
            for kv in kvs:
                self.storage.delete(kv.key)


def by_ns() -> Resource:
    found = builtin("", "v1", "namespaces")
    assert found is not None
    return found


def _spec(obj: Obj) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _parse_patch(body: bytes, ctype: str) -> Any:
    try:
        if ctype == "application/apply-patch+yaml":
            return yaml.safe_load(body.decode())
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise status.bad_request(f"error decoding patch: {exc}") from None


def _record_apply(obj: Obj, manager: str, api_version: str) -> None:
    """A minimal managedFields entry for the manager (field sets are not tracked)."""
    meta = obj.setdefault("metadata", {})
    entries = [
        e
        for e in meta.get("managedFields") or []
        if e.get("manager") != manager or e.get("operation") != "Apply"
    ]
    entries.append(
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": kubetime.stamp(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
    )
    meta["managedFields"] = entries
