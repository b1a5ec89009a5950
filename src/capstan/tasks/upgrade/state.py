"""What the cluster says before an upgrade: each Node's kubelet version and readiness, the version in
kubeadm-config, and the orchestrator-side record of the steps taken.

The record (``record``) is how a run shows its order of operations: one line ``upgrade: <step> <host>``
printed (so it is in the flow run's logs) and appended to a list in the session, which the flow returns
in its summary. It is a report, not state: nothing reads it to decide anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import yaml
from lightkube import ApiError
from lightkube.resources.core_v1 import ConfigMap, Node

from capstan.kube import ApiAccess, KubeError, node_view
from capstan.kube.access import read
from capstan.tasks.session import Session

STEPS = "upgrade:steps"
SETTINGS = "upgrade:settings"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    kubelet: str
    ready: bool
    reason: str


def read_nodes(access: ApiAccess) -> dict[str, NodeInfo]:
    """Every Node's kubelet version and Ready condition, by name."""
    try:
        items = read(access, lambda c: [n.to_dict() for n in c.list(Node)], timeout=15.0)
    except (httpx2.HTTPError, ApiError) as exc:
        raise KubeError(f"API {access.server}: cannot list Nodes: {type(exc).__name__}: {exc}") from None
    out = {}
    for item in items:
        v = node_view(item)
        out[v.name] = NodeInfo(v.name, v.kubelet_version, v.ready, v.reason)
    return out


def cluster_version(access: ApiAccess) -> str | None:
    """``kubernetesVersion`` of the ClusterConfiguration in kube-system/kubeadm-config (None if absent)."""
    try:
        cm = read(access, lambda c: c.get(ConfigMap, "kubeadm-config", namespace="kube-system"), timeout=15.0)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise KubeError(f"API {access.server}: cannot read kube-system/kubeadm-config: {exc}") from None
    except httpx2.HTTPError as exc:
        raise KubeError(f"API {access.server}: cannot read kube-system/kubeadm-config: {exc}") from None
    return parse_cluster_version(cm.data or {})


def parse_cluster_version(data: Mapping[str, str]) -> str | None:
    """The version kubeadm recorded (``data.ClusterConfiguration``), or None when it says none."""
    try:
        doc: Any = yaml.safe_load(data.get("ClusterConfiguration") or "")
    except yaml.YAMLError:
        return None
    if not isinstance(doc, dict) or not doc.get("kubernetesVersion"):
        return None
    return str(doc["kubernetesVersion"])


def health_problems(nodes: Mapping[str, NodeInfo], expected: list[str]) -> list[str]:
    """Nodes of the spec that are missing or NotReady, one line each."""
    problems = []
    for name in expected:
        info = nodes.get(name)
        if info is None:
            problems.append(f"{name}: not registered as a Node")
        elif not info.ready:
            problems.append(f"{name}: NotReady" + (f" ({info.reason})" if info.reason else ""))
    return problems


def record(session: Session, step: str, host: str) -> None:
    """Note one step of the upgrade, in order (printed and kept for the summary)."""
    line = f"{step} {host}"
    with session.exclusive(STEPS):
        steps = session.memo.setdefault(STEPS, [])
        assert isinstance(steps, list)
        steps.append(line)
    print(f"upgrade: {line}", flush=True)


def steps(session: Session) -> list[str]:
    value = session.memo.get(STEPS, [])
    assert isinstance(value, list)
    return list(value)
