"""The audit log from --audit-log-path / --audit-policy-file (audit.k8s.io/v1 Events, one JSON a line).

SIMPLIFICATION: the policy file must exist and be an audit.k8s.io Policy (as the real server
requires), but only its rules' ``level`` is looked at: if every rule is ``None`` nothing is logged,
otherwise every request is logged at Metadata level at stage ResponseComplete.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from typing import Any

import yaml

from ..common import kubetime


class AuditConfigError(Exception):
    """The audit policy file is missing or not a Policy."""


class AuditLog:
    def __init__(self, path: str, policy_path: str = "") -> None:
        self.path = path
        self.enabled = bool(path)
        if policy_path:
            try:
                with open(policy_path) as fh:
                    policy = yaml.safe_load(fh)
            except (OSError, yaml.YAMLError) as exc:
                raise AuditConfigError(f"--audit-policy-file {policy_path}: {exc}") from None
            if not isinstance(policy, dict) or policy.get("kind") != "Policy":
                raise AuditConfigError(f"--audit-policy-file {policy_path}: kind must be Policy")
            levels = {str(r.get("level")) for r in policy.get("rules") or [] if isinstance(r, dict)}
            self.enabled = self.enabled and bool(levels - {"None"})
        self._lock = threading.Lock()

    def record(
        self, *, user: Any, verb: str, uri: str, code: int, remote: str, object_ref: dict[str, str]
    ) -> None:
        if not self.enabled:
            return
        event = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": str(uuid.uuid4()),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": verb,
            "user": {"username": getattr(user, "name", ""), "groups": list(getattr(user, "groups", ()))},
            "sourceIPs": [remote],
            "objectRef": object_ref,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": kubetime.micro_stamp(),
            "stageTimestamp": kubetime.micro_stamp(),
        }
        line = json.dumps(event) + "\n"
        with self._lock:
            if self.path == "-":
                sys.stdout.write(line)
                sys.stdout.flush()
                return
            with open(self.path, "a") as fh:
                fh.write(line)
