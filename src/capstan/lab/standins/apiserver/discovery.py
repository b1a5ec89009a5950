"""Discovery documents (/api, /apis, resource lists) and /version, all derived from the resource table.

Why the legacy format only: kubectl asks for aggregated discovery (apidiscovery.k8s.io/v2) first but
accepts the classic APIVersions/APIGroupList/APIResourceList documents when the server answers with
plain application/json, as older servers do; the tests check kubectl works against these.
"""

from __future__ import annotations

import platform
from collections import OrderedDict
from typing import Any

from .resources import Resource

Obj = dict[str, Any]
_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "approval": ["get", "patch", "update"],
    "finalize": ["update"],
}
_SUB_KINDS = {
    "eviction": ("policy", "v1", "Eviction", ["create"]),
    "binding": ("", "", "Binding", ["create"]),
    "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
}


def version_info(version: str) -> Obj:
    major, minor = [*version.split("."), "0"][:2]
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": f"v{version}",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "stand-in (python)",
        "compiler": "gc",
        "platform": f"linux/{machine}",
    }


def group_versions(resources: list[Resource]) -> OrderedDict[str, list[str]]:
    out: OrderedDict[str, list[str]] = OrderedDict()
    for r in resources:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


def api_versions(address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(resources: list[Resource]) -> Obj:
    groups = [_group(g, vs) for g, vs in group_versions(resources).items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(resources: list[Resource], name: str) -> Obj | None:
    versions = group_versions(resources).get(name)
    if not versions or not name:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(resources: list[Resource], group: str, version: str) -> Obj | None:
    mine = [r for r in resources if r.group == group and r.version == version]
    if not mine:
        return None
    entries: list[Obj] = []
    for r in mine:
        entry: Obj = {
            "name": r.name,
            "singularName": str(r.extra.get("singular") or r.singular),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            sub_entry: Obj = {"name": f"{r.name}/{sub}", "singularName": "", "namespaced": r.namespaced}
            if sub in _SUB_KINDS:
                g, v, kind, verbs = _SUB_KINDS[sub]
                if g:
                    sub_entry.update(group=g, version=v)
                sub_entry.update(kind=kind, verbs=verbs)
            else:
                sub_entry.update(kind=r.kind, verbs=_SUB_VERBS.get(sub, ["get", "patch", "update"]))
            entries.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_index(resources: list[Resource]) -> Obj:
    """The OpenAPI v3 index: one document per group-version, as /openapi/v3 lists them."""
    paths = {}
    for group, versions in group_versions(resources).items():
        for v in versions:
            gv = _gv_path(group, v)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}"}
    return {"paths": paths}


def openapi_v3_doc(resources: list[Resource], gv_path: str, version: str) -> Obj | None:
    """A skeleton OpenAPI v3 document: per kind, a PATCH operation that declares ``fieldValidation``.

    Why a skeleton: kubectl reads it only to learn that the server validates fields itself (so it
    skips client-side schema validation, which would need the full schemas). SIMPLIFICATION: the
    stand-in accepts ``fieldValidation=Strict`` but does not reject unknown fields.
    """
    mine = [r for r in resources if _gv_path(r.group, r.version) == gv_path]
    if not mine:
        return None
    paths: Obj = {}
    for r in mine:
        base = f"/{gv_path}/" + ("namespaces/{namespace}/" if r.namespaced else "") + r.name + "/{name}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        params = [
            {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for n in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        op = {
            "operationId": f"patch{r.kind}",
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        }
        paths[base] = {"patch": op}
    info = {"title": "Kubernetes (capstan lab stand-in)", "version": f"v{version}"}
    return {"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": {}}}
