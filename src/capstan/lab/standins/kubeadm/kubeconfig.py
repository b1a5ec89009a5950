"""Kubeconfig files as kubeadm writes them (embedded credentials), and the two facts it reads back.

kubeadm keeps a kubeconfig that is already on disk (capstan places admin.conf, controller-manager.conf,
scheduler.conf and kubelet.conf itself) as long as it trusts the same CA; one signed by another CA is a
hard error, one pointing at another server only a warning, as with real kubeadm.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from capstan.lab.standins import host_path


def render(cluster_name: str, server: str, ca_pem: bytes, user: str, cert_pem: bytes, key_pem: bytes) -> str:
    context = f"{user}@{cluster_name}"
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def render_token(cluster_name: str, server: str, ca_pem: bytes, user: str, token: str) -> str:
    """A bootstrap kubeconfig (``bootstrap-kubelet.conf``): the token instead of a certificate."""
    doc = yaml.safe_load(render(cluster_name, server, ca_pem, user, b"", b""))
    doc["users"][0]["user"] = {"token": token}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def cluster_info(server: str, ca_pem: bytes) -> str:
    """The kubeconfig kubeadm puts in the ``cluster-info`` ConfigMap: a cluster and no user."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "", "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server}}],
        "contexts": [],
        "current-context": "",
        "preferences": {},
        "users": [],
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parse(text: str | bytes) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("kind") != "Config":
        raise ValueError("not a kubeconfig (kind: Config)")
    return doc


def _current(doc: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    ctx_name = doc.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
    wanted = contexts.get(ctx_name, {}).get(key)
    entries = [e for e in doc.get(section) or [] if isinstance(e, dict)]
    for entry in entries:
        if entry.get("name") == wanted or (wanted is None and len(entries) == 1):
            found = entry.get(key)
            return found if isinstance(found, dict) else {}
    return {}


def server_and_ca(text: str | bytes) -> tuple[str, bytes]:
    """The current cluster's server URL and CA PEM (empty when not embedded)."""
    cluster = _current(_parse(text), "clusters", "cluster")
    ca = cluster.get("certificate-authority-data")
    return str(cluster.get("server", "")), base64.b64decode(ca) if isinstance(ca, str) else b""


def client_cert_pem(text: str | bytes) -> bytes:
    """The current user's client certificate, embedded or (after a TLS bootstrap) from its file."""
    user = _current(_parse(text), "users", "user")
    data = user.get("client-certificate-data")
    if isinstance(data, str):
        return base64.b64decode(data)
    ref = user.get("client-certificate")
    if isinstance(ref, str) and ref.startswith("/") and host_path(ref).is_file():
        return host_path(ref).read_bytes()
    return b""


def client_key_pem(text: str | bytes) -> bytes:
    user = _current(_parse(text), "users", "user")
    data = user.get("client-key-data")
    return base64.b64decode(data) if isinstance(data, str) else b""


def replace_credentials(text: str | bytes, cert_pem: bytes, key_pem: bytes) -> str:
    """The same kubeconfig with the current user's embedded certificate and key swapped (renewal)."""
    doc = _parse(text)
    user = _current(doc, "users", "user")
    user["client-certificate-data"] = _b64(cert_pem)
    user["client-key-data"] = _b64(key_pem)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
