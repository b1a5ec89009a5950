"""The seam to hosts: ``Transport`` and its implementations.

``FabricTransport`` lives in ``capstan.remote.fabric`` and is imported from there on purpose, so
that importing this package (facts, ops, unit tests) never loads fabric or paramiko.
"""

from __future__ import annotations

from capstan.remote.base import Argv, Result, Transport, describe_command, render_command
from capstan.remote.fake import FakeCall, FakeFile, FakeTransport, UnscriptedCommand
from capstan.remote.fanout import Err, HostsFailed, Ok, Outcome, fan_out, raise_failures
from capstan.remote.known_hosts import HostKey, KnownHosts, fingerprint, known_hosts_name

__all__ = [
    "Argv",
    "Err",
    "FakeCall",
    "FakeFile",
    "FakeTransport",
    "HostKey",
    "HostsFailed",
    "KnownHosts",
    "Ok",
    "Outcome",
    "Result",
    "Transport",
    "UnscriptedCommand",
    "describe_command",
    "fan_out",
    "fingerprint",
    "known_hosts_name",
    "raise_failures",
    "render_command",
]
