"""A valid bootstrap token for the joins of this run.

create renders kubeadm's bootstrap token with a short TTL (``render.kubeadm.BOOTSTRAP_TOKEN_TTL``): long
enough for one run's joins, so a scale-out days later finds it expired and ``kubeadm join``'s discovery
would fail. Before any join, this phase (re)writes the ``bootstrap-token-<id>`` Secret for the cluster's
token (the one kept on the first control plane, which the joining nodes' JoinConfiguration names) with
a fresh expiration, through the API, as ``kubeadm token create`` would. The token's secret half travels
only to the API; the phase's result holds the token id and the expiry time.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from capstan.kube import KubeError
from capstan.kube.apply import apply_objects
from capstan.plan.phases import Phase
from capstan.render import Secrets
from capstan.spec.models import Cluster, Host
from capstan.tasks import material
from capstan.tasks.create import _kube
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl
from capstan.tasks.session import Session

TOKEN_TTL = timedelta(hours=2)
EXTRA_GROUPS = "system:bootstrappers:kubeadm:default-node-token"


def _none(c: Cluster) -> list[Host]:
    return []


TOKEN_PHASE = Phase(
    "join-token",
    "Join token",
    "local",
    _none,
    "the cluster's bootstrap token valid for the joins of this run",
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def token_secret(secrets: Secrets, expires: datetime) -> dict[str, Any]:
    """The ``bootstrap.kubernetes.io/token`` Secret kubeadm would create for the token (pure)."""
    token_id, token_secret_half = secrets.bootstrap_token.split(".", 1)
    data = {
        "token-id": token_id,
        "token-secret": token_secret_half,
        "expiration": expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": EXTRA_GROUPS,
        "description": "capstan scale-cluster join token",
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: _b64(v) for k, v in data.items()},
    }


@cluster_phase_impl("join-token")
def join_token_phase(session: Session) -> list[PhaseOutcome]:
    started = time.monotonic()
    first = session.cluster.control_planes[0].name
    secrets = material.cluster_secrets(session)
    expires = datetime.now(UTC) + TOKEN_TTL
    access = _kube.admin_access(session)
    try:
        with access.client(timeout=30.0) as client:
            result = apply_objects(client, [token_secret(secrets, expires)], dry_run=session.dry_run)
    except httpx2.HTTPError as exc:
        raise KubeError(f"API {access.server}: cannot write the join token: {type(exc).__name__}") from None
    note = f"token {secrets.bootstrap_token_id} valid until {expires:%Y-%m-%dT%H:%M:%SZ}"
    seconds = round(time.monotonic() - started, 3)
    return [PhaseOutcome("join-token", first, len(result.changed), len(result.unchanged), seconds, note)]
