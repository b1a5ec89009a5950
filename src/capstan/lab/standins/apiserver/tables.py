"""Server-side printing: ``meta.k8s.io/v1`` Tables for ``kubectl get``.

Why the server prints: kubectl asks for ``as=Table`` and, since printing moved to the server, prints
only NAME and AGE for objects it receives as plain JSON; ``kubectl get nodes -o wide`` showing STATUS
and VERSION needs the node columns here. Columns follow the real printers for the kinds a lab cluster
shows (priority 1 = ``-o wide`` only); any other kind gets NAME and AGE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common import kubetime
from .resources import Resource

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority
Row = Callable[[Obj], list[Any]]


def _age(obj: Obj) -> str:
    created = kubetime.parse((obj.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if created is None else kubetime.age((kubetime.now() - created).total_seconds())


def _cond(obj: Obj, kind: str) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status", "Unknown"))
    return "Unknown"


def _node(o: Obj) -> list[Any]:
    st, spec, meta = o.get("status") or {}, o.get("spec") or {}, o.get("metadata") or {}
    state = "Ready" if _cond(o, "Ready") == "True" else "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(
        k.split("/", 1)[1] for k in meta.get("labels") or {} if k.startswith("node-role.kubernetes.io/")
    )
    info = st.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [
        meta.get("name"),
        state,
        ",".join(r for r in roles if r) or "<none>",
        _age(o),
        info.get("kubeletVersion", ""),
        addrs.get("InternalIP") or "<none>",
        addrs.get("ExternalIP") or "<none>",
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _pod(o: Obj) -> list[Any]:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    total = len(spec.get("containers") or [])
    statuses = st.get("containerStatuses")
    if statuses:
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    else:
        ready, restarts = (total if _cond(o, "Ready") == "True" else 0), 0
    phase = st.get("reason") or st.get("phase") or "Unknown"
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    gates = spec.get("readinessGates")
    return [
        o["metadata"]["name"],
        f"{ready}/{total}",
        phase,
        restarts,
        _age(o),
        st.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        f"0/{len(gates)}" if gates else "<none>",
    ]


def _deploy(o: Obj) -> list[Any]:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return [
        o["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        _age(o),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        ",".join(f"{k}={v}" for k, v in selector.items()),
    ]


def _simple(*paths: str) -> Row:
    def row(o: Obj) -> list[Any]:
        cells: list[Any] = [o["metadata"]["name"]]
        for p in paths:
            if p == "AGE":
                cells.append(_age(o))
                continue
            cur: Any = o
            for part in p.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            if p.endswith("data"):
                cur = len(cur or {})
            cells.append("<none>" if cur is None else cur)
        return cells

    return row


_NAME: Column = ("Name", "string", 0)
_AGE: Column = ("Age", "string", 0)
_TABLES: dict[tuple[str, str], tuple[list[Column], Row]] = {
    ("", "nodes"): (
        [_NAME, ("Status", "string", 0), ("Roles", "string", 0), _AGE, ("Version", "string", 0),
         ("Internal-IP", "string", 1), ("External-IP", "string", 1), ("OS-Image", "string", 1),
         ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
        _node,
    ),
    ("", "pods"): (
        [_NAME, ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0), _AGE,
         ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
         ("Readiness Gates", "string", 1)],
        _pod,
    ),
    ("apps", "deployments"): (
        [_NAME, ("Ready", "string", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0), _AGE,
         ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
        _deploy,
    ),
    ("apps", "replicasets"): (
        [_NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0), _AGE],
        _simple("spec.replicas", "status.replicas", "status.readyReplicas", "AGE"),
    ),
    ("apps", "daemonsets"): (
        [_NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0),
         ("Up-to-date", "integer", 0), ("Available", "integer", 0), _AGE],
        _simple("status.desiredNumberScheduled", "status.currentNumberScheduled", "status.numberReady",
                "status.updatedNumberScheduled", "status.numberAvailable", "AGE"),
    ),
    ("", "namespaces"): ([_NAME, ("Status", "string", 0), _AGE], _simple("status.phase", "AGE")),
    ("", "services"): (
        [_NAME, ("Type", "string", 0), ("Cluster-IP", "string", 0), _AGE],
        _simple("spec.type", "spec.clusterIP", "AGE"),
    ),
    ("", "configmaps"): ([_NAME, ("Data", "integer", 0), _AGE], _simple("data", "AGE")),
    ("", "secrets"): (
        [_NAME, ("Type", "string", 0), ("Data", "integer", 0), _AGE], _simple("type", "data", "AGE")
    ),
    ("policy", "poddisruptionbudgets"): (
        [_NAME, ("Min Available", "string", 0), ("Max Unavailable", "string", 0),
         ("Allowed Disruptions", "integer", 0), _AGE],
        _simple("spec.minAvailable", "spec.maxUnavailable", "status.disruptionsAllowed", "AGE"),
    ),
    ("coordination.k8s.io", "leases"): (
        [_NAME, ("Holder", "string", 0), _AGE], _simple("spec.holderIdentity", "AGE")
    ),
}  # fmt: skip


def _partial(obj: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(res: Resource, objs: list[Obj], resource_version: str, include_object: str = "") -> Obj:
    """The Table of ``objs`` (one row each) for ``kubectl get``."""
    columns, row = _TABLES.get((res.group, res.name), ([_NAME, _AGE], _simple("AGE")))
    defs = [
        {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n, "priority": p}
        for n, t, p in columns
    ]
    rows = []
    for o in objs:
        entry: Obj = {"cells": row(o)}
        if include_object != "None":
            entry["object"] = o if include_object == "Object" else _partial(o)
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    }
