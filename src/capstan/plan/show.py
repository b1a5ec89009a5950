"""Presenting a plan: a rich tree for people, JSON for machines."""

from __future__ import annotations

import json
from typing import Any

from rich.tree import Tree

from capstan.plan.phases import CONCURRENCY_TEXT, PlannedPhase
from capstan.spec.models import Cluster


def plan_dict(cluster: Cluster, plan: list[PlannedPhase]) -> dict[str, Any]:
    return {
        "cluster": cluster.name,
        "kubernetesVersion": cluster.spec.kubernetes.version,
        "phases": [
            {
                "step": i,
                "id": pp.phase.id,
                "title": pp.phase.title,
                "concurrency": pp.phase.concurrency,
                "hosts": list(pp.hosts),
                "skipped": pp.skipped,
                "summary": pp.phase.summary,
            }
            for i, pp in enumerate(plan, 1)
        ],
    }


def plan_json(cluster: Cluster, plan: list[PlannedPhase]) -> str:
    return json.dumps(plan_dict(cluster, plan), indent=2)


def plan_tree(cluster: Cluster, plan: list[PlannedPhase]) -> Tree:
    s = cluster.spec
    cpe = s.control_plane_endpoint
    endpoint = f"{cpe.local_lb} on each node" if cpe.mode == "local-lb" else f"{cpe.mode} {cpe.address}"
    root = Tree(
        f"[bold]create-cluster[/bold] {cluster.name}: Kubernetes {s.kubernetes.version}, "
        f"{len(cluster.hosts)} hosts, {s.network.plugin}, {s.container_runtime.name}, "
        f"kube-proxy {s.kubernetes.proxy_mode}, endpoint {endpoint}"
    )
    for i, pp in enumerate(plan, 1):
        how = CONCURRENCY_TEXT[pp.phase.concurrency]
        label = f"[bold]{i:>2}. {pp.phase.title}[/bold] [dim]({pp.phase.id})[/dim] - {how}"
        if pp.skipped:
            label += " [yellow]- skipped: no hosts[/yellow]"
        node = root.add(label)
        node.add(f"[dim]{pp.phase.summary}[/dim]")
        if pp.hosts:
            sep = " -> " if pp.phase.concurrency == "serial" else ", "
            node.add(sep.join(pp.hosts))
    return root


def plan_text(cluster: Cluster, plan: list[PlannedPhase]) -> str:
    """Plain text of the tree (used in tests and when stdout is not a terminal)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(width=120, no_color=True, file=buf).print(plan_tree(cluster, plan))
    return buf.getvalue()
