"""Facts reused across phases (``capstan.tasks.hostfacts``), gathered for real by ``sh`` on this machine.

What must hold: one gather answers a phase and the later phases that run on the host; anything sent
to the host through ``Session.transport`` (a command or a file) makes the next phase gather again and
see the change; probes through ``Session.reader`` do not; post-checks (``fresh_facts``) always gather;
a later phase whose query cannot be worked out yet, or that does not run on the host, is not asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from local_shell import LocalShell
from test_create_support import cluster

from capstan.errors import CapstanError
from capstan.facts import FactsQuery
from capstan.plan.phases import Phase
from capstan.spec.models import Cluster, Host
from capstan.tasks.hostfacts import PHASE_QUERIES, covers, facts_for, fresh_facts
from capstan.tasks.session import Session


class LocalHost(LocalShell):
    """This machine as host ``name``, counting the fact gathers sent to it."""

    def __init__(self, name: str, before_gather: Callable[[], None] | None = None) -> None:
        super().__init__(name, before_run=self._seen)
        self.gathers = 0
        self.before_gather = before_gather

    def _seen(self, command: str) -> None:
        if "@@capstan@@" in command:
            self.gathers += 1
            if self.before_gather is not None:
                self.before_gather()


def phase(pid: str, hosts: Callable[[Cluster], list[Host]] = lambda c: list(c.hosts)) -> Phase:
    return Phase(pid, pid, "parallel", hosts, "test phase")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("a", "b", "c", "d"):
        out[name] = tmp_path / name
        out[name].write_text(f"{name}\n")
    return out


@pytest.fixture
def queries(files: dict[str, Path]) -> Iterator[dict[str, FactsQuery]]:
    """Four phases t-a..t-d, each asking for its own file; t-d runs on workers only."""
    qs = {n: FactsQuery(files=(str(p),), binaries=()) for n, p in files.items()}
    for n, q in qs.items():
        PHASE_QUERIES[f"t-{n}"] = lambda _s, _h, q=q: q
    yield qs
    for n in qs:
        PHASE_QUERIES.pop(f"t-{n}", None)


def session_with(hosts: dict[str, LocalHost]) -> Session:
    s = Session("unit", cluster(), factory=lambda _c, h: hosts.setdefault(h.name, LocalHost(h.name)))
    s.phases = (phase("t-a"), phase("t-b"), phase("t-c"), phase("t-d", lambda c: c.workers))
    return s


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_one_gather_answers_the_later_phases_that_run_on_the_host(
    files: dict[str, Path], queries: dict[str, FactsQuery]
) -> None:
    hosts: dict[str, LocalHost] = {}
    s = session_with(hosts)
    cp1, w1 = s.host("cp1"), s.host("w1")

    first = facts_for(s, w1, queries["a"], phase="t-a")
    assert hosts["w1"].gathers == 1
    for n in ("b", "c", "d"):  # asked ahead, on the worker
        assert facts_for(s, w1, queries[n], phase=f"t-{n}") is first
        assert first.file(str(files[n])).sha256 == digest(files[n])  # type: ignore[union-attr]
    assert hosts["w1"].gathers == 1

    facts_for(s, cp1, queries["b"], phase="t-b")
    facts_for(s, cp1, queries["c"], phase="t-c")
    assert hosts["cp1"].gathers == 1
    facts_for(s, cp1, queries["a"], phase="t-a")  # an earlier phase's query was not asked ahead
    facts_for(s, cp1, queries["d"], phase="t-d")  # nor one for a phase that skips control planes
    assert hosts["cp1"].gathers == 3


def test_anything_sent_through_the_transport_voids_the_answer_probes_do_not(
    files: dict[str, Path], queries: dict[str, FactsQuery]
) -> None:
    hosts: dict[str, LocalHost] = {}
    s = session_with(hosts)
    w1 = s.host("w1")
    facts_for(s, w1, queries["a"], phase="t-a")

    s.reader("w1").run(["true"])  # a probe
    assert facts_for(s, w1, queries["b"], phase="t-b").file(str(files["b"])).sha256 == digest(files["b"])  # type: ignore[union-attr]
    assert hosts["w1"].gathers == 1

    s.transport("w1").run(["sh", "-c", f"echo changed > {files['c']}"])
    seen = facts_for(s, w1, queries["c"], phase="t-c")
    assert hosts["w1"].gathers == 2
    assert seen.file(str(files["c"])).sha256 == hashlib.sha256(b"changed\n").hexdigest()  # type: ignore[union-attr]

    s.transport("w1").put(str(files["d"]), b"put\n")
    seen = facts_for(s, w1, queries["d"], phase="t-d")
    assert hosts["w1"].gathers == 3
    assert seen.file(str(files["d"])).sha256 == hashlib.sha256(b"put\n").hexdigest()  # type: ignore[union-attr]

    s.transport("cp1").run(["true"])  # another host's change leaves w1's answer alone
    facts_for(s, w1, queries["d"], phase="t-d")
    assert hosts["w1"].gathers == 3


def test_post_checks_always_gather_and_keep_their_answer_for_the_next_phase(
    files: dict[str, Path], queries: dict[str, FactsQuery]
) -> None:
    hosts: dict[str, LocalHost] = {}
    s = session_with(hosts)
    w1 = s.host("w1")
    facts_for(s, w1, queries["a"], phase="t-a")
    fresh_facts(s, w1, queries["a"], phase="t-a")
    fresh_facts(s, w1, queries["a"], phase="t-a")
    assert hosts["w1"].gathers == 3
    facts_for(s, w1, queries["b"], phase="t-b")  # the post-check asked ahead too
    assert hosts["w1"].gathers == 3


def test_a_change_during_the_gather_voids_its_answer(
    files: dict[str, Path], queries: dict[str, FactsQuery]
) -> None:
    hosts: dict[str, LocalHost] = {}
    s = session_with(hosts)
    hosts["w1"] = LocalHost("w1", before_gather=lambda: s.transport("w1").run(["true"]))
    w1 = s.host("w1")
    facts_for(s, w1, queries["a"], phase="t-a")
    facts_for(s, w1, queries["b"], phase="t-b")
    assert hosts["w1"].gathers == 2


def test_a_query_not_known_yet_is_left_out_and_without_phases_nothing_is_asked_ahead(
    files: dict[str, Path], queries: dict[str, FactsQuery]
) -> None:
    def not_yet(_s: Session, _h: Host) -> FactsQuery:
        raise CapstanError("needs the cluster material")

    PHASE_QUERIES["t-b"] = not_yet
    hosts: dict[str, LocalHost] = {}
    s = session_with(hosts)
    w1 = s.host("w1")
    facts_for(s, w1, queries["a"], phase="t-a")
    facts_for(s, w1, queries["c"], phase="t-c")
    assert hosts["w1"].gathers == 1
    facts_for(s, w1, queries["b"], phase="t-b")
    assert hosts["w1"].gathers == 2

    plain = Session(
        "unit", cluster(), factory=lambda _c, h: hosts.setdefault(f"x-{h.name}", LocalHost(h.name))
    )
    facts_for(plain, plain.host("w2"), queries["a"], phase="t-a")
    facts_for(plain, plain.host("w2"), queries["c"], phase="t-c")
    assert hosts["x-w2"].gathers == 2


def test_covers_needs_every_item_of_every_field() -> None:
    big = FactsQuery(files=("/a", "/b"), units=("kubelet",), sysctls=("net.ipv4.ip_forward",), binaries=())
    assert covers(big, FactsQuery(files=("/b",), binaries=()))
    assert covers(big, big)
    assert not covers(big, FactsQuery(files=("/c",), binaries=()))
    assert not covers(big, FactsQuery(units=("kubelet",), contents=("/a",), binaries=()))
    assert not covers(big, FactsQuery(files=("/a",)))  # the default asks every binary's version
