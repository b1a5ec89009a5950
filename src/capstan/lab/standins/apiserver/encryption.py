"""Encryption at rest from --encryption-provider-config (EncryptionConfiguration v1).

Why real: capstan can turn on secret encryption and check it (the value in etcd must start with
``k8s:enc:<provider>:v1:<key>:``); a stand-in that stored plaintext would let that check pass for
nothing. The envelope formats are the real apiserver's: aescbc = IV(16) + AES-CBC/PKCS#7 of the
value; aesgcm = nonce(12) + AES-GCM with the etcd key as associated data; secretbox = nonce(24) +
XSalsa20-Poly1305 (``secretbox.py``). The first provider encrypts; all of them may decrypt; a value
without a prefix is readable only if ``identity`` is listed, as on a real server. KMS is refused.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .resources import Resource
from .secretbox import open_box, seal

SUPPORTED = ("identity", "aescbc", "aesgcm", "secretbox")


class EncryptionConfigError(Exception):
    """The configuration file is missing, malformed or asks for an unsupported provider."""


@dataclass(frozen=True)
class _Provider:
    kind: str
    keys: tuple[tuple[str, bytes], ...] = ()

    def prefix(self, name: str) -> bytes:
        return f"k8s:enc:{self.kind}:v1:{name}:".encode()

    def encrypt(self, etcd_key: str, data: bytes) -> bytes:
        if self.kind == "identity":
            return data
        name, key = self.keys[0]
        if self.kind == "aescbc":
            iv = os.urandom(16)
            padder = padding.PKCS7(128).padder()
            enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            body = enc.update(padder.update(data) + padder.finalize()) + enc.finalize()
            return self.prefix(name) + iv + body
        if self.kind == "aesgcm":
            nonce = os.urandom(12)
            return self.prefix(name) + nonce + AESGCM(key).encrypt(nonce, data, etcd_key.encode())
        nonce = os.urandom(24)
        return self.prefix(name) + nonce + seal(data, nonce, key)

    def decrypt(self, etcd_key: str, name: str, body: bytes) -> bytes | None:
        key = dict(self.keys).get(name)
        if key is None:
            return None
        if self.kind == "aescbc":
            dec = Cipher(algorithms.AES(key), modes.CBC(body[:16])).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(dec.update(body[16:]) + dec.finalize()) + unpadder.finalize()
        if self.kind == "aesgcm":
            return AESGCM(key).decrypt(body[:12], body[12:], etcd_key.encode())
        return open_box(body[24:], body[:24], key)


@dataclass
class Encryption:
    """Providers per group-resource (``secrets``, ``configmaps``, ``deployments.apps``)."""

    by_resource: dict[str, list[_Provider]] = field(default_factory=dict)

    def _providers(self, res: Resource) -> list[_Provider]:
        return self.by_resource.get(res.group_resource) or self.by_resource.get("*.*") or []

    def encrypt(self, res: Resource, etcd_key: str, data: bytes) -> bytes:
        providers = self._providers(res)
        return providers[0].encrypt(etcd_key, data) if providers else data

    def decrypt(self, res: Resource, etcd_key: str, value: bytes) -> bytes:
        providers = self._providers(res)
        if not value.startswith(b"k8s:enc:"):
            if providers and not any(p.kind == "identity" for p in providers):
                raise ValueError(f"{etcd_key}: no matching prefix found (the value is not encrypted)")
            return value
        parts = value.split(b":", 5)
        if len(parts) < 6:
            raise ValueError(f"{etcd_key}: malformed encryption envelope")
        kind, name, body = parts[2].decode(), parts[4].decode(), parts[5]
        for p in providers:
            if p.kind == kind and (plain := p.decrypt(etcd_key, name, body)) is not None:
                return plain
        raise ValueError(f"{etcd_key}: no provider can decrypt {kind} key {name!r}")


def _keys(kind: str, conf: Any, where: str) -> tuple[tuple[str, bytes], ...]:
    keys = (conf or {}).get("keys") or []
    if not keys:
        raise EncryptionConfigError(f"{where}.{kind}.keys: at least one key is required")
    out = []
    for i, k in enumerate(keys):
        try:
            secret = base64.b64decode(k["secret"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise EncryptionConfigError(f"{where}.{kind}.keys[{i}].secret: not valid base64") from None
        sizes = (32,) if kind == "secretbox" else (16, 24, 32)
        if len(secret) not in sizes:
            raise EncryptionConfigError(
                f"{where}.{kind}.keys[{i}].secret: key must be {sizes} bytes, not {len(secret)}"
            )
        out.append((str(k.get("name", "")), secret))
    return tuple(out)


def load(path: str) -> Encryption:
    """Parse an EncryptionConfiguration file; EncryptionConfigError names what is wrong."""
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise EncryptionConfigError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "EncryptionConfiguration":
        raise EncryptionConfigError(f"{path}: kind must be EncryptionConfiguration")
    if doc.get("apiVersion") not in ("apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1"):
        raise EncryptionConfigError(f"{path}: unsupported apiVersion {doc.get('apiVersion')!r}")
    out = Encryption()
    for i, entry in enumerate(doc.get("resources") or []):
        where = f"{path}: resources[{i}]"
        providers: list[_Provider] = []
        for j, prov in enumerate(entry.get("providers") or []):
            if not isinstance(prov, dict) or len(prov) != 1:
                raise EncryptionConfigError(f"{where}.providers[{j}]: exactly one provider per entry")
            ((kind, conf),) = prov.items()
            if kind not in SUPPORTED:
                raise EncryptionConfigError(
                    f"{where}.providers[{j}]: provider {kind!r} is not supported by the stand-in"
                )
            keys = () if kind == "identity" else _keys(kind, conf, f"{where}.providers[{j}]")
            providers.append(_Provider(kind, keys))
        if not providers:
            raise EncryptionConfigError(f"{where}.providers: at least one provider is required")
        for name in entry.get("resources") or []:
            out.by_resource[str(name)] = providers
    return out
