"""Host facts: one sh script per host, one round trip, parsed by pure Python into ``HostFacts``."""

from __future__ import annotations

from capstan.facts.gather import gather_facts
from capstan.facts.model import (
    BinaryInfo,
    DefaultRoute,
    FactNotGathered,
    FileInfo,
    HostFacts,
    Listener,
    ModuleInfo,
    OsInfo,
    SwapInfo,
    UnitState,
)
from capstan.facts.parse import arch_of, family_of, parse_facts, parse_version
from capstan.facts.query import BINARY_VERSION_COMMANDS, TOOLS, FactsQuery, build_script, sysctl_path

__all__ = [
    "BINARY_VERSION_COMMANDS",
    "TOOLS",
    "BinaryInfo",
    "DefaultRoute",
    "FactNotGathered",
    "FactsQuery",
    "FileInfo",
    "HostFacts",
    "Listener",
    "ModuleInfo",
    "OsInfo",
    "SwapInfo",
    "UnitState",
    "arch_of",
    "build_script",
    "family_of",
    "gather_facts",
    "parse_facts",
    "parse_version",
    "sysctl_path",
]
