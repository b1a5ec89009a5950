"""Token discovery: how a joining node learns, and decides to trust, the cluster it joins.

As real kubeadm: fetch the ``cluster-info`` ConfigMap from kube-public without trusting the server yet,
check that it carries a JWS signature for our token id (``jws-kubeconfig-<id>``, an HS256 detached
signature keyed by the token secret), verify it, then pin the CA it contains against the
``caCertHashes`` (sha256 of the CA's SubjectPublicKeyInfo). A wrong token id, a wrong token secret and
a wrong CA hash each fail with kubeadm's message.

Who signs: in a real cluster the controller-manager's bootstrapsigner controller keeps the
``jws-kubeconfig-*`` keys in step with the bootstrap-token Secrets. The stand-in kubeadm signs when it
creates a token (``init``, ``token create``) instead, because the controller-manager stand-in runs no
such controller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from capstan.lab.standins.kubeadm import kubeconfig, pkiutil
from capstan.lab.standins.kubeadm.base import KubeadmError
from capstan.lab.standins.kubeadm.validate import TOKEN

CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
JWS_PREFIX = "jws-kubeconfig-"
PHASE = "preflight"


def split_token(token: str) -> tuple[str, str]:
    match = TOKEN.match(token)
    if match is None:
        raise KubeadmError(f'the bootstrap token was not of the form "{TOKEN.pattern}"', PHASE)
    return match.group(1), match.group(2)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_sign(content: str, token_id: str, token_secret: str) -> str:
    """A detached HS256 JWS (``header..signature``) over ``content``, as bootstrapsigner writes it."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64url(content.encode())}".encode()
    sig = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{_b64url(sig)}"


def jws_verify(detached: str, content: str, token_id: str, token_secret: str) -> bool:
    header, _, sig = detached.partition("..")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(decoded, dict) or decoded.get("alg") != "HS256" or decoded.get("kid") != token_id:
        return False
    return hmac.compare_digest(jws_sign(content, token_id, token_secret).partition("..")[2], sig)


@dataclass(frozen=True)
class Discovered:
    server: str
    ca_pem: bytes


def check_ca_pins(ca_pem: bytes, hashes: list[str]) -> None:
    """Refuse a CA whose SubjectPublicKeyInfo hash is not among ``hashes`` (kubeadm's message)."""
    pin = pkiutil.spki_hash(pkiutil.load_cert(ca_pem))
    if pin not in [h.lower() for h in hashes]:
        raise KubeadmError(
            f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "{pin}" '
            "are pinned",
            PHASE,
        )


def discover(
    fetch: Callable[[], dict[str, Any]], token: str, hashes: list[str], unsafe_skip_ca: bool
) -> Discovered:
    """Validate a fetched cluster-info ConfigMap against the token and the CA pins."""
    token_id, token_secret = split_token(token)
    data = fetch().get("data") or {}
    content = data.get("kubeconfig")
    if not isinstance(content, str):
        raise KubeadmError("there is no kubeconfig in the cluster-info ConfigMap", PHASE)
    signature = data.get(JWS_PREFIX + token_id)
    if not isinstance(signature, str):
        raise KubeadmError(
            f'there is no JWS signed token in the cluster-info ConfigMap. This token id "{token_id}" is '
            "invalid "
            'for this cluster, or it has expired. Use "kubeadm token create" on the control-plane node to '
            "create a new valid token",
            PHASE,
        )
    if not jws_verify(signature, content, token_id, token_secret):
        raise KubeadmError(
            "failed to verify JWS signature of received cluster info object, can't trust this API Server",
            PHASE,
        )
    server, ca_pem = kubeconfig.server_and_ca(content)
    if not ca_pem:
        raise KubeadmError("the cluster-info kubeconfig carries no certificate-authority-data", PHASE)
    if not unsafe_skip_ca:
        check_ca_pins(ca_pem, hashes)
    return Discovered(server, ca_pem)


def signed_cluster_info(configmap: dict[str, Any], token_id: str, token_secret: str) -> dict[str, Any]:
    """``configmap`` with a JWS for this token added (what bootstrapsigner would add)."""
    data = dict(configmap.get("data") or {})
    data[JWS_PREFIX + token_id] = jws_sign(str(data["kubeconfig"]), token_id, token_secret)
    return {**configmap, "data": data}
