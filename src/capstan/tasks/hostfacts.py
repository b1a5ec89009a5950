"""Facts gathered once per host and reused by the following phases until something changes the host.

Why: each phase asks its own questions of a host (its files, units, packages), so a converged re-run
used to gather facts on every host once per phase: nine SSH commands per worker, seven of them
gathers, each forking ``stat``, ``sha256sum`` and ``systemctl`` on the host. Now a gather also asks
what the flow's *later* phases will ask that host (each phase registers its query with
``phase_query``), and a later phase takes its facts from that answer, as long as nothing that could
change the host was sent to it since (``Session.transport`` counts every ``run`` and ``put``: the
host's generation). On a converged cluster a worker is then asked once after the facts phase, not
once per phase.

What keeps this safe:

- A gather's answer is used only at the generation it was taken at, and only for a query it covers
  (every file, unit, package... asked is in it). Anything sent to the host in between, by this phase
  or another, a write or a command cut off half-way, makes the next phase gather again.
- Post-checks and waits never use it: they gather ``fresh``, because what they wait for (a service
  becoming active, a port listening) changes without capstan sending anything.
- Commands that only look (health probes, reading the CA) go through ``Session.reader`` and leave the
  generation alone. The facts phase looks ahead too, under ``material.read_only()``: later phases'
  queries need the cluster material (the CA, the rendered files), which phase 1 reads where it exists
  and never creates; a query that needs material not made yet is left for its phase to gather. So a
  converged host is gathered once per run, a new one once more after the pki phase.
- It lives in one flow run's session: a retried or new run gathers everything again.

Reused facts can be a few seconds older than a gather at the phase's own start would be. For state
that changes without capstan (a unit dying), the phase acts on what a gather a moment earlier showed,
which no gather avoids; the phase's post-check is fresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields

from capstan.errors import CapstanError
from capstan.facts import FactsQuery, HostFacts, gather_facts
from capstan.spec.models import Host
from capstan.tasks.session import CachedFacts, Session

log = logging.getLogger(__name__)

QueryOf = Callable[[Session, Host], FactsQuery]

PHASE_QUERIES: dict[str, QueryOf] = {}
"""What each phase will ask a host, by phase id (registered next to the phase's implementation)."""


def phase_query(phase_id: str) -> Callable[[QueryOf], QueryOf]:
    """Register the facts query phase ``phase_id`` will gather on a host."""

    def register(fn: QueryOf) -> QueryOf:
        PHASE_QUERIES[phase_id] = fn
        return fn

    return register


def covers(have: FactsQuery, want: FactsQuery) -> bool:
    """Whether an answer to ``have`` holds everything ``want`` asks."""
    return all(set(getattr(want, f.name)) <= set(getattr(have, f.name)) for f in fields(FactsQuery))


def ahead(session: Session, host: Host, phase: str) -> FactsQuery:
    """The union of what the flow's phases after ``phase`` will ask ``host`` (those that run on it).

    A query that cannot be worked out yet is left out: looking ahead only saves round trips, and the
    phase that needs it will gather it itself.
    """
    ids = [p.id for p in session.phases]
    if phase not in ids:
        return FactsQuery(binaries=())
    queries = []
    for p in session.phases[ids.index(phase) + 1 :]:
        fn = PHASE_QUERIES.get(p.id)
        if fn is None or host.name not in {h.name for h in p.hosts(session.cluster)}:
            continue
        try:
            queries.append(fn(session, host))
        except CapstanError as exc:
            log.debug("%s: no look-ahead for %s: %s", host.name, p.id, exc)
    return FactsQuery.union(queries)


def facts_for(session: Session, host: Host, query: FactsQuery, *, phase: str | None = None) -> HostFacts:
    """Facts answering ``query``: the last gather's if the host is unchanged since and it covers the
    query, else a new gather (of the query plus what later phases will ask, when ``phase`` is given)."""
    cached = session.facts_cache.get(host.name)
    unchanged = cached is not None and cached.generation == session.generation(host.name)
    if cached is not None and unchanged and covers(cached.query, query):
        return cached.facts
    return fresh_facts(session, host, query, phase=phase)


def fresh_facts(session: Session, host: Host, query: FactsQuery, *, phase: str | None = None) -> HostFacts:
    """A new gather (never the cache); its answer is kept for the phases that follow."""
    wanted = query | ahead(session, host, phase) if phase is not None else query
    generation = session.generation(host.name)  # taken before: a change during the gather voids it
    facts = gather_facts(session.reader(host.name), wanted)
    session.facts_cache[host.name] = CachedFacts(generation, wanted, facts)
    return facts
