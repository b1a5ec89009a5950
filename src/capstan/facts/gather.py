"""Gather one host's facts: run the script once, parse the output."""

from __future__ import annotations

from capstan.facts.model import HostFacts
from capstan.facts.parse import parse_facts
from capstan.facts.query import FactsQuery, build_script
from capstan.remote.base import Transport

__all__ = ["gather_facts"]


def gather_facts(
    transport: Transport, query: FactsQuery | None = None, *, timeout: float = 60.0
) -> HostFacts:
    """One round trip to ``transport``'s host; runs with sudo so root-only files can be hashed.

    The script always exits 0 on its own, so a non-zero exit means the shell itself failed and
    ``CommandFailed`` (from ``check=True``) is the right report.
    """
    q = query or FactsQuery()
    result = transport.run(build_script(q), sudo=True, timeout=timeout)
    return parse_facts(result.stdout, q, host=transport.host)
