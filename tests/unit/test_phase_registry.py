"""Phase ids are global across flows: every flow module imported together, each id has one owner."""

from __future__ import annotations

import importlib

import pytest

from capstan.plan.phases import CREATE_PHASES
from capstan.tasks.runner import CLUSTER_PHASES, HOST_PHASES, PhaseOutcome, cluster_phase_impl

FLOWS = ("create", "scale", "upgrade", "remove_node", "reset", "backup", "restore", "certs")


def test_with_every_flow_imported_create_still_runs_its_own_phases() -> None:
    for name in FLOWS:
        importlib.import_module(f"capstan.flows.{name}")
    for phase in CREATE_PHASES:
        impl = CLUSTER_PHASES.get(phase.id) or HOST_PHASES.get(phase.id)
        assert impl is not None, phase.id
        assert impl.__module__.startswith("capstan.tasks.create"), (phase.id, impl.__module__)


def test_a_second_implementation_of_an_id_is_refused_naming_both() -> None:
    importlib.import_module("capstan.flows.create")

    def other(session: object) -> list[PhaseOutcome]:
        return []

    with pytest.raises(RuntimeError, match=r"phase 'nodes-ready' is implemented twice: .*addons.*other"):
        cluster_phase_impl("nodes-ready")(other)  # type: ignore[arg-type]
    assert CLUSTER_PHASES["nodes-ready"].__module__ == "capstan.tasks.create.addons"
