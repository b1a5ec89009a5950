"""capstan's Prefect blocks without a server: validation, masking, and how credentials apply to a spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capstan.blocks import ClusterSpec, SSHCredentials, parse_bastion
from capstan.errors import SpecError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def spec_text(**ssh: object) -> str:
    doc = yaml.safe_load((EXAMPLES / "single.yaml").read_text())
    doc["spec"].setdefault("ssh", {}).update(ssh)
    return yaml.safe_dump(doc)


def test_credentials_mask_the_key_and_passphrase_everywhere_they_print() -> None:
    creds = SSHCredentials(private_key=KEY, passphrase="hunter2-passphrase")
    for text in (repr(creds), str(creds), str(creds.model_dump()), creds.model_dump_json()):
        assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ" not in text
        assert "hunter2-passphrase" not in text
    assert creds.private_key.get_secret_value() == KEY


def test_credentials_reject_a_non_key_without_quoting_it() -> None:
    with pytest.raises(SpecError, match=r"^private_key: not a private key") as info:
        SSHCredentials(private_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq public-not-private")
    assert "AAAAC3NzaC1lZDI1NTE5AAAAIOMq" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "user", "address", "port"),
    [("jump.example.com", "root", "jump.example.com", 22), ("ops@10.0.0.1:2222", "ops", "10.0.0.1", 2222)],
)
def test_bastion_is_user_at_address_colon_port(text: str, user: str, address: str, port: int) -> None:
    b = parse_bastion(text)
    assert (b.user, b.address, b.port) == (user, address, port)


@pytest.mark.parametrize("text", ["a@b@c", "host:0", "host:99999", "two words", "host:port"])
def test_bad_bastion_is_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError, match=r"^bastion: "):
        SSHCredentials(private_key=KEY, bastion=text)


def test_cluster_spec_is_validated_on_creation_and_on_assignment() -> None:
    with pytest.raises(SpecError, match=r"^spec\.hosts\[0\]\.roles\[0\]: "):
        ClusterSpec(spec=spec_text().replace("control-plane", "controlplane"))
    with pytest.raises(SpecError, match=r"^cluster spec block: .*line"):
        ClusterSpec(spec="apiVersion: [unclosed")
    block = ClusterSpec(spec=spec_text())
    with pytest.raises(SpecError, match=r"^spec\.hosts\[0\]\.roles\[0\]: "):
        block.spec = spec_text().replace("control-plane", "controlplane")
    assert block.cluster().name == "solo"


def test_credentials_supply_user_port_bastion_and_replace_the_key_path() -> None:
    creds = SSHCredentials(user="ops", port=2200, private_key=KEY, bastion="jump@192.0.2.1")
    cluster = ClusterSpec(spec=spec_text(keyPath="/nonexistent/id_ed25519"), credentials=creds).cluster()
    ssh = cluster.spec.ssh
    assert (ssh.user, ssh.port, ssh.key_path) == ("ops", 2200, None)
    assert ssh.bastion is not None and (ssh.bastion.address, ssh.bastion.user) == ("192.0.2.1", "jump")


@pytest.mark.parametrize(
    ("ssh", "path"),
    [
        ({"user": "ubuntu"}, "spec.ssh.user"),
        ({"port": 2222}, "spec.ssh.port"),
        ({"bastion": {"address": "192.0.2.9"}}, "spec.ssh.bastion"),
    ],
)
def test_spec_and_credentials_that_disagree_are_rejected(ssh: dict[str, object], path: str) -> None:
    creds = SSHCredentials(user="root", port=22, private_key=KEY, bastion="192.0.2.1")
    with pytest.raises(SpecError, match=rf"^{path.replace('.', chr(92) + '.')}: "):
        ClusterSpec(spec=spec_text(**ssh), credentials=creds)


def test_spec_settings_equal_to_the_credentials_are_fine() -> None:
    creds = SSHCredentials(user="root", port=22, private_key=KEY)
    ClusterSpec(spec=spec_text(user="root", port=22), credentials=creds)
