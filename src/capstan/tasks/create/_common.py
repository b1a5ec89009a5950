"""Small pieces the create phases share: parent directories, restart guards, post-checks, outcomes.

The restart guard is what keeps "restart only when something it reads changed" true across phases and
across a failed run. A service's inputs (its config files, its unit, and for etcd the certificates the
pki phase wrote) are summarised as ``sha256  path`` lines in ``/var/lib/capstan/applied/<unit>``, written
only *after* the service was (re)started with them. A run restarts a running service exactly when that
record differs from what the service should now be running with, or when one of those files had to be
rewritten (someone edited it, and may have restarted the service with the edit), so:

- a converged re-run finds the record equal and restarts nothing;
- a certificate renewed by the pki phase restarts etcd in the etcd phase, although that phase itself
  wrote nothing;
- a run that died between writing a config file and restarting the service restarts it next time
  (comparing files alone would see "unchanged" and leave the old config running).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from capstan.errors import CapstanError
from capstan.facts import FactsQuery, HostFacts
from capstan.ops import Command, Op, OpResult, apply
from capstan.ops.files import file
from capstan.spec.models import Host
from capstan.tasks.hostfacts import facts_for, fresh_facts
from capstan.tasks.runner import PhaseOutcome
from capstan.tasks.session import Session

APPLIED_DIR = "/var/lib/capstan/applied"

T = TypeVar("T")

Plan = Callable[[HostFacts], list[Op]]


class PostCheckFailed(CapstanError):
    """A phase did its work but the host does not show the result (message names host and check)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parent_dirs(paths: Iterable[str]) -> tuple[str, ...]:
    """The directories holding ``paths`` (sorted, without duplicates)."""
    return tuple(sorted({p.rsplit("/", 1)[0] or "/" for p in paths}))


def parents_op(facts: HostFacts, paths: Iterable[str], *, mode: int = 0o755) -> Op:
    """Create the missing directories that ``paths`` go into; existing ones are left as they are.

    A put replaces a file in its directory and creates none. Existing directories keep their mode and
    owner (``/etc`` or ``/usr/local/bin`` are not capstan's to change). Needs ``parent_dirs(paths)`` in
    the facts query's ``files``.
    """
    dirs = parent_dirs(paths)
    missing = [d for d in dirs if facts.file(d) is None]
    if not missing:
        return Op("directories " + " ".join(dirs), (), "exist")
    step = Command(("install", "-d", "-m", f"{mode:04o}", *missing))
    return Op("directories " + " ".join(missing), (step,))


def applied_path(unit: str) -> str:
    return f"{APPLIED_DIR}/{unit}"


def applied_record(inputs: Mapping[str, str | None]) -> bytes:
    """``sha256  path`` per input, sorted by path; a missing input is recorded as ``-``."""
    return "".join(f"{inputs[p] or '-'}  {p}\n" for p in sorted(inputs)).encode()


def restart_guard(facts: HostFacts, unit: str, inputs: Mapping[str, str | None]) -> Op:
    """The record of what ``unit`` runs with; changed = it must be (re)started with new inputs.

    Order it *after* the service op, so the record is written only once the restart succeeded. Needs
    ``applied_path(unit)`` in the facts query's ``files`` (and ``APPLIED_DIR``, for ``parents_op``).
    """
    return file(
        facts,
        applied_path(unit),
        applied_record(inputs),
        mode=0o600,
        description=f"record of the configuration {unit} runs with",
    )


def exec_start(unit_text: str) -> str | None:
    """The program of a unit's ``ExecStart=`` (prefixes such as ``-`` or ``@`` removed)."""
    m = re.search(r"^ExecStart=[-@:+!]*(\S+)", unit_text, re.MULTILINE)
    return m.group(1) if m else None


def outcome(phase: str, host: Host, results: Iterable[OpResult], note: str = "") -> PhaseOutcome:
    done = list(results)
    changed = sum(r.changed_count for r in done)
    unchanged = sum(r.unchanged_count for r in done)
    return PhaseOutcome(phase, host.name, changed, unchanged, note=note)


SERVICE_SETTLE_SECONDS = 30.0
"""How long a just-started service may take to report itself active before the post-check fails."""


def check_converged(
    session: Session,
    host: Host,
    query: FactsQuery,
    plan: Plan,
    phase: str,
    *,
    settle: float = SERVICE_SETTLE_SECONDS,
) -> HostFacts:
    """Post-check: gather again and re-plan; anything still to do means the change did not take.

    When all that is left is a service's state, ask again for up to ``settle`` seconds: a unit that
    was just (re)started can still be "activating" on a loaded host (seen with haproxy under the lab's
    emulator at a load average of 30), and that is not a failure yet. A file or anything else that
    is still wrong fails at once.
    """
    deadline = time.monotonic() + settle
    while True:
        facts = fresh_facts(session, host, query, phase=phase)
        left = [op.description for op in plan(facts) if op.changed]
        if not left:
            return facts
        only_services = all(d.startswith("service ") for d in left)
        if not only_services or time.monotonic() >= deadline:
            what = "; ".join(left)
            raise PostCheckFailed(f"{host.name}: {phase}: still not as wanted after the change: {what}")
        time.sleep(1.0)


def converge(
    session: Session, host: Host, query: FactsQuery, plan: Plan, phase: str
) -> tuple[OpResult, HostFacts]:
    """Pre-check (facts), action (only the steps still needed), post-check (re-plan finds nothing).

    Returns what was done and the freshest facts. The post-check costs a round trip only when something
    changed: a converged host was already checked by the pre-check. The pre-check's facts may come from
    an earlier phase's gather (``capstan.tasks.hostfacts``); the post-check's never do.
    """
    facts = facts_for(session, host, query, phase=phase)
    result = apply(session.transport(host.name), plan(facts), dry_run=session.dry_run)
    if result.changed and not session.dry_run:
        facts = check_converged(session, host, query, plan, phase)
    return result, facts


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something other than None, or fail after ``timeout`` seconds.

    ``probe`` may raise ``PostCheckFailed`` to say why it is not there yet; the last reason is reported.
    """
    deadline = time.monotonic() + timeout
    reason = ""
    while True:
        try:
            value = probe()
        except PostCheckFailed as exc:
            value, reason = None, str(exc)
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise PostCheckFailed(f"{what}: not within {timeout:.0f} s" + (f" ({reason})" if reason else ""))
        time.sleep(interval)


def tail(text: str, lines: int = 3) -> str:
    """The last non-empty lines of command output, on one line (for one-line error messages)."""
    kept = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return " | ".join(kept[-lines:])
