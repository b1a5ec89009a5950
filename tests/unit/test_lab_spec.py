"""The lab's cluster.yaml, known_hosts and boot-link hiding, checked without creating any host."""

from __future__ import annotations

from pathlib import Path

import pytest

from capstan.errors import LabError
from capstan.lab.names import default_topology, host_ip
from capstan.lab.rootfs import boot_links_to_hide, hosts_file, new_keypair
from capstan.lab.specfile import check_document, known_hosts, spec_document, write_spec
from capstan.spec import load_spec

SUM = "ab" * 32


def _doc(hosts: int | None = None, checksums: dict[str, dict[str, dict[str, str]]] | None = None) -> dict:
    topo = default_topology(hosts)
    return spec_document(
        name="demo",
        hosts=[(h.name, host_ip(42, i), list(h.roles)) for i, h in enumerate(topo)],
        key_path=Path("/state/id_ed25519"),
        known_hosts_path=Path("/state/known_hosts"),
        mirror_url="http://10.250.42.1:8080",
        checksums=checksums or {},
    )


def test_lab_spec_loads_with_the_real_loader(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "cluster.yaml", _doc(checksums={"etcd": {"amd64": {"3.6.14": SUM}}}))
    cluster = load_spec(path)
    assert cluster.name == "demo"
    assert [h.name for h in cluster.hosts] == ["cp1", "cp2", "cp3", "w1", "w2"]
    assert cluster.host("cp1").address == "10.250.42.11" and cluster.host("w2").bind_ip == "10.250.42.15"
    assert [h.name for h in cluster.etcd_hosts] == ["cp1", "cp2", "cp3"]
    assert cluster.spec.ssh.user == "root" and cluster.spec.ssh.key_path == "/state/id_ed25519"
    assert cluster.spec.ssh.known_hosts_path == "/state/known_hosts"
    assert cluster.spec.artifacts.mirror == "http://10.250.42.1:8080"
    assert cluster.spec.artifacts.mode == "pull"
    assert cluster.spec.artifacts.extra_checksums == {"etcd": {"amd64": {"3.6.14": SUM}}}


@pytest.mark.parametrize("hosts", [1, 2, 4, 7])
def test_every_default_topology_is_a_valid_cluster(hosts: int) -> None:
    check_document(_doc(hosts))


def test_an_invalid_topology_is_a_lab_error_naming_the_field() -> None:
    doc = _doc(1)
    doc["spec"]["hosts"][0]["roles"] = ["worker"]
    with pytest.raises(LabError, match=r"spec\.hosts"):
        check_document(doc)


def test_known_hosts_lists_name_and_ip() -> None:
    key = new_keypair("root@cp1")
    assert key.public.startswith("ssh-ed25519 ") and key.public.endswith(" root@cp1")
    assert key.private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    line = known_hosts([("cp1", "10.250.42.11", key.public)])
    assert line == f"cp1,10.250.42.11 {' '.join(key.public.split()[:2])}\n"


def test_etc_hosts_names_every_lab_host() -> None:
    text = hosts_file([("cp1", "10.250.42.11"), ("w1", "10.250.42.14")])
    assert "127.0.0.1\tlocalhost" in text and "10.250.42.14\tw1\n" in text


def test_only_sshd_keeps_its_start_links(tmp_path: Path) -> None:
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    for unit in ("ssh.service", "etcd.service", "haproxy.service"):
        (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    rc2 = tmp_path / "etc/rc2.d"
    rc2.mkdir(parents=True)
    for link in ("S01ssh", "S01etcd", "K01nginx"):
        (rc2 / link).symlink_to("../init.d/x")
    hidden = boot_links_to_hide(tmp_path)
    assert hidden == [
        "etc/systemd/system/multi-user.target.wants/etcd.service",
        "etc/systemd/system/multi-user.target.wants/haproxy.service",
        "etc/rc2.d/S01etcd",
    ]
