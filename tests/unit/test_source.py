"""Resolving a flow's ``spec`` parameter without a server: files, and what is refused before any lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from capstan.errors import SpecError
from capstan.flows.source import resolve_spec
from capstan.tasks.session import PrivateKey, Session

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_file_path_resolves_to_its_cluster_without_a_key() -> None:
    source = resolve_spec(str(EXAMPLES / "single.yaml"))
    assert source.cluster.name == "solo"
    assert source.origin == f"file {EXAMPLES / 'single.yaml'}"
    assert source.private_key is None


def test_a_relative_path_is_relative_to_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)
    assert resolve_spec("single.yaml").cluster.name == "solo"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", r"^spec: empty"),
        ("   ", r"^spec: empty"),
        ("/no/such/cluster.yaml", r"/no/such/cluster\.yaml: no such file"),
        ("Not_A_Block", r"Not_A_Block: no such file"),  # not a block name: only a path
        ("block:Bad_Name", r"^spec: block name 'Bad_Name': use lower-case"),
        ("block:", r"^spec: block name '': "),
    ],
)
def test_refused_before_any_server_is_asked(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        resolve_spec(spec)


def test_an_invalid_file_names_the_yaml_path(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text((EXAMPLES / "single.yaml").read_text().replace("control-plane", "controlplane"))
    with pytest.raises(SpecError, match=r"^spec\.hosts\[0\]\.roles\[0\]: "):
        resolve_spec(str(bad))


def test_private_key_never_shows_in_a_repr() -> None:
    key = PrivateKey("-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETBODY\n", passphrase="pp-secret")
    session = Session("run", resolve_spec(str(EXAMPLES / "single.yaml")).cluster, private_key=key)
    for text in (repr(key), repr(session)):
        assert "SECRETBODY" not in text and "pp-secret" not in text


def test_session_uses_the_block_key_only_with_the_fabric_factory() -> None:
    from capstan.remote.fake import FakeTransport

    cluster = resolve_spec(str(EXAMPLES / "single.yaml")).cluster
    made: list[str] = []

    def factory(c: object, host: object) -> FakeTransport:
        made.append(getattr(host, "name", ""))
        return FakeTransport(getattr(host, "name", ""))

    session = Session("run", cluster, factory=factory, private_key=PrivateKey("k"))
    session.transport("node1")
    assert made == ["node1"]  # a test factory is used as given


def test_session_builds_fabric_transports_from_the_in_memory_key(tmp_path: Path) -> None:
    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from capstan.remote.fabric import FabricTransport
    from capstan.spec import parse_spec

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    doc = yaml.safe_load((EXAMPLES / "single.yaml").read_text())
    doc["spec"]["ssh"] = {"knownHostsPath": str(tmp_path / "known_hosts"), "keyPath": "/nonexistent/key"}
    session = Session("run", parse_spec(doc), private_key=PrivateKey(pem.decode()))
    transport = session.reader("node1")  # builds, does not connect
    assert isinstance(transport, FabricTransport)
    assert transport._pkey is not None and transport._pkey.get_name() == "ssh-ed25519"
