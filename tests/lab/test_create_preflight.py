"""create-cluster phase 1 on real hosts: a host that cannot be reached stops the run before any change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capstan.errors import PhaseFailed
from capstan.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

LAB_HOSTS = [("cp1", ["control-plane", "etcd"]), ("w1", ["worker"]), ("w2", ["worker"])]


def fast_spec(lab: Lab, tmp_path: Path) -> Path:
    """The lab's spec with a short SSH connect timeout, so an unreachable host fails in seconds."""
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["spec"]["ssh"]["connectTimeout"] = 2
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_unreachable_host_fails_in_phase_one_and_nothing_changes(lab: Lab, tmp_path: Path) -> None:
    from capstan.flows.create import create_cluster

    spec = fast_spec(lab, tmp_path)
    lab.cut("w2")
    try:
        with pytest.raises(PhaseFailed) as info:
            create_cluster(spec=str(spec))
    finally:
        lab.heal("w2")
    message = str(info.value)
    assert message.startswith("phase facts failed")
    assert "w2" in message and "cp1" not in message and "w1:" not in message
    for host in ("cp1", "w1"):
        assert lab.exec(host, ["test", "-e", "/etc/kubernetes"]).returncode != 0
        assert lab.exec(host, ["test", "-e", "/etc/sysctl.d/99-capstan.conf"]).returncode != 0


def test_host_whose_ip_is_not_local_is_rejected_by_name(lab: Lab, tmp_path: Path) -> None:
    from capstan.flows.create import create_cluster

    doc = yaml.safe_load(fast_spec(lab, tmp_path).read_text())
    doc["spec"]["hosts"][1]["ip"] = "10.250.250.250"  # w1's bind address is not on w1
    spec = tmp_path / "bad-ip.yaml"
    spec.write_text(yaml.safe_dump(doc))
    with pytest.raises(PhaseFailed, match=r"w1: ip 10\.250\.250\.250 is not an address of this host"):
        create_cluster(spec=str(spec), until="facts")


def test_facts_phase_passes_on_healthy_hosts(lab: Lab) -> None:
    from capstan.flows.create import create_cluster

    result = create_cluster(spec=str(lab.spec_path), until="facts")
    assert set(result["hosts"]) == {"cp1", "w1", "w2"}
    assert result["changed"] == 0
