"""Planning: the ordered phases of a lifecycle operation and the hosts each runs on. Pure."""

from capstan.plan.phases import CREATE_PHASES, Phase, PlannedPhase, create_plan

__all__ = ["CREATE_PHASES", "Phase", "PlannedPhase", "create_plan"]
