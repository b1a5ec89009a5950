"""``SSHCredentials``: the key (and its passphrase) capstan logs in with, kept in the Prefect server.

The key is a ``SecretStr``: its repr, str and the API's default view are masked. capstan reads the
value only where a transport is built (``capstan.tasks.session``); it is never a task parameter, a task
result or a log argument. Prefect does not redact log text, so masking at the source is the only
protection there is.
"""

from __future__ import annotations

import re
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from capstan.errors import SpecError
from capstan.spec.models import Bastion

_BASTION = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<address>[^@:\s]+)(?::(?P<port>\d{1,5}))?$")
_KEY_HEADER = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def parse_bastion(text: str, *, where: str = "bastion") -> Bastion:
    """``[user@]address[:port]`` (OpenSSH ``ProxyJump`` style) as the spec's ``Bastion``."""
    m = _BASTION.match(text.strip())
    port = int(m.group("port")) if m and m.group("port") else 22
    if m is None or not 1 <= port <= 65535:
        raise SpecError(where, f"{text!r} is not [user@]address[:port]")
    return Bastion(address=m.group("address"), port=port, user=m.group("user") or "root")


class SSHCredentials(Block):
    """How capstan logs in to a cluster's hosts: user, port, private key, optional bastion."""

    _block_type_name: ClassVar[str | None] = "capstan SSH credentials"
    _block_type_slug: ClassVar[str | None] = "capstan-ssh-credentials"
    _description: ClassVar[str | None] = (
        "SSH login for a capstan cluster: user, port, private key (kept secret), optional passphrase "
        "and jump host. Referenced by a capstan cluster spec block."
    )

    user: str = Field(default="root", min_length=1, description="SSH user on every host")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port on every host")
    private_key: SecretStr = Field(
        description="the private key itself (OpenSSH or PEM text: ed25519, ECDSA or RSA)"
    )
    passphrase: SecretStr | None = Field(default=None, description="passphrase of the key, if it has one")
    bastion: str | None = Field(
        default=None, description="jump host as [user@]address[:port]; the same key logs in there"
    )

    @field_validator("private_key")
    @classmethod
    def _looks_like_a_key(cls, value: SecretStr) -> SecretStr:
        # The message never quotes the value: it is a secret even when it is wrong.
        if not _KEY_HEADER.search(value.get_secret_value()):
            raise SpecError(
                "private_key", "not a private key (expected a -----BEGIN ... PRIVATE KEY----- block)"
            )
        return value

    @field_validator("bastion")
    @classmethod
    def _bastion_form(cls, value: str | None) -> str | None:
        if value:
            parse_bastion(value)
        return value or None

    def bastion_spec(self) -> Bastion | None:
        return parse_bastion(self.bastion) if self.bastion else None
