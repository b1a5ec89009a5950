"""kubeadm's calls to the API: waiting for it, create-or-update, reading the cluster's config, nodes.

Every wait polls with a deadline (kubeadm's ``timeouts``); nothing sleeps for a fixed time to be safe.
"""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import yaml

from capstan.lab.standins.kubeadm.base import CONTROL_PLANE_LABEL, EXCLUDE_LB_LABEL, KubeadmError, say
from capstan.lab.standins.kubeadm.rest import JSON, Api, RestError

_GROUP_PATHS = {"v1": "/api/v1"}
_PLURALS = {
    "ConfigMap": "configmaps", "Secret": "secrets", "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "Role": "roles", "RoleBinding": "rolebindings", "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings", "DaemonSet": "daemonsets", "Deployment": "deployments",
}  # fmt: skip
KUBEADM_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
KUBELET_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kubelet-config"


def collection(obj: JSON) -> str:
    api_version = str(obj["apiVersion"])
    base = _GROUP_PATHS.get(api_version, f"/apis/{api_version}")
    ns = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{ns}/{_PLURALS[obj['kind']]}" if ns else f"{base}/{_PLURALS[obj['kind']]}"


def item_path(obj: JSON) -> str:
    return f"{collection(obj)}/{obj['metadata']['name']}"


def as_obj(value: Any) -> JSON:
    """An API answer as an object (``{}`` for a text answer such as /readyz's ``ok``)."""
    return value if isinstance(value, dict) else {}


def apply(api: Api, obj: JSON) -> JSON:
    """Create, or replace when it exists (keeping its resourceVersion): kubeadm's CreateOrUpdate."""
    try:
        return as_obj(api.post(collection(obj), obj))
    except RestError as exc:
        if exc.status != 409:
            raise
    current = as_obj(api.get(item_path(obj)))
    meta = {**obj["metadata"], "resourceVersion": current.get("metadata", {}).get("resourceVersion")}
    return as_obj(api.put(item_path(obj), {**obj, "metadata": meta}))


def apply_all(api: Api, objs: list[JSON], phase: str) -> None:
    for obj in objs:
        try:
            apply(api, obj)
        except RestError as exc:
            raise KubeadmError(
                f"unable to create {obj['kind']} {obj['metadata']['name']}: {exc}", phase
            ) from None


def retry(fn: Callable[[], JSON], deadline: float, what: str, phase: str, interval: float = 0.5) -> JSON:
    """Call ``fn`` until it succeeds or ``deadline`` passes (then fail with the last error)."""
    last = ""
    while True:
        try:
            return fn()
        except RestError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise KubeadmError(f"timed out waiting for {what}: {last}", phase)
        time.sleep(interval)


def wait_https_ok(url: str, deadline: float, what: str, phase: str) -> None:
    """Poll an HTTPS health endpoint (certificate not verified, like kubeadm's control-plane check)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise KubeadmError(f"{what} is not healthy after the deadline: {url}: {last}", phase)
        time.sleep(0.5)


def wait_http_ok(url: str, deadline: float, what: str, phase: str) -> None:
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise KubeadmError(
                f"The HTTP call equal to 'curl -sSL {url}' failed: {last}. It seems like the kubelet isn't "
                "running or healthy.",
                phase,
            )
        time.sleep(0.5)


def read_cluster_config(api: Api, phase: str) -> dict[str, Any]:
    """The ClusterConfiguration stored in kubeadm-config (what join and upgrade work from)."""
    try:
        cm = api.get(KUBEADM_CONFIG)
    except RestError as exc:
        raise KubeadmError(f"unable to fetch the kubeadm-config ConfigMap: {exc}", phase) from None
    text = (cm.get("data") or {}).get("ClusterConfiguration")
    doc = yaml.safe_load(text) if isinstance(text, str) else None
    if not isinstance(doc, dict):
        raise KubeadmError("the kubeadm-config ConfigMap holds no ClusterConfiguration", phase)
    return doc


def read_kubelet_config(api: Api, phase: str) -> dict[str, Any]:
    try:
        cm = api.get(KUBELET_CONFIG)
    except RestError as exc:
        raise KubeadmError(f"unable to fetch the kubelet-config ConfigMap: {exc}", phase) from None
    doc = yaml.safe_load((cm.get("data") or {}).get("kubelet") or "")
    if not isinstance(doc, dict):
        raise KubeadmError("the kubelet-config ConfigMap holds no KubeletConfiguration", phase)
    return doc


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{name}"


def node_ready(node: JSON) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def mark_control_plane(api: Api, name: str, taints: list[JSON], deadline: float) -> None:
    """Label (and taint) this node as a control plane once its kubelet has registered it."""
    say(
        f"[mark-control-plane] Marking the node {name} as control-plane by adding the labels: "
        f"[{CONTROL_PLANE_LABEL} {EXCLUDE_LB_LABEL}]"
    )
    node = retry(
        lambda: api.get(node_path(name)), deadline, f"the Node {name} to register", "mark-control-plane"
    )
    labels = {**(node.get("metadata", {}).get("labels") or {}), CONTROL_PLANE_LABEL: "", EXCLUDE_LB_LABEL: ""}
    have = list((node.get("spec") or {}).get("taints") or [])
    keys = {(t.get("key"), t.get("effect")) for t in have}
    wanted = [{k: v for k, v in t.items() if k in ("key", "value", "effect")} for t in taints]
    merged = have + [t for t in wanted if (t.get("key"), t.get("effect")) not in keys]
    if wanted:
        say(
            f"[mark-control-plane] Marking the node {name} as control-plane by adding the taints "
            f"{[t['key'] + ':' + t['effect'] for t in wanted]}"
        )
    patch = {"metadata": {"labels": labels}, "spec": {"taints": merged}}
    retry(
        lambda: api.patch(node_path(name), patch),
        deadline,
        f"the Node {name} to be marked",
        "mark-control-plane",
    )
