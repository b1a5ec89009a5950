"""The cluster secrets (encryption key, bootstrap token) live on the first control plane; a cluster
that already encrypts Secrets never gets a new key just because the file went missing."""

from __future__ import annotations

import base64
import json

import pytest
from test_create_support import cluster

from capstan.errors import CapstanError
from capstan.remote import FakeTransport
from capstan.tasks.material import (
    _ROOT_FILES,
    EXISTING_CLUSTER_MARK,
    SECRETS_PATH,
    MaterialMissing,
    cluster_secrets,
    read_only,
    roots,
)
from capstan.tasks.session import Session


def first_cp_session(fake: FakeTransport) -> Session:
    c = cluster()
    return Session("unit", c, factory=lambda _c, _h: fake)


def test_existing_secrets_are_read_and_nothing_is_written() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    body = json.dumps({"encryption_key_b64": key, "bootstrap_token": "abcdef.0123456789abcdef"})
    fake = FakeTransport("cp1", files={SECRETS_PATH: body.encode()})
    secrets = cluster_secrets(first_cp_session(fake))
    assert secrets.bootstrap_token == "abcdef.0123456789abcdef"
    assert [c.kind for c in fake.calls] == ["get"]


def test_a_fresh_cluster_gets_new_secrets_written_0600() -> None:
    fake = FakeTransport("cp1").on(f"test -e {EXISTING_CLUSTER_MARK}", exit_code=1)
    secrets = cluster_secrets(first_cp_session(fake))
    written = json.loads(fake.files[SECRETS_PATH].data)
    assert written["bootstrap_token"] == secrets.bootstrap_token
    assert fake.files[SECRETS_PATH].mode == 0o600


def test_a_running_cluster_without_its_secrets_file_is_refused_and_nothing_is_written() -> None:
    fake = FakeTransport("cp1").on(f"test -e {EXISTING_CLUSTER_MARK}", exit_code=0)
    with pytest.raises(CapstanError, match=r"^cp1: .* is missing but .*refusing to make a new one"):
        cluster_secrets(first_cp_session(fake))
    assert SECRETS_PATH not in fake.files


def test_read_only_creates_nothing_on_a_new_cluster_and_the_normal_load_still_creates() -> None:
    """Phase 1 looks ahead under ``read_only``: no CA and no secrets yet means MaterialMissing, with
    nothing written and no judgement made (no ``test -e`` of the cluster mark); later, the pki
    phase's normal load creates them."""
    fake = FakeTransport("cp1").on(f"test -e {EXISTING_CLUSTER_MARK}", exit_code=1)
    session = first_cp_session(fake)
    with read_only():
        with pytest.raises(MaterialMissing, match=r"^cp1: no cluster secrets yet"):
            cluster_secrets(session)
        with pytest.raises(MaterialMissing, match=r"^cp1: no cluster CA yet"):
            roots(session)
        with pytest.raises(MaterialMissing):  # asked again: answered from this run's memo
            roots(session)
    assert [c.kind for c in fake.calls if c.kind == "put"] == []
    assert not any("test -e" in c.command for c in fake.calls)
    assert sum("base64" in c.command for c in fake.calls) == 1
    secrets = cluster_secrets(session)
    assert json.loads(fake.files[SECRETS_PATH].data)["bootstrap_token"] == secrets.bootstrap_token
    assert set(roots(session)) == set(_ROOT_FILES) <= set(fake.files)


def test_read_only_reads_existing_secrets_and_the_normal_load_reuses_them() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    body = json.dumps({"encryption_key_b64": key, "bootstrap_token": "abcdef.0123456789abcdef"})
    fake = FakeTransport("cp1", files={SECRETS_PATH: body.encode()})
    session = first_cp_session(fake)
    with read_only():
        looked = cluster_secrets(session)
    assert cluster_secrets(session) is looked
    assert [c.kind for c in fake.calls] == ["get"]


def test_read_only_ends_with_its_block_even_on_error() -> None:
    fake = FakeTransport("cp1").on(f"test -e {EXISTING_CLUSTER_MARK}", exit_code=1)
    session = first_cp_session(fake)
    with pytest.raises(MaterialMissing), read_only():
        cluster_secrets(session)
    assert cluster_secrets(session).bootstrap_token  # created: read-only is over
