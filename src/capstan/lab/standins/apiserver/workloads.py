"""Workload controllers of the controller-manager stand-in: Deployment, ReplicaSet, DaemonSet, GC.

SIMPLIFICATIONS (documented for the lab README): a Deployment change makes a new ReplicaSet at full
scale and scales the old ones to 0 at once (no surge/unavailable pacing); ReplicaSets create pods
(Pending, no node) for the scheduler stand-in to place and delete surplus pods; DaemonSets create one
pod per eligible node (by the node's taints, as the real controller: not by its readiness) pinned with
node affinity on ``metadata.name`` and tolerating the taints the real DaemonSet controller adds, and the
scheduler binds it there (a daemon that tolerates ``not-ready``, as CNI agents do, lands on a NotReady
node); the garbage collector deletes ReplicaSets and pods whose controller owner
is gone. Nothing runs containers: a pod "runs" when the scheduler stand-in marks it so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ..common.client import ApiError, KubeClient
from .eviction import healthy
from .scheduling import eligible

log = logging.getLogger("kube-controller-manager")
Obj = dict[str, Any]
DS_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATIONS = [
    {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"},
]


def _owner(obj: Obj, kind: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def _live(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _ns_path(group_path: str, ns: str, plural: str) -> str:
    return f"{group_path}/namespaces/{ns}/{plural}"


def _set_status(api: KubeClient, path: str, obj: Obj, status: Obj) -> None:
    current = obj.get("status") or {}
    if all(current.get(k) == v for k, v in status.items()):
        return
    api.patch(path + "/status", {"status": status})


class Workloads:
    def __init__(self, api: KubeClient) -> None:
        self.api = api

    def sync(self) -> None:
        pods = self.api.items("/api/v1/pods")
        nodes = self.api.items("/api/v1/nodes")
        deployments = self.api.items("/apis/apps/v1/deployments")
        replicasets = self.api.items("/apis/apps/v1/replicasets")
        for d in deployments:
            self._deployment(d, replicasets)
        replicasets = self.api.items("/apis/apps/v1/replicasets")
        for rs in replicasets:
            self._replicaset(rs, pods)
        for ds in self.api.items("/apis/apps/v1/daemonsets"):
            self._daemonset(ds, pods, nodes)
        self._collect_garbage(pods, replicasets, deployments)

    # ---- Deployment ----------------------------------------------------------------------------
    def _deployment(self, d: Obj, replicasets: list[Obj]) -> None:
        meta, spec = d["metadata"], d.get("spec") or {}
        ns, uid = meta["namespace"], meta["uid"]
        template = spec.get("template") or {}
        h = template_hash(template)
        name = f"{meta['name']}-{h}"
        owned = [rs for rs in replicasets if controller_uid(rs) == uid]
        base = _ns_path("/apis/apps/v1", ns, "replicasets")
        want = int(spec.get("replicas", 1))
        current = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
        if current is None:
            tmpl = json.loads(json.dumps(template))
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            selector = json.loads(json.dumps(spec.get("selector") or {}))
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            rs: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": tmpl["metadata"]["labels"],
                    "ownerReferences": [_owner(d, "Deployment")],
                },
                "spec": {"replicas": want, "selector": selector, "template": tmpl},
            }
            try:
                current = self.api.post(base, rs)
            except ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise
        elif int((current.get("spec") or {}).get("replicas", 0)) != want:
            self.api.patch(f"{base}/{name}", {"spec": {"replicas": want}})
        for old in owned:
            if old["metadata"]["name"] != name and int((old.get("spec") or {}).get("replicas", 0)) != 0:
                self.api.patch(f"{base}/{old['metadata']['name']}", {"spec": {"replicas": 0}})
        new_status = (current or {}).get("status") or {}
        totals = [(rs.get("status") or {}) for rs in owned]
        ready = sum(int(s.get("readyReplicas", 0)) for s in totals)
        status: Obj = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": sum(int(s.get("replicas", 0)) for s in totals),
            "updatedReplicas": int(new_status.get("replicas", 0)),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(want - ready, 0),
        }
        path = f"{_ns_path('/apis/apps/v1', ns, 'deployments')}/{meta['name']}"
        _set_status(self.api, path, d, status)

    # ---- ReplicaSet ----------------------------------------------------------------------------
    def _replicaset(self, rs: Obj, pods: list[Obj]) -> None:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        ns = meta["namespace"]
        mine = [p for p in pods if controller_uid(p) == meta["uid"] and _live(p)]
        want = int(spec.get("replicas", 1))
        pods_path = _ns_path("/api/v1", ns, "pods")
        template = spec.get("template") or {}
        for _ in range(want - len(mine)):
            tmeta = template.get("metadata") or {}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{meta['name']}-",
                    "namespace": ns,
                    "labels": dict(tmeta.get("labels") or {}),
                    "annotations": dict(tmeta.get("annotations") or {}),
                    "ownerReferences": [_owner(rs, "ReplicaSet")],
                },
                "spec": template.get("spec") or {},
            }
            mine.append(self.api.post(pods_path, pod))
        if len(mine) > want:
            mine.sort(key=lambda p: (healthy(p), bool((p.get("spec") or {}).get("nodeName"))))
            for p in mine[: len(mine) - want]:
                self._delete(f"{pods_path}/{p['metadata']['name']}")
            mine = mine[len(mine) - want :]
        ready = sum(1 for p in mine if healthy(p))
        status = {
            "replicas": len(mine),
            "fullyLabeledReplicas": len(mine),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": meta.get("generation", 1),
        }
        _set_status(self.api, f"{_ns_path('/apis/apps/v1', ns, 'replicasets')}/{meta['name']}", rs, status)

    # ---- DaemonSet -----------------------------------------------------------------------------
    def _daemonset(self, ds: Obj, pods: list[Obj], nodes: list[Obj]) -> None:
        meta, spec = ds["metadata"], ds.get("spec") or {}
        ns = meta["namespace"]
        template = spec.get("template") or {}
        pod_spec = dict(template.get("spec") or {})
        added = DS_TOLERATIONS + (HOST_NETWORK_TOLERATIONS if pod_spec.get("hostNetwork") else [])
        pod_spec["tolerations"] = list(pod_spec.get("tolerations") or []) + added
        mine = [p for p in pods if controller_uid(p) == meta["uid"] and _live(p)]
        by_node: dict[str, Obj] = {}
        for p in mine:
            target = _pinned_node(p)
            if target in by_node:
                self._delete(f"{_ns_path('/api/v1', ns, 'pods')}/{p['metadata']['name']}")
            else:
                by_node[target] = p
        wanted = {n["metadata"]["name"] for n in nodes if eligible({"spec": pod_spec}, n)}
        for node in sorted(wanted - set(by_node)):
            pod_spec_node = dict(pod_spec)
            pod_spec_node["affinity"] = _pin(node)
            tmeta = template.get("metadata") or {}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{meta['name']}-",
                    "namespace": ns,
                    "labels": dict(tmeta.get("labels") or {}),
                    "ownerReferences": [_owner(ds, "DaemonSet")],
                },
                "spec": pod_spec_node,
            }
            by_node[node] = self.api.post(_ns_path("/api/v1", ns, "pods"), pod)
        for node, p in list(by_node.items()):
            if node not in wanted:
                self._delete(f"{_ns_path('/api/v1', ns, 'pods')}/{p['metadata']['name']}")
                del by_node[node]
        ready = sum(1 for p in by_node.values() if healthy(p))
        status = {
            "desiredNumberScheduled": len(wanted),
            "currentNumberScheduled": len(by_node),
            "updatedNumberScheduled": len(by_node),
            "numberReady": ready,
            "numberAvailable": ready,
            "numberMisscheduled": 0,
            "observedGeneration": meta.get("generation", 1),
        }
        _set_status(self.api, f"{_ns_path('/apis/apps/v1', ns, 'daemonsets')}/{meta['name']}", ds, status)

    # ---- garbage collection --------------------------------------------------------------------
    def _collect_garbage(self, pods: list[Obj], replicasets: list[Obj], deployments: list[Obj]) -> None:
        owners = {o["metadata"]["uid"] for o in replicasets + deployments}
        owners |= {o["metadata"]["uid"] for o in self.api.items("/apis/apps/v1/daemonsets")}
        managed_kinds = {"ReplicaSet", "Deployment", "DaemonSet"}
        for obj, plural, group in [(p, "pods", "/api/v1") for p in pods] + [
            (r, "replicasets", "/apis/apps/v1") for r in replicasets
        ]:
            refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
            if refs and refs[0].get("kind") in managed_kinds and refs[0].get("uid") not in owners:
                meta = obj["metadata"]
                self._delete(f"{_ns_path(group, meta['namespace'], plural)}/{meta['name']}")

    def _delete(self, path: str) -> None:
        try:
            self.api.delete(path)
        except ApiError as exc:
            if exc.status != 404:
                raise


def _pin(node: str) -> Obj:
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def _pinned_node(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return ""
