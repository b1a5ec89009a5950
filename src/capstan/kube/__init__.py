"""Kubernetes API use: admin access, readiness of nodes and apiservers, server-side apply, the CNI.

The flows reach the API from the orchestrator with the admin credentials read from the first control
plane (``access``); what "ready" means is decided in pure code (``readiness``); addons are applied with
server-side apply through lightkube, reporting only real changes (``apply``).
"""

from capstan.kube.access import FIELD_MANAGER, ApiAccess, KubeError, parse_kubeconfig
from capstan.kube.apply import ApplyResult, apply_objects, apply_order, comparable
from capstan.kube.readiness import (
    NodeView,
    node_view,
    poll_until,
    readiness_problems,
    readyz_problem,
    registration_problems,
    want_version,
)

__all__ = [
    "FIELD_MANAGER",
    "ApiAccess",
    "ApplyResult",
    "KubeError",
    "NodeView",
    "apply_objects",
    "apply_order",
    "comparable",
    "node_view",
    "parse_kubeconfig",
    "poll_until",
    "readiness_problems",
    "readyz_problem",
    "registration_problems",
    "want_version",
]
