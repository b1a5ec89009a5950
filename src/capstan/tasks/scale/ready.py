"""The last scale phase: the added nodes are Ready (the CNI's DaemonSet reaches them on its own)."""

from __future__ import annotations

import time

from capstan.plan.phases import Phase
from capstan.spec.models import Cluster, Host
from capstan.tasks.create.addons import wait_nodes_ready
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl
from capstan.tasks.session import Session

NEW_NODES = "scale:new-nodes"
"""Session memo key: the names of the nodes this run added."""


def _none(c: Cluster) -> list[Host]:
    return []


READY_PHASE = Phase(
    "new-nodes-ready", "New nodes Ready", "local", _none, "the added nodes are Ready at the spec's version"
)


@cluster_phase_impl("new-nodes-ready")
def nodes_ready_phase(session: Session) -> list[PhaseOutcome]:
    started = time.monotonic()
    names = session.memo.get(NEW_NODES)
    assert isinstance(names, list)
    first = session.cluster.control_planes[0].name
    if session.dry_run or not names:
        return [PhaseOutcome("new-nodes-ready", first, note="nothing to wait for")]
    wait_nodes_ready(session, names, "new nodes Ready")
    seconds = round(time.monotonic() - started, 3)
    return [PhaseOutcome("new-nodes-ready", first, seconds=seconds, note="Ready: " + ", ".join(names))]
