"""Where a pod may run: cordon, taints and tolerations, nodeSelector, required node affinity.

Shared by the scheduler stand-in (placing Pending pods) and the DaemonSet controller stand-in (which
nodes get a daemon pod). Scoring is the scheduler's business; this module only filters.

Readiness is not a filter, as in the real scheduler: a node that is not Ready carries the
``node.kubernetes.io/not-ready`` (or ``unreachable``) NoSchedule taint, put there by the API server when
the Node is created and kept in step with its Ready condition by the node lifecycle controller, so
only pods that tolerate it (DaemonSet pods of CNI plugins and kube-proxy do) land there.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expr_ok(expr: Obj, value: str | None) -> bool:
    op, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def _term_ok(term: Obj, node: Obj) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    name = (node.get("metadata") or {}).get("name")
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    ok_labels = all(_expr_ok(e, labels.get(e.get("key"))) for e in exprs)
    ok_fields = all(_expr_ok(f, name if f.get("key") == "metadata.name" else None) for f in fields)
    return ok_labels and ok_fields


def why_not(pod: Obj, node: Obj) -> str:
    """Why ``pod`` cannot go on ``node`` ("" when it can), in the scheduler's words."""
    spec, nspec = pod.get("spec") or {}, node.get("spec") or {}
    tolerations = list(spec.get("tolerations") or [])
    if nspec.get("unschedulable") and not tolerates(tolerations, UNSCHEDULABLE_TAINT):
        return "node(s) were unschedulable"
    for taint in nspec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return "node(s) didn't match Pod's node affinity/selector"
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms and not any(_term_ok(t, node) for t in terms):
        return "node(s) didn't match Pod's node affinity/selector"
    return ""


def eligible(pod: Obj, node: Obj) -> bool:
    return why_not(pod, node) == ""
