"""Idempotent host operations: pure planning from facts, then ``apply`` runs what is left.

Usage, per host::

    facts = gather_facts(transport, osprep_query())
    result = apply(transport, osprep(facts, hostname="node1"), dry_run=dry_run)
"""

from __future__ import annotations

from capstan.ops.apply import apply
from capstan.ops.artifacts import (
    STAMP_DIR,
    archive_member,
    archive_members,
    artifact_query,
    binary,
    stamp_path,
)
from capstan.ops.base import Command, Op, OpResult, PutFile, Step, any_changed, script
from capstan.ops.files import directory, file, line, sha256_hex
from capstan.ops.kernel import (
    MODULES_FILE,
    SYSCTL_FILE,
    kernel_module,
    kernel_modules,
    swap_off,
    sysctl,
    sysctls,
)
from capstan.ops.osprep import OSPREP_MODULES, OSPREP_PACKAGES, OSPREP_SYSCTLS, osprep, osprep_query
from capstan.ops.packages import packages
from capstan.ops.systemd import UNIT_DIR, service, unit_file
from capstan.ops.users import group, hostname, user

__all__ = [
    "MODULES_FILE",
    "OSPREP_MODULES",
    "OSPREP_PACKAGES",
    "OSPREP_SYSCTLS",
    "STAMP_DIR",
    "SYSCTL_FILE",
    "UNIT_DIR",
    "Command",
    "Op",
    "OpResult",
    "PutFile",
    "Step",
    "any_changed",
    "apply",
    "archive_member",
    "archive_members",
    "artifact_query",
    "binary",
    "directory",
    "file",
    "group",
    "hostname",
    "kernel_module",
    "kernel_modules",
    "line",
    "osprep",
    "osprep_query",
    "packages",
    "script",
    "service",
    "sha256_hex",
    "stamp_path",
    "swap_off",
    "sysctl",
    "sysctls",
    "unit_file",
    "user",
]
