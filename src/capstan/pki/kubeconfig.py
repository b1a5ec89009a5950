"""Kubeconfig files with embedded credentials, written and read back.

Credentials are embedded (``*-data``) rather than referenced by path so that each kubeconfig is a single
self-contained file: capstan ships it as one unit, and reading it back (to decide whether its certificate
can be kept) needs no other file. Kubeconfigs that reference files instead (a kubelet after TLS
bootstrap points at ``/var/lib/kubelet/pki``) yield no credentials here and are treated as missing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import yaml

from capstan.errors import PKIError
from capstan.pki.certkey import CertKey, PrivateKey, load_cert, load_key

# libyaml's parser and emitter when PyYAML has them: the same documents, byte for byte (a unit test
# holds the two emitters to that), several times faster. A converged run reads back and renders every
# kubeconfig of every host; with the pure-Python ones that was the pki phase's largest cost.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(*, cluster_name: str, server: str, ca_pem: bytes, user: str, cred: CertKey) -> str:
    """The YAML of a one-cluster, one-user kubeconfig, with the context named ``user@cluster``."""
    context = f"{user}@{cluster_name}"
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cred.cert_pem()),
                    "client-key-data": _b64(cred.key_pem()),
                },
            }
        ],
    }
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)


def _current_user(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The user entry the current context selects (or the only user when there is no context)."""
    users = [u for u in doc.get("users") or [] if isinstance(u, dict)]
    wanted: object = None
    current = doc.get("current-context")
    for ctx in doc.get("contexts") or []:
        if isinstance(ctx, dict) and ctx.get("name") == current and isinstance(ctx.get("context"), dict):
            wanted = ctx["context"].get("user")
    for entry in users:
        if entry.get("name") == wanted or (wanted is None and len(users) == 1):
            user = entry.get("user")
            return user if isinstance(user, dict) else None
    return None


def _parse(text: bytes) -> dict[str, Any] | None:
    try:
        doc = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "Config" else None


def kubeconfig_client_cert_pem(text: bytes) -> bytes | None:
    """The embedded client certificate PEM of the current user, or None when there is none."""
    doc = _parse(text)
    user = _current_user(doc) if doc else None
    data = user.get("client-certificate-data") if user else None
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def kubeconfig_credential(text: bytes, where: str) -> CertKey | None:
    """The embedded client certificate and key of the current user, or None if absent or unreadable.

    An unreadable credential is not an error: the caller re-issues it, which is the repair it needs.
    """
    doc = _parse(text)
    user = _current_user(doc) if doc else None
    if not user:
        return None
    cert_data, key_data = user.get("client-certificate-data"), user.get("client-key-data")
    if not isinstance(cert_data, str) or not isinstance(key_data, str):
        return None
    try:
        cert = load_cert(base64.b64decode(cert_data, validate=True), where)
        key: PrivateKey = load_key(base64.b64decode(key_data, validate=True), where)
    except (ValueError, PKIError):  # binascii.Error is a ValueError
        return None
    return CertKey(cert, key)
