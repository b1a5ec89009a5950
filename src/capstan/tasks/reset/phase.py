"""The reset phase: one task per host, all hosts in parallel (bounded), each converging to "nothing left".

Pre-check: facts for every target of the host's roles (units, unit files, paths, kubeadm). Action: only
the ops still needed (``plan.reset_plan``). Post-check: facts again; anything still present fails the
host, naming what. A host that cannot be reached fails on its own: the runner lets every other host
finish, then fails the phase naming the unreachable one.
"""

from __future__ import annotations

from capstan.facts import HostFacts
from capstan.ops import Op
from capstan.plan.phases import Phase
from capstan.spec.models import Cluster, Host
from capstan.tasks.create._common import converge, outcome
from capstan.tasks.reset.plan import reset_plan, reset_query, reset_targets
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

RESET = "reset"


def _all(c: Cluster) -> list[Host]:
    return list(c.hosts)


RESET_PHASE = Phase(
    RESET,
    "Reset",
    "parallel",
    _all,
    "kubeadm reset -f; stop and disable capstan's services; remove units, binaries, config and data",
)


@host_phase_impl(RESET)
def reset_phase(session: Session, host: Host) -> PhaseOutcome:
    targets = reset_targets(session.cluster, host)

    def plan(facts: HostFacts) -> list[Op]:
        return reset_plan(facts, targets)

    result, _ = converge(session, host, reset_query(targets), plan, RESET)
    removed = sum(1 for op in result.ops if op.changed and op.description.startswith("remove "))
    return outcome(RESET, host, [result], note=f"{removed} paths removed")
