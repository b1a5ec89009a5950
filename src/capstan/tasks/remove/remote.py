"""What remove-node reads from the cluster before it decides: etcd's members and their health, and the
cluster secrets when the first control plane is the one leaving.

Everything is read through hosts that stay (the remaining etcd members, the new first control plane),
except the cluster secrets, which are first asked of the leaving host itself while it is reachable.
Nothing here changes a host.

Why the secrets matter: the at-rest encryption key and the bootstrap token live in one file on the first
control plane (``material.SECRETS_PATH``); every render of the remaining cluster reads them from *its*
first control plane. Without a handover, that host would have no such file and the next render would
mint new secrets: a new encryption key would leave every stored Secret unreadable. When the leaving
host cannot be read (dead, or ``--unreachable``), the secrets are recovered from what the new first
control plane already holds: the key from its encryption configuration, the token from its kubeadm
join configuration.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from capstan.errors import CapstanError, CommandFailed, TransportError
from capstan.render import Secrets
from capstan.render.apiserver import ENCRYPTION_CONFIG
from capstan.render.types import new_secrets
from capstan.tasks.create._kubeadm import KUBEADM_CONFIG
from capstan.tasks.etcd.model import etcdctl_argv
from capstan.tasks.material import SECRETS_PATH, read_files
from capstan.tasks.remove.model import Member, parse_cluster_health, parse_members
from capstan.tasks.session import Session

ETCDCTL_TIMEOUT = 45.0


def etcd_view(session: Session, candidates: list[str]) -> tuple[str, list[Member], dict[str, bool]]:
    """(the member that answered, ``member list``, ``endpoint health --cluster``) from the first of
    ``candidates`` that answers; a dead member shows as unhealthy, not as an error."""
    tried: list[str] = []
    for name in candidates:
        try:
            t = session.transport(name)
            listed = t.run(
                etcdctl_argv("member", "list", "-w", "json"), sudo=True, check=False, timeout=ETCDCTL_TIMEOUT
            )
            if listed.exit_code != 0:
                tried.append(f"{name}: member list exited {listed.exit_code}: {listed.stderr.strip()[:200]}")
                continue
            # Exits non-zero when any member is unhealthy; the JSON on stdout still covers every one.
            health = t.run(
                etcdctl_argv("endpoint", "health", "--cluster", "-w", "json"),
                sudo=True,
                check=False,
                timeout=ETCDCTL_TIMEOUT,
            )
        except (TransportError, CommandFailed) as exc:
            tried.append(f"{name}: {exc}")
            continue
        return name, parse_members(listed.stdout, name), parse_cluster_health(health.stdout)
    raise CapstanError("cannot read the etcd member list from any remaining etcd host: " + "; ".join(tried))


def encode_secrets(secrets: Secrets) -> bytes:
    """The secrets file's content, as ``material`` writes it."""
    return json.dumps(
        {"encryption_key_b64": secrets.encryption_key_b64, "bootstrap_token": secrets.bootstrap_token}
    ).encode()


def decode_secrets(raw: bytes) -> Secrets | None:
    try:
        return Secrets(**json.loads(raw))
    except (ValueError, TypeError):
        return None


def read_secrets(session: Session, host: str) -> Secrets | None:
    """The secrets file of ``host``, or None when it has none (or cannot be reached)."""
    try:
        found = read_files(session, host, (SECRETS_PATH,))
    except (TransportError, CommandFailed):
        return None
    raw = found.get(SECRETS_PATH)
    return decode_secrets(raw) if raw else None


def encryption_key_of(text: bytes) -> str | None:
    """The first key of the first provider of an EncryptionConfiguration (the one writes use)."""
    try:
        doc = yaml.safe_load(text)
        for provider in doc["resources"][0]["providers"]:
            for conf in provider.values():
                if isinstance(conf, dict) and conf.get("keys"):
                    return str(conf["keys"][0]["secret"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return None


def bootstrap_token_of(text: bytes) -> str | None:
    """The bootstrap token a kubeadm Init- or JoinConfiguration names."""
    try:
        docs: list[Any] = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return None
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        token = ((doc.get("discovery") or {}).get("bootstrapToken") or {}).get("token")
        if token:
            return str(token)
        for entry in doc.get("bootstrapTokens") or ():
            if isinstance(entry, dict) and entry.get("token"):
                return str(entry["token"])
    return None


def recover_secrets(session: Session, host: str, *, encryption: bool) -> Secrets | None:
    """Rebuild the secrets from ``host``'s encryption config and kubeadm config (None: not possible).

    With encryption at rest off there is no key to keep; a fresh one stands in (nothing uses it).
    """
    found = read_files(session, host, (ENCRYPTION_CONFIG, KUBEADM_CONFIG))
    token = bootstrap_token_of(found.get(KUBEADM_CONFIG, b""))
    key = (
        encryption_key_of(found.get(ENCRYPTION_CONFIG, b""))
        if encryption
        else new_secrets().encryption_key_b64
    )
    if token is None or key is None:
        return None
    try:
        return Secrets(encryption_key_b64=key, bootstrap_token=token)
    except CapstanError:
        return None


def secrets_for_handover(
    full: Session, rest: Session, node: str, new_first: str, *, unreachable: bool
) -> Secrets:
    """The cluster secrets the new first control plane must hold, or a refusal naming why not."""
    found = None if unreachable else read_secrets(full, node)
    found = found or read_secrets(rest, new_first)
    enabled = rest.cluster.spec.security.encryption_at_rest.enabled
    found = found or recover_secrets(rest, new_first, encryption=enabled)
    if found is None:
        raise CapstanError(
            f"{node} is the first control plane and its cluster secrets ({SECRETS_PATH}) cannot be read, "
            f"nor recovered from {new_first}'s {ENCRYPTION_CONFIG} and {KUBEADM_CONFIG}: refusing to go on"
        )
    return found
