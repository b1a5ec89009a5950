"""``kubeadm-certs``: the shared control-plane keys, encrypted with the certificate key (AES-256-GCM).

Same scheme as real kubeadm: each file is sealed as ``nonce(12) || ciphertext+tag`` with the 32-byte
key given as 64 hex digits, and stored base64 in the ``kubeadm-certs`` Secret of kube-system, whose
keys are the file names with ``/`` turned into ``-``. With external etcd, the etcd CA and client pair
travel as ``external-etcd-ca.crt``, ``external-etcd.crt`` and ``external-etcd.key``.
"""

from __future__ import annotations

import base64
import os
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from capstan.lab.standins.kubeadm.base import KubeadmError, path, say, write_file
from capstan.lab.standins.kubeadm.config import NodeSetup

SECRET = "kubeadm-certs"
SECRET_PATH = f"/api/v1/namespaces/kube-system/secrets/{SECRET}"
PHASE = "control-plane-prepare/download-certs"


def new_certificate_key() -> str:
    return secrets.token_hex(32)


def _key(hex_key: str) -> bytes:
    try:
        key = bytes.fromhex(hex_key)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KubeadmError("certificate key must be 64 hexadecimal characters (32 bytes)", PHASE)
    return key


def encrypt(data: bytes, hex_key: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(hex_key)).encrypt(nonce, data, None)


def decrypt(blob: bytes, hex_key: str) -> bytes:
    try:
        return AESGCM(_key(hex_key)).decrypt(blob[:12], blob[12:], None)
    except (InvalidTag, ValueError):
        raise KubeadmError(
            "error decoding secret data with provided key: cipher: message authentication failed", PHASE
        ) from None


def files_to_transfer(node: NodeSetup) -> dict[str, str]:
    """Secret key -> host file of what a new control plane needs from the first one."""
    pki = node.pki_dir
    files = {
        name: f"{pki}/{name}"
        for name in ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub")
    }
    external = node.cluster["etcd"]["external"]
    files["external-etcd-ca.crt"] = str(external.get("caFile") or "")
    files["external-etcd.crt"] = str(external.get("certFile") or "")
    files["external-etcd.key"] = str(external.get("keyFile") or "")
    return {k: v for k, v in files.items() if v}


def secret_body(node: NodeSetup, hex_key: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, str] = {}
    for name, host_file in files_to_transfer(node).items():
        if not path(host_file).exists():
            raise KubeadmError(f"failed to read {host_file}: no such file", "upload-certs")
        data[name] = base64.b64encode(encrypt(path(host_file).read_bytes(), hex_key)).decode()
    metadata: dict[str, Any] = {"name": SECRET, "namespace": "kube-system"}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}


def write_downloaded(node: NodeSetup, secret: dict[str, Any], hex_key: str) -> int:
    """Decrypt the Secret's files into place, only where a file is missing; returns how many were written."""
    written = 0
    data = secret.get("data") or {}
    for name, host_file in files_to_transfer(node).items():
        if name not in data:
            raise KubeadmError(f"the {SECRET} Secret has no {name}", PHASE)
        content = decrypt(base64.b64decode(data[name]), hex_key)
        if path(host_file).exists():
            continue
        write_file(host_file, content, 0o600 if name.endswith(".key") else 0o644)
        written += 1
    say(f"[download-certs] Saving the certificates to the folder: {node.pki_dir!r} ({written} missing files)")
    return written
