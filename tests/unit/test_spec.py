"""Spec loading and validation: defaults, and every rejection names the YAML path to fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.errors import SpecError
from capstan.spec import dump_spec, load_spec, parse_spec, parse_spec_text
from capstan.spec.matrix import SUPPORTED, Combination, matrix_markdown, why_unsupported

EXAMPLES = Path(__file__).parents[2] / "examples"


def base() -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / "ha.yaml").read_text())
    assert isinstance(data, dict)
    return data


def reject(data: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value


@pytest.mark.parametrize("name", ["ha.yaml", "single.yaml", "separate-etcd.yaml"])
def test_examples_load(name: str) -> None:
    c = load_spec(EXAMPLES / name)
    assert c.control_planes
    assert len(c.etcd_hosts) % 2 == 1


def test_production_defaults() -> None:
    c = parse_spec(base())
    s = c.spec
    assert s.security.authorization_modes == ["Node", "RBAC"]
    assert s.security.encryption_at_rest.enabled
    assert s.security.audit.enabled
    assert s.security.anonymous_auth is False
    assert (s.security.pod_security.enforce, s.security.pod_security.audit) == ("baseline", "restricted")
    assert s.addons.metrics_server.enabled and not s.addons.local_path_provisioner.enabled
    assert s.control_plane_endpoint.mode == "local-lb" and s.control_plane_endpoint.local_lb == "haproxy"
    assert s.network.plugin == "calico" and s.container_runtime.name == "containerd"
    assert s.kubernetes.proxy_mode == "ipvs"
    assert str(s.kubernetes.service_cidr) == "10.233.0.0/18"
    assert s.kubernetes.first_service_ip == "10.233.0.1"
    assert s.pki.key_algorithm == "ecdsa-p256"
    assert c.endpoint == ("127.0.0.1", 6444)
    assert [h.name for h in c.workers] == ["w1", "w2"]
    assert str(c.host("w2").taints[0]) == "dedicated=batch:NoSchedule"


def test_empty_version_resolves_to_newest_pinned() -> None:
    from capstan.versions import default_kubernetes_version

    data = base()
    del data["spec"]["kubernetes"]
    assert parse_spec(data).spec.kubernetes.version == default_kubernetes_version()


def test_version_with_v_prefix() -> None:
    data = base()
    data["spec"]["kubernetes"]["version"] = "v1.36.4"
    assert parse_spec(data).spec.kubernetes.version == "1.36.4"


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (
            lambda d: [h.update(roles=["etcd"]) for h in d["spec"]["hosts"][:3]],
            "spec.hosts",
            "no host has the control-plane role",
        ),
        (lambda d: d["spec"]["hosts"][2].update(roles=["worker"]), "spec.hosts[1].roles", "odd"),
        (lambda d: d["spec"]["hosts"][3].update(roles=["worker", "worker"]), "spec.hosts[3].roles", "repeat"),
        (lambda d: d["spec"]["hosts"][3].update(roles=["master"]), "spec.hosts[3].roles[0]", None),
        (lambda d: d["spec"]["hosts"][4].update(name="w1"), "spec.hosts[4].name", "duplicate"),
        (lambda d: d["spec"]["hosts"][4].update(address="192.0.2.21"), "spec.hosts[4].address", "duplicate"),
        (lambda d: d["spec"]["hosts"][4].update(ip="192.0.2.21"), "spec.hosts[4].ip", "duplicate"),
        (lambda d: d["spec"]["hosts"][4].update(Roles=["worker"]), "spec.hosts[4].Roles", "unknown field"),
        (lambda d: d["spec"]["hosts"][0].pop("roles"), "spec.hosts[0].roles", "required"),
        (lambda d: d["spec"]["hosts"][0].update(name="CP_1"), "spec.hosts[0].name", None),
        (lambda d: d["spec"]["hosts"][0].update(address="cp1.example"), "spec.hosts[0]", "ip is required"),
        (lambda d: d["spec"].update(hosts=[]), "spec.hosts", None),
        (
            lambda d: d["spec"]["kubernetes"].update(podCidr="10.233.0.0/16"),
            "spec.kubernetes.podCidr",
            "overlaps",
        ),
        (
            lambda d: d["spec"]["kubernetes"].update(serviceCidr="10.233.0.1/18"),
            "spec.kubernetes.serviceCidr",
            "host bits",
        ),
        (
            lambda d: d["spec"]["hosts"][0].update(ip="10.233.70.5", address="10.233.70.5"),
            "spec.hosts[0].ip",
            "pod CIDR",
        ),
        (lambda d: d["spec"]["kubernetes"].update(nodePrefix=16), "spec.kubernetes.nodePrefix", None),
        (lambda d: d["spec"]["kubernetes"].update(version="1.20.0"), "spec.kubernetes.version", "checksums"),
        (lambda d: d["spec"]["kubernetes"].update(version="latest"), "spec.kubernetes.version", None),
        (
            lambda d: d["spec"].update(network={"plugin": "cilium"}),
            "spec.kubernetes.proxyMode",
            "not supported with cilium",
        ),
        (lambda d: d["spec"].update(network={"plugin": "weave"}), "spec.network.plugin", None),
        (
            lambda d: d["spec"].update(controlPlaneEndpoint={"mode": "external"}),
            "spec.controlPlaneEndpoint.address",
            "needs an address",
        ),
        (
            lambda d: d["spec"].update(controlPlaneEndpoint={"mode": "vip", "address": "192.0.2.11"}),
            "spec.controlPlaneEndpoint.address",
            "already the ip",
        ),
        (lambda d: d["spec"].update(upgrade={"workerBatch": "0%"}), "spec.upgrade.workerBatch", None),
        (lambda d: d["spec"].update(upgrade={"workerBatch": 0}), "spec.upgrade.workerBatch", None),
        (lambda d: d.update(kind="Clusters"), "kind", None),
        (lambda d: d.update(apiVersion="v1"), "apiVersion", None),
        (lambda d: d["metadata"].update(name="Prod!"), "metadata.name", None),
        (
            lambda d: (
                d["spec"]["artifacts"].update(extraChecksums={"kubeadm": {"amd64": {"1.37.0": "abc"}}})
                if "artifacts" in d["spec"]
                else d["spec"].update(artifacts={"extraChecksums": {"kubeadm": {"amd64": {"1.37.0": "abc"}}}})
            ),
            "spec.artifacts.extraChecksums.kubeadm.amd64['1.37.0']",
            None,
        ),
    ],
)
def test_rejections_name_the_path(mutate: Any, path: str, fragment: str | None) -> None:
    data = base()
    mutate(data)
    err = reject(data)
    assert err.path == path, str(err)
    assert str(err).startswith(path)
    if fragment:
        assert fragment in str(err)


def test_user_checksums_admit_an_unlisted_version() -> None:
    data = base()
    data["spec"]["kubernetes"]["version"] = "1.37.0"
    with pytest.raises(SpecError, match=r"spec\.kubernetes\.version"):
        parse_spec(copy.deepcopy(data))
    sums = {name: {"amd64": {"1.37.0": "a" * 64}} for name in ("kubeadm", "kubelet", "kubectl")}
    data["spec"]["artifacts"] = {"extraChecksums": sums}
    assert parse_spec(data).spec.kubernetes.version == "1.37.0"


def test_yaml_errors_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="line 2"):
        parse_spec_text("apiVersion: x\n  bad: [unclosed\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec_text("- a\n- b\n")
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("batch", "workers", "expected"), [
    ("20%", 10, 2), ("20%", 4, 1), ("33.3%", 3, 1), ("50%", 3, 1), ("100%", 7, 7),
    ("10%", 30, 3), ("0.5%", 1000, 5), (3, 2, 2), (5, 100, 5), ("20%", 0, 0),
])  # fmt: skip
def test_worker_batch_is_float_correct(batch: int | str, workers: int, expected: int) -> None:
    data = base()
    data["spec"]["upgrade"] = {"workerBatch": batch}
    assert parse_spec(data).spec.upgrade.batch_size(workers) == expected


def test_dump_round_trips() -> None:
    c = load_spec(EXAMPLES / "separate-etcd.yaml")
    again = parse_spec_text(dump_spec(c))
    assert again == c


def test_matrix_table_and_reasons() -> None:
    assert Combination("calico", "containerd", "ipvs", "haproxy") in SUPPORTED
    assert why_unsupported(Combination("cilium", "cri-o", "ipvs", "vip")) is not None
    assert why_unsupported(Combination("flannel", "containerd", "iptables", "nginx")) is None
    table = matrix_markdown()
    assert "| cilium |" in table and str(len(SUPPORTED)) in table
