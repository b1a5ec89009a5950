"""Phase 12, report: Prefect artifacts for people, and the admin kubeconfig for the operator.

The markdown and table artifacts carry counts, versions and durations only (never file contents). The
admin kubeconfig is copied from the first control plane (the cluster is the source of truth) with its
server rewritten to an address the orchestrator can reach: in local-lb mode the in-cluster endpoint is
127.0.0.1 on each node, which means nothing here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import yaml
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from capstan.errors import CommandFailed
from capstan.spec.models import Cluster
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl
from capstan.tasks.session import Session

ADMIN_CONF = "/etc/kubernetes/admin.conf"


def reachable_server(cluster: Cluster) -> str:
    cpe = cluster.spec.control_plane_endpoint
    if cpe.mode == "local-lb":
        return f"https://{cluster.control_planes[0].peer_ip}:{cluster.spec.kubernetes.apiserver_port}"
    host, port = cluster.endpoint
    return f"https://{host}:{port}"


def local_kubeconfig_path(cluster: Cluster) -> Path:
    return Path(os.environ.get("CAPSTAN_HOME", "~/.capstan")).expanduser() / cluster.name / "admin.conf"


def write_admin_kubeconfig(session: Session) -> Path | None:
    """Copy admin.conf from the first control plane, pointed at a reachable apiserver, mode 0600."""
    first = session.cluster.control_planes[0].name
    try:
        raw = session.transport(first).get(ADMIN_CONF, sudo=True)
    except CommandFailed:
        return None
    doc = yaml.safe_load(raw)
    for entry in doc.get("clusters", []):
        entry["cluster"]["server"] = reachable_server(session.cluster)
    path = local_kubeconfig_path(session.cluster)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def table(cluster: Cluster, outcomes: list[PhaseOutcome]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {
        h.name: {
            "host": h.name,
            "roles": ",".join(h.roles),
            "kubernetes": cluster.spec.kubernetes.version,
            "changed": 0,
            "unchanged": 0,
            "seconds": 0.0,
            "changed phases": "",
        }
        for h in cluster.hosts
    }
    for o in outcomes:
        row = rows.get(o.host)
        if row is None:
            continue
        row["changed"] += o.changed
        row["unchanged"] += o.unchanged
        row["seconds"] = round(row["seconds"] + o.seconds, 2)
        if o.changed:
            row["changed phases"] = ", ".join(
                filter(None, [row["changed phases"], f"{o.phase}({o.changed})"])
            )
    return list(rows.values())


@cluster_phase_impl("report")
def report_phase(session: Session) -> list[PhaseOutcome]:
    cluster = session.cluster
    outcomes = cast("list[PhaseOutcome]", session.memo.get("outcomes", []))
    rows = table(cluster, outcomes)
    kubeconfig = None if session.dry_run else write_admin_kubeconfig(session)
    total = sum(r["changed"] for r in rows)
    lines = [
        f"# create-cluster {cluster.name}",
        "",
        f"Kubernetes {cluster.spec.kubernetes.version}, {len(cluster.hosts)} hosts "
        f"({len(cluster.control_planes)} control planes, {len(cluster.etcd_hosts)} etcd, "
        f"{len(cluster.workers)} workers). {total} changes.",
        "",
        "| host | roles | changed | unchanged | seconds |",
        "|---|---|---|---|---|",
        *(
            f"| {r['host']} | {r['roles']} | {r['changed']} | {r['unchanged']} | {r['seconds']} |"
            for r in rows
        ),
    ]
    if kubeconfig is not None:
        lines += ["", f"Admin kubeconfig written to `{kubeconfig}` on the orchestrator."]
        session.memo["kubeconfig"] = str(kubeconfig)
    key = f"create-{cluster.name}"
    create_markdown_artifact(key=key, markdown="\n".join(lines), description="create-cluster summary")
    create_table_artifact(key=f"{key}-hosts", table=rows, description="per-host changes")
    return []
