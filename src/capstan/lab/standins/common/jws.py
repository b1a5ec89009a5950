"""Detached JWS (HS256) signatures over cluster-info, as bootstrap tokens use them.

Shared by the controller-manager's bootstrap signer (which writes ``jws-kubeconfig-<token id>`` into the
cluster-info ConfigMap) and kubeadm's token discovery (which checks them before trusting the CA in it).
The format is the real one: a compact JWS with the payload left out (``header..signature``), header
``{"alg":"HS256","kid":"<token id>"}``, keyed by the token secret. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_sign(content: str, token_id: str, token_secret: str) -> str:
    """A detached HS256 JWS (``header..signature``) over ``content``, as bootstrapsigner writes it."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64url(content.encode())}".encode()
    sig = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{_b64url(sig)}"


def jws_verify(detached: str, content: str, token_id: str, token_secret: str) -> bool:
    """True when ``detached`` is this token's signature over ``content`` (constant-time compare)."""
    header, _, sig = detached.partition("..")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(decoded, dict) or decoded.get("alg") != "HS256" or decoded.get("kid") != token_id:
        return False
    return hmac.compare_digest(jws_sign(content, token_id, token_secret).partition("..")[2], sig)
