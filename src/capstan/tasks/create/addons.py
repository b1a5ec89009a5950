"""The addons phase: the CNI, CoreDNS (+ nodelocaldns, its autoscaler) and metrics-server through the
API with server-side apply, right after the first control plane (before any join); and the nodes-ready
phase after the joins: every node Ready at the spec's version.

Both run once on the orchestrator against the first control plane's apiserver (``_kube.admin_access``).
The CNI manifest is the pinned upstream file, downloaded once and sha256-checked (``capstan.kube.cni``),
edited for the spec; the other addons are rendered by ``capstan.render.render_addons``. Only objects
the apply really changed count as changes, so a converged cluster reports 0.

The outcomes are attributed to the first control plane, whose apiserver received the objects.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
from lightkube import ApiError
from lightkube.resources.core_v1 import Node

from capstan.kube import ApiAccess, ApplyResult, KubeError, apply_objects, readiness_problems
from capstan.kube.cni import cni_objects
from capstan.render import render_addons
from capstan.tasks.create import _kube
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl
from capstan.tasks.session import Session

NODES_READY_TIMEOUT = 300.0
"""How long nodes may take to turn Ready once the CNI is applied (its agents start on every node)."""
APPLY_TIMEOUT = 30.0


def node_readiness(access: ApiAccess, names: list[str], version: str) -> list[str]:
    """Problems keeping ``names`` from being Ready at ``version`` (the API's error if it cannot say)."""
    try:
        with access.client(timeout=10.0) as client:
            nodes = [n.to_dict() for n in client.list(Node)]
    except (httpx2.HTTPError, ApiError) as exc:
        return [f"API {access.server}: {type(exc).__name__}: {exc}"]
    return readiness_problems(nodes, names, version)


@cluster_phase_impl("addons")
def addons_phase(session: Session) -> list[PhaseOutcome]:
    started = time.monotonic()
    cluster = session.cluster
    first = cluster.control_planes[0]
    objects = cni_objects(cluster, Path(cluster.spec.artifacts.cache_dir).expanduser())
    objects += render_addons(cluster)
    try:
        access = _kube.admin_access(session)
        with access.client(timeout=APPLY_TIMEOUT) as client:
            result = apply_objects(client, objects, dry_run=session.dry_run)
    except (KubeError, httpx2.HTTPError) as exc:
        if not session.dry_run:
            if isinstance(exc, KubeError):
                raise
            raise KubeError(f"API {access.server}: {type(exc).__name__}: {exc}") from None
        # a dry run before the cluster exists: everything would be applied
        result = ApplyResult(changed=[f"{o.get('kind')} {o['metadata'].get('name')}" for o in objects])
    note = f"{len(result.changed)} of {len(objects)} objects applied"
    if result.changed:
        note += ": " + ", ".join(result.changed[:10]) + (", ..." if len(result.changed) > 10 else "")
    return [
        PhaseOutcome(
            "addons",
            first.name,
            len(result.changed),
            len(result.unchanged),
            round(time.monotonic() - started, 3),
            note,
        )
    ]


def wait_nodes_ready(session: Session, names: list[str], what: str) -> None:
    """Until every node of ``names`` is Ready at the spec's version; KubeError after the timeout.
    Shared by create's nodes-ready and scale's new-nodes-ready phases."""
    access = _kube.admin_access(session)
    version = session.cluster.spec.kubernetes.version
    problem = _kube.wait_for(lambda: node_readiness(access, names, version), NODES_READY_TIMEOUT, what)
    if problem:
        raise KubeError(problem)


@cluster_phase_impl("nodes-ready")
def nodes_ready_phase(session: Session) -> list[PhaseOutcome]:
    """Never changes anything: waits until every node of the spec is Ready at the spec's version."""
    started = time.monotonic()
    cluster = session.cluster
    names = [h.name for h in cluster.nodes]
    note = f"{len(names)} nodes Ready at {cluster.spec.kubernetes.version}"
    if session.dry_run:
        note = "dry run: not waited for"
    else:
        wait_nodes_ready(session, names, "nodes Ready")
    first = cluster.control_planes[0]
    return [PhaseOutcome("nodes-ready", first.name, 0, 0, round(time.monotonic() - started, 3), note)]
