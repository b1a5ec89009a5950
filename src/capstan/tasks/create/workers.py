"""Phase 10: workers join in parallel (bounded by the flow's thread pool), each registering its Node.

The same guarded ``kubeadm join`` as the control planes (``controlplane.join_phase``) with a worker's
JoinConfiguration; the post-check polls the API until the Node exists. Readiness (which needs the CNI)
is the addons phase's check.
"""

from __future__ import annotations

from capstan.spec.models import Host
from capstan.tasks.create.controlplane import join_phase
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session


@host_phase_impl("worker-join")
def worker_join_phase(session: Session, host: Host) -> PhaseOutcome:
    return join_phase(session, host, "worker-join")
