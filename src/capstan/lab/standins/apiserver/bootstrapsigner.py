"""The controller-manager's bootstrapsigner: signs cluster-info for every bootstrap token that may sign.

As the real controller (off by default; kubeadm turns it on with ``--controllers=*,bootstrapsigner,…``):
a Secret in kube-system of type ``bootstrap.kubernetes.io/token`` named ``bootstrap-token-<id>``, whose
``token-id`` is that id, with a ``token-secret``, ``usage-bootstrap-signing: "true"`` and no passed
``expiration``, gets a ``jws-kubeconfig-<id>`` key in the ``cluster-info`` ConfigMap of kube-public: a
detached JWS over its ``kubeconfig`` keyed by the token secret (``common.jws``). Signatures of tokens
that no longer qualify (deleted, expired, not for signing) are removed. So a token created as a raw
Secret (``kubeadm token create`` does nothing else) can be used for discovery within one pass.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from ..common.client import ApiError, KubeClient
from ..common.jws import jws_sign
from .auth import secret_value, token_expired

log = logging.getLogger("kube-controller-manager")
Obj = dict[str, Any]
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
JWS_PREFIX = "jws-kubeconfig-"
TOKEN_TYPE = "bootstrap.kubernetes.io/token"
_ID = re.compile(r"^[a-z0-9]{6}$")
_SECRET = re.compile(r"^[a-z0-9]{16}$")


def signing_tokens(secrets: list[Obj], now: datetime | None = None) -> dict[str, str]:
    """token id -> token secret, for the Secrets the signer signs for."""
    tokens: dict[str, str] = {}
    for secret in secrets:
        name = (secret.get("metadata") or {}).get("name", "")
        data = secret.get("data") or {}
        if secret.get("type") != TOKEN_TYPE or not isinstance(data, dict):
            continue
        token_id, token_secret = secret_value(data, "token-id"), secret_value(data, "token-secret")
        if (
            name != f"bootstrap-token-{token_id}"
            or not _ID.match(token_id)
            or not _SECRET.match(token_secret)
        ):
            continue
        if secret_value(data, "usage-bootstrap-signing") != "true" or token_expired(data, now):
            continue
        tokens[token_id] = token_secret
    return tokens


def signed_data(data: dict[str, str], tokens: dict[str, str]) -> dict[str, str]:
    """``data`` with exactly one signature per token (unchanged when there is no ``kubeconfig``)."""
    content = data.get("kubeconfig")
    if not isinstance(content, str):
        return data
    out = {k: v for k, v in data.items() if not k.startswith(JWS_PREFIX)}
    for token_id, token_secret in sorted(tokens.items()):
        out[JWS_PREFIX + token_id] = jws_sign(content, token_id, token_secret)
    return out


def sync(api: KubeClient) -> bool:
    """One pass; True when cluster-info was rewritten."""
    try:
        cm = api.get(CLUSTER_INFO)
    except ApiError as exc:
        if exc.status == 404:
            return False  # kubeadm creates it; nothing to sign yet
        raise
    data = cm.get("data") or {}
    if not isinstance(data.get("kubeconfig"), str):
        log.warning("no kubeconfig in the cluster-info ConfigMap; not signing")
        return False
    tokens = signing_tokens(api.items("/api/v1/namespaces/kube-system/secrets"))
    new = signed_data(data, tokens)
    if new == data:
        return False
    try:
        api.put(CLUSTER_INFO, {**cm, "data": new})  # carries resourceVersion: 409 if it moved meanwhile
    except ApiError as exc:
        if exc.status == 409:
            return False  # next pass
        raise
    log.info("signed cluster-info for %d bootstrap token(s)", len(tokens))
    return True
