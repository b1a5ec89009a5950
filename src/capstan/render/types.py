"""The values rendering produces and consumes: files for a host, and the per-cluster secrets.

``RenderedFile`` carries everything an idempotent "put file" needs (bytes, mode, owner) plus a
``secret`` flag, so the ops layer can keep the content out of logs, diffs and task results. Its
``content`` stays out of ``repr`` for the same reason.

``Secrets`` are generated once per cluster (``new_secrets``) and live on the first control plane; the
flows read them back and hand them to rendering, which never invents them. They are validated here so a
truncated or hand-edited value fails before it reaches a host, and the error never echoes the value.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field

from capstan.errors import RenderError

_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

SECRET_MODE = 0o600


@dataclass(frozen=True)
class RenderedFile:
    """One file for one host at an absolute ``path``; ``secret`` files are written 0600, never shown."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")


def text_file(path: str, text: str, *, secret: bool = False, mode: int | None = None) -> RenderedFile:
    """A UTF-8 file; secret files default to 0600, the others to 0644."""
    if mode is None:
        mode = SECRET_MODE if secret else 0o644
    return RenderedFile(path=path, content=text.encode("utf-8"), mode=mode, secret=secret)


@dataclass(frozen=True)
class Secrets:
    """Cluster-wide secrets rendering needs; generated once by :func:`new_secrets`.

    - ``encryption_key_b64``: 32 random bytes, base64; the key of the at-rest encryption provider.
    - ``bootstrap_token``: a kubeadm bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}`` for joins.

    There is no kubeadm certificate key: capstan places the control planes' certificates itself before
    they join, so kubeadm's encrypted certificate upload is never used.
    """

    encryption_key_b64: str = field(repr=False)
    bootstrap_token: str = field(repr=False)

    def __post_init__(self) -> None:
        try:
            key = base64.b64decode(self.encryption_key_b64, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise RenderError("secrets.encryption_key_b64: must be 32 random bytes, base64-encoded")
        if not _TOKEN.fullmatch(self.bootstrap_token):
            raise RenderError("secrets.bootstrap_token: must match [a-z0-9]{6}.[a-z0-9]{16}")

    @property
    def bootstrap_token_id(self) -> str:
        """The public half of the token (kubeadm names the Secret ``bootstrap-token-<id>``)."""
        return self.bootstrap_token.split(".", 1)[0]


def new_secrets() -> Secrets:
    """Fresh secrets from the OS CSPRNG; call once per cluster and store the result on the first CP."""
    token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
    token += "." + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    return Secrets(
        encryption_key_b64=base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
        bootstrap_token=token,
    )
