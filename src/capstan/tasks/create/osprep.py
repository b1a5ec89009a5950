"""Phase 4, OS preparation: swap off, sysctls, kernel modules, packages, hostname (all hosts)."""

from __future__ import annotations

from capstan.facts import FactsQuery
from capstan.ops import apply, osprep, osprep_query
from capstan.spec.models import Host
from capstan.tasks.hostfacts import facts_for, phase_query
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session


@phase_query("os-prep")
def _query(session: Session, host: Host) -> FactsQuery:
    return osprep_query()


@host_phase_impl("os-prep")
def osprep_phase(session: Session, host: Host) -> PhaseOutcome:
    t = session.transport(host.name)
    facts = facts_for(session, host, osprep_query(), phase="os-prep")
    prefixes = ("net.",) if session.cluster.spec.os.shared_kernel else None
    result = apply(
        t, osprep(facts, hostname=host.name, runtime_sysctl_prefixes=prefixes), dry_run=session.dry_run
    )
    return PhaseOutcome("os-prep", host.name, result.changed_count, result.unchanged_count)
