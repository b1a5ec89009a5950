"""Recovering the cluster secrets from a control plane's own files (when the first one is dead).

The files are the ones capstan renders for the host, so a change to the templates that the recovery
no longer understands fails here.
"""

from __future__ import annotations

from test_create_support import cluster

from capstan.render import new_secrets, render_host
from capstan.render.apiserver import ENCRYPTION_CONFIG
from capstan.tasks.create._kubeadm import KUBEADM_CONFIG
from capstan.tasks.remove.remote import bootstrap_token_of, decode_secrets, encode_secrets, encryption_key_of

CA_HASH = "sha256:" + "ab" * 32


def test_secrets_recovered_from_a_joined_control_plane_files() -> None:
    c = cluster()
    secrets = new_secrets()
    files = render_host(c, "cp2", secrets, ca_cert_hash=CA_HASH)
    assert encryption_key_of(files[ENCRYPTION_CONFIG].content) == secrets.encryption_key_b64
    assert bootstrap_token_of(files[KUBEADM_CONFIG].content) == secrets.bootstrap_token


def test_first_control_plane_init_config_names_the_token_too() -> None:
    secrets = new_secrets()
    files = render_host(cluster(), "cp1", secrets)
    assert bootstrap_token_of(files[KUBEADM_CONFIG].content) == secrets.bootstrap_token


def test_unreadable_files_recover_nothing() -> None:
    assert encryption_key_of(b"") is None and encryption_key_of(b"resources: [") is None
    assert bootstrap_token_of(b"kind: JoinConfiguration\n") is None and bootstrap_token_of(b"a: [") is None


def test_secrets_file_round_trip() -> None:
    secrets = new_secrets()
    assert decode_secrets(encode_secrets(secrets)) == secrets
    assert decode_secrets(b"{}") is None and decode_secrets(b"not json") is None
