"""Reading a kubeconfig (the files kubeadm writes) into what an HTTPS client needs.

Supports what kubeadm and capstan put in them: the current context's cluster ``server`` with
``certificate-authority-data`` or ``certificate-authority`` (a path, relative to the kubeconfig's
folder) or ``insecure-skip-tls-verify``; the user's ``client-certificate(-data)`` and
``client-key(-data)``, or a ``token`` / ``tokenFile``. Anything else (exec plugins) is refused.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml


class KubeconfigError(Exception):
    """The kubeconfig is missing, malformed or uses something this reader does not support."""


@dataclass(frozen=True)
class Kubeconfig:
    server: str
    ca_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None
    token: str | None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the cluster CA (or nothing, if insecure) and presents the client certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode())
        if self.cert_pem and self.key_pem:
            load_cert_chain(ctx, self.cert_pem, self.key_pem)
        return ctx


def load_cert_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``SSLContext.load_cert_chain`` from memory (it reads only files): through a 0600 temp file."""
    fd, path = tempfile.mkstemp(prefix=".standin-cred-")
    try:
        os.write(fd, cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        os.close(fd)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def _named(doc: dict[str, Any], section: str, name: str, path: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            inner = entry.get(section[:-1])
            if isinstance(inner, dict):
                return inner
    raise KubeconfigError(f"{path}: {section} has no entry named {name!r}")


def _material(entry: dict[str, Any], key: str, base: str, path: str) -> bytes | None:
    data = entry.get(f"{key}-data")
    if isinstance(data, str) and data:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise KubeconfigError(f"{path}: {key}-data is not valid base64") from None
    ref = entry.get(key)
    if isinstance(ref, str) and ref:
        full = ref if os.path.isabs(ref) else os.path.join(base, ref)
        try:
            with open(full, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise KubeconfigError(f"{path}: {key} {full}: {exc.strerror}") from None
    return None


def load(path: str, context: str | None = None) -> Kubeconfig:
    """The connection settings of ``context`` (default: current-context) in the kubeconfig at ``path``."""
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise KubeconfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not YAML: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind", "Config") != "Config":
        raise KubeconfigError(f"{path}: not a kubeconfig (kind Config)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no current-context")
    ctx = _named(doc, "contexts", str(name), path)
    cluster = _named(doc, "clusters", str(ctx.get("cluster")), path)
    user = _named(doc, "users", str(ctx.get("user")), path) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(f"{path}: exec and auth-provider credentials are not supported")
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise KubeconfigError(f"{path}: cluster server must be an https:// URL, not {server!r}")
    base = os.path.dirname(os.path.abspath(path))
    token = user.get("token") if isinstance(user.get("token"), str) else None
    if not token and isinstance(user.get("tokenFile"), str):
        raw = _material({"t": user["tokenFile"]}, "t", base, path)
        token = raw.decode().strip() if raw else None
    return Kubeconfig(
        server=server.rstrip("/"),
        ca_pem=_material(cluster, "certificate-authority", base, path),
        cert_pem=_material(user, "client-certificate", base, path),
        key_pem=_material(user, "client-key", base, path),
        token=token,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )
