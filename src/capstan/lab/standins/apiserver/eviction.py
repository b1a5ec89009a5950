"""The Eviction subresource and the PodDisruptionBudget arithmetic behind it.

Why computed here: the real apiserver trusts ``status.disruptionsAllowed`` written by the disruption
controller; the stand-in has no such controller, so it counts the healthy pods itself at eviction time
(pods selected by the budget, Running, condition Ready=True, not being deleted) and applies the same
rules: an eviction is refused with 429 TooManyRequests while it would leave fewer healthy pods than the
budget requires. Evictions are serialised by a lock, which stands in for the real optimistic update of
the budget's status (enough for one API server; two stand-in API servers evicting at once could both
pass a budget of one).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from . import status
from .registry import Registry
from .resources import by_name, core
from .selectors import labels_of, matches
from .status import ApiStatus

Obj = dict[str, Any]
_LOCK = threading.Lock()
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def healthy(pod: Obj) -> bool:
    st = pod.get("status") or {}
    if st.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])


def _scaled(value: Any, total: int, what: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(int(value[:-1]) * total / 100)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise status.bad_request(f"invalid {what} {value!r}: must be an integer or a percentage")


def _expected(selected: list[Obj], scales: dict[str, int]) -> int:
    """Pods the budget expects: each controller's replicas (ReplicaSet, StatefulSet), bare pods one each."""
    owners: dict[str, int] = {}
    bare = 0
    for p in selected:
        ref = next((r for r in p["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if ref is not None and ref.get("uid") in scales:
            owners[ref["uid"]] = scales[ref["uid"]]
        else:
            bare += 1
    return sum(owners.values()) + bare


def budget(pdb: Obj, pods: list[Obj], scales: dict[str, int] | None = None) -> dict[str, int]:
    """expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed for a budget over ``pods``.

    ``scales`` maps controller uid -> spec.replicas, so that a pod already evicted (and not yet
    replaced) still counts as expected, as the real disruption controller counts it.
    """
    spec = pdb.get("spec") or {}
    nothing = {"matchLabels": {"\0": "none"}}
    selected = [p for p in pods if matches(spec.get("selector") or nothing, labels_of(p))]
    expected = _expected(selected, scales or {})
    current = sum(1 for p in selected if healthy(p))
    if "maxUnavailable" in spec:
        desired = max(expected - _scaled(spec["maxUnavailable"], expected, "maxUnavailable"), 0)
    else:
        desired = _scaled(spec.get("minAvailable", 1), expected, "minAvailable")
    return {
        "expectedPods": expected,
        "currentHealthy": current,
        "desiredHealthy": desired,
        "disruptionsAllowed": max(current - desired, 0),
    }


def _check_body(body: Any, name: str) -> Obj:
    if not isinstance(body, dict) or body.get("kind") != "Eviction":
        raise status.bad_request("the body of an eviction must be an Eviction object")
    if body.get("apiVersion") not in ("policy/v1", "policy/v1beta1"):
        raise status.bad_request(f"unsupported Eviction apiVersion {body.get('apiVersion')!r}")
    if (body.get("metadata") or {}).get("name") != name:
        raise status.bad_request("name in URL does not match name in Eviction object")
    return body


def evict(reg: Registry, namespace: str, name: str, body: Any) -> Obj:
    """Delete the pod unless a budget forbids it; the answer is a Success Status (201)."""
    eviction = _check_body(body, name)
    pods, pdbs_res = core("pods"), by_name("policy", "poddisruptionbudgets")
    with _LOCK:
        pod = reg.get(pods, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        ignore_budget = phase in ("Succeeded", "Failed", "Pending") or bool(
            pod["metadata"].get("deletionTimestamp")
        )
        if not ignore_budget:
            labels = labels_of(pod)
            pdbs, _ = reg.items(pdbs_res, namespace)
            pdbs = [
                b
                for b in pdbs
                if (b.get("spec") or {}).get("selector") and matches(b["spec"]["selector"], labels)
            ]
            if len(pdbs) > 1:
                msg = (
                    "This pod has more than one PodDisruptionBudget, "
                    "which the eviction subresource does not support."
                )
                raise ApiStatus(500, "InternalError", msg)
            if pdbs:
                _enforce(reg, pdbs[0], pod, namespace)
        reg.delete(pods, namespace, name, eviction.get("deleteOptions") or {})
    return status.success(code=201)


def _enforce(reg: Registry, pdb: Obj, pod: Obj, namespace: str) -> None:
    all_pods, _ = reg.items(core("pods"), namespace)
    scales: dict[str, int] = {}
    for plural in ("replicasets", "statefulsets"):
        for owner in reg.items(by_name("apps", plural), namespace)[0]:
            scales[owner["metadata"]["uid"]] = int((owner.get("spec") or {}).get("replicas", 1))
    numbers = budget(pdb, all_pods, scales)
    if numbers["disruptionsAllowed"] >= 1:
        return
    if not healthy(pod) and numbers["currentHealthy"] >= numbers["desiredHealthy"]:
        return  # an unhealthy pod does not count against a budget that is met
    cause = (
        f"The disruption budget {pdb['metadata']['name']} needs {numbers['desiredHealthy']} healthy pods "
        f"and has {numbers['currentHealthy']} currently"
    )
    details = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    raise ApiStatus(429, "TooManyRequests", f"{VIOLATION} {cause}", details)
