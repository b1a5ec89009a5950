"""`capstan plan --out`: every host's files and the PKI land on disk, keys private, nothing extra."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capstan.importers.kubespray import import_kubespray
from capstan.plan.output import write_plan_output
from capstan.spec import load_spec

ROOT = Path(__file__).parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "kubespray"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plan") / "out"
    assert write_plan_output(load_spec(ROOT / "examples" / "ha.yaml"), d) > 100
    return d


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_directory_is_private(out: Path) -> None:
    assert mode(out) == 0o700


def test_every_host_has_its_files(out: Path) -> None:
    hosts = {p.name for p in (out / "hosts").iterdir()}
    assert hosts == {"cp1", "cp2", "cp3", "w1", "w2"}
    cp1 = out / "hosts" / "cp1"
    for rel in (
        "etc/kubernetes/kubeadm-config.yaml",
        "etc/kubernetes/pki/ca.key",
        "etc/kubernetes/pki/apiserver.crt",
        "etc/ssl/etcd/member.key",
        "etc/etcd.env",
        "etc/kubernetes/encryption-config.yaml",
    ):
        assert (cp1 / rel).is_file(), rel
    w1 = out / "hosts" / "w1"
    assert (w1 / "etc/kubernetes/pki/ca.crt").is_file()
    assert not (w1 / "etc/kubernetes/pki/ca.key").exists()
    assert not (w1 / "etc/ssl/etcd").exists()
    assert not (w1 / "etc/etcd.env").exists()


def test_secrets_are_0600_and_certs_0644(out: Path) -> None:
    keys = list(out.glob("hosts/*/**/*.key"))
    assert keys
    assert all(mode(k) == 0o600 for k in keys)
    for secret in ("etc/kubernetes/encryption-config.yaml", "etc/kubernetes/admin.conf"):
        assert mode(out / "hosts" / "cp1" / secret) == 0o600
    assert all(mode(c) == 0o644 for c in out.glob("hosts/*/**/*.crt"))


def test_kubeadm_config_points_at_the_endpoint(out: Path) -> None:
    docs = list(yaml.safe_load_all((out / "hosts/cp1/etc/kubernetes/kubeadm-config.yaml").read_text()))
    cluster_cfg = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    assert cluster_cfg["controlPlaneEndpoint"] == "127.0.0.1:6444"
    assert len(cluster_cfg["etcd"]["external"]["endpoints"]) == 3
    join = yaml.safe_load((out / "hosts/w1/etc/kubernetes/kubeadm-config.yaml").read_text())
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"]["bootstrapToken"]["caCertHashes"][0].startswith("sha256:")


def test_chain_verifies_with_openssl(out: Path) -> None:
    pki = out / "hosts" / "cp1" / "etc/kubernetes/pki"
    r = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "apiserver.crt")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_plan_json_and_addons(out: Path) -> None:
    plan = json.loads((out / "plan.json").read_text())
    assert plan["phases"][0]["id"] == "facts"
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in (out / "addons").iterdir()}
    assert {"Deployment", "DaemonSet", "ConfigMap", "Service", "APIService"} <= kinds


def test_imported_kubespray_inventory_plans(tmp_path: Path) -> None:
    result = import_kubespray(FIXTURES / "mycluster" / "inventory.ini")
    spec = tmp_path / "cluster.yaml"
    spec.write_text(result.yaml())
    r = subprocess.run(
        [sys.executable, "-m", "capstan.cli", "plan", "-f", str(spec), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "Worker joins" in r.stdout
    assert (tmp_path / "out" / "plan.json").is_file()
