"""kubeadm stand-in: what it refuses (config, preflight, existing certificates) and what it writes.

The config is what capstan renders for examples/single.yaml; the PKI is what capstan.pki issues for it.
Everything happens under a temporary root (CAPSTAN_STANDIN_ROOT), never in /etc.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.lab.standins import executable_path
from capstan.lab.standins.kubeadm import certs, init, main, manifests
from capstan.lab.standins.kubeadm.cli import parse
from capstan.lab.standins.kubeadm.config import parse_documents
from capstan.lab.standins.kubelet.pods import invisible_paths
from capstan.pki import files_for_host, generate
from capstan.plan.material import pki_inputs
from capstan.render import new_secrets, render_host
from capstan.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "examples" / "single.yaml")
HOST = "node1"
VERSION = "1.36.4"
# Checks that need a running etcd and containerd: the refusal tests are about other checks.
MACHINE_CHECKS = "--ignore-preflight-errors=CRI,ExternalEtcdVersion,ExternalEtcdClientCertificates"


@pytest.fixture(scope="module")
def config_text() -> str:
    return render_host(SPEC, HOST, new_secrets())["/etc/kubernetes/kubeadm-config.yaml"].text


@pytest.fixture(scope="module")
def pki_files() -> dict[str, Any]:
    pki, _ = generate(pki_inputs(SPEC))
    return dict(files_for_host(pki, HOST))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    host_root = tmp_path / "host"
    host_root.mkdir()
    monkeypatch.setenv("CAPSTAN_STANDIN_ROOT", str(host_root))
    return host_root


def place(root: Path, files: dict[str, Any]) -> None:
    for path, f in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        target.chmod(f.mode)


def docs_of(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def write_config(tmp_path: Path, docs: dict[str, dict[str, Any]]) -> str:
    target = tmp_path / "kubeadm-config.yaml"
    target.write_text(yaml.safe_dump_all(list(docs.values())))
    return str(target)


def kubeadm(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv), VERSION)
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_unknown_api_version_is_refused(tmp_path: Path, root: Path, config_text: str, capsys: Any) -> None:
    docs = docs_of(config_text)
    docs["ClusterConfiguration"]["apiVersion"] = "kubeadm.k8s.io/v1beta9"
    rc, out = kubeadm(capsys, "init", "--config", write_config(tmp_path, docs))
    assert rc == 1
    assert 'no kind "ClusterConfiguration" is registered for version "kubeadm.k8s.io/v1beta9"' in out


def test_old_v1beta3_and_unknown_kinds_are_refused(config_text: str) -> None:
    with pytest.raises(Exception, match="old API spec"):
        parse_documents(config_text.replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3"), "f")
    with pytest.raises(Exception, match='no kind "MasterConfiguration"'):
        parse_documents("apiVersion: kubeadm.k8s.io/v1beta4\nkind: MasterConfiguration\n", "f")


def test_v1beta3_style_extra_args_map_is_a_decoding_error(config_text: str) -> None:
    docs = docs_of(config_text)
    docs["ClusterConfiguration"]["apiServer"]["extraArgs"] = {"authorization-mode": "Node,RBAC"}
    with pytest.raises(Exception, match=r"cannot unmarshal object into Go struct field apiServer\.extraArgs"):
        parse_documents(yaml.safe_dump_all(list(docs.values())), "f")


def test_missing_kubernetes_version_is_refused(
    tmp_path: Path, root: Path, config_text: str, capsys: Any
) -> None:
    docs = docs_of(config_text)
    del docs["ClusterConfiguration"]["kubernetesVersion"]
    rc, out = kubeadm(capsys, "init", "--config", write_config(tmp_path, docs))
    assert rc == 1
    assert "kubernetesVersion: Required value" in out


def test_invalid_fields_are_reported_together(
    tmp_path: Path, root: Path, config_text: str, capsys: Any
) -> None:
    docs = docs_of(config_text)
    docs["ClusterConfiguration"]["networking"]["podSubnet"] = "10.233.64.0/33"
    docs["InitConfiguration"]["bootstrapTokens"][0]["token"] = "not-a-token"
    rc, out = kubeadm(capsys, "init", "--config", write_config(tmp_path, docs))
    assert rc == 1
    assert 'networking.podSubnet: Invalid value: "10.233.64.0/33"' in out
    assert "bootstrapTokens[0].token: Invalid value" in out
    assert "not-a-token" not in out  # a token is a secret, even a malformed one


def test_version_newer_than_the_binary_is_refused(
    tmp_path: Path, root: Path, config_text: str, capsys: Any
) -> None:
    docs = docs_of(config_text)
    docs["ClusterConfiguration"]["kubernetesVersion"] = "v1.37.0"
    rc, out = kubeadm(capsys, "init", "--config", write_config(tmp_path, docs), MACHINE_CHECKS)
    assert rc == 1
    assert "error execution phase preflight" in out
    assert "[ERROR KubernetesVersion]: Kubernetes version is greater than kubeadm version" in out


def test_second_init_on_an_initialised_node_is_refused(
    tmp_path: Path, root: Path, config_text: str, capsys: Any
) -> None:
    manifest = root / "etc/kubernetes/manifests/kube-apiserver.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("apiVersion: v1\nkind: Pod\n")
    rc, out = kubeadm(
        capsys, "init", "--config", write_config(tmp_path, docs_of(config_text)), MACHINE_CHECKS
    )
    assert rc == 1
    assert "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]" in out
    assert "already exists" in out


def test_preflight_needs_the_container_runtime_and_etcd(
    tmp_path: Path, root: Path, config_text: str, capsys: Any
) -> None:
    rc, out = kubeadm(capsys, "init", "--config", write_config(tmp_path, docs_of(config_text)))
    assert rc == 1
    assert "[ERROR CRI]: container runtime is not running" in out
    assert "[ERROR ExternalEtcd" in out


def test_config_cannot_be_mixed_with_flags(tmp_path: Path, root: Path, config_text: str, capsys: Any) -> None:
    path = write_config(tmp_path, docs_of(config_text))
    rc, out = kubeadm(capsys, "init", "--config", path, "--certificate-key", "ab" * 32)
    assert rc == 1
    assert "can not mix '--config' with arguments [certificate-key]" in out
    rc, out = kubeadm(capsys, "init", "--config", path, "--no-such-flag")
    assert rc == 1 and "unknown flag: --no-such-flag" in out


def _node(tmp_path: Path, text: str) -> init.NodeSetup:
    args = parse(["init", "--config", write_config(tmp_path, docs_of(text))])
    return init.load(args)[1]


def test_manifests_carry_the_cluster_configuration(tmp_path: Path, root: Path, config_text: str) -> None:
    node = _node(tmp_path, config_text)
    manifests.write_manifests(node)
    pod = yaml.safe_load((root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    container = pod["spec"]["containers"][0]
    flags = container["command"][1:]
    assert container["command"][0] == "kube-apiserver"
    assert container["image"] == "registry.k8s.io/kube-apiserver:v1.36.4"
    assert pod["spec"]["hostNetwork"] is True and pod["metadata"]["namespace"] == "kube-system"
    for flag in (
        "--advertise-address=192.0.2.30",
        "--secure-port=6443",
        "--etcd-servers=https://192.0.2.30:2379",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--service-cluster-ip-range=10.233.0.0/18",
        "--authorization-mode=Node,RBAC",
        "--enable-bootstrap-token-auth=true",
        "--authentication-config=/etc/kubernetes/authentication-config.yaml",
        "--profiling=false",
    ):
        assert flag in flags
    assert flags == sorted(flags, key=lambda f: f.split("=")[0])
    # every file a flag names is mounted: the kubelet stand-in would refuse the container otherwise
    assert invisible_paths(pod, flags) == []
    cm = yaml.safe_load((root / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_text())
    cm_flags = cm["spec"]["containers"][0]["command"]
    assert "--cluster-cidr=10.233.64.0/18" in cm_flags and "--node-cidr-mask-size=24" in cm_flags
    assert "--controllers=*,bootstrapsigner,tokencleaner" in cm_flags


def test_writing_manifests_pulls_the_versioned_standin_images(
    tmp_path: Path, root: Path, config_text: str
) -> None:
    manifests.write_manifests(_node(tmp_path, config_text))
    exe = executable_path("kube-apiserver", VERSION)
    assert exe == root / "usr/local/lib/capstan-standins/v1.36.4/kube-apiserver"
    assert os.access(exe, os.X_OK)
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "Kubernetes v1.36.4"


def test_a_flag_outside_every_mount_is_invisible_to_the_container(
    tmp_path: Path, root: Path, config_text: str
) -> None:
    docs = docs_of(config_text)
    api_server = docs["ClusterConfiguration"]["apiServer"]
    api_server["extraVolumes"] = [v for v in api_server["extraVolumes"] if v["name"] != "capstan-admission"]
    pod = manifests.static_pod(_node(tmp_path, yaml.safe_dump_all(list(docs.values()))), "kube-apiserver")
    assert invisible_paths(pod, pod["spec"]["containers"][0]["command"]) == [
        "/etc/kubernetes/admission-config.yaml"
    ]


def test_certs_phase_keeps_capstans_files_and_creates_only_missing_ones(
    tmp_path: Path, root: Path, config_text: str, pki_files: dict[str, Any]
) -> None:
    place(root, pki_files)
    before = (root / "etc/kubernetes/pki/apiserver.crt").read_bytes()
    (root / "etc/kubernetes/pki/front-proxy-client.crt").unlink()
    (root / "etc/kubernetes/pki/front-proxy-client.key").unlink()
    node = _node(tmp_path, config_text)
    certs.ensure_certs(node)
    certs.ensure_kubeconfigs(node, init=True)
    assert (root / "etc/kubernetes/pki/apiserver.crt").read_bytes() == before
    from capstan.lab.standins.kubeadm import pkiutil

    ca = pkiutil.load_cert((root / "etc/kubernetes/pki/front-proxy-ca.crt").read_bytes())
    fresh = pkiutil.load_cert((root / "etc/kubernetes/pki/front-proxy-client.crt").read_bytes())
    assert pkiutil.signed_by(fresh, ca)


def test_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, root: Path, config_text: str, pki_files: dict[str, Any]
) -> None:
    place(root, pki_files)
    other, _ = generate(pki_inputs(SPEC))
    foreign = files_for_host(other, HOST)
    place(
        root,
        {p: f for p, f in foreign.items() if p.endswith("/apiserver.crt") or p.endswith("/apiserver.key")},
    )
    with pytest.raises(Exception, match="certificate apiserver is not signed by corresponding CA"):
        certs.ensure_certs(_node(tmp_path, config_text))


def test_a_kubeconfig_trusting_another_ca_is_refused(
    tmp_path: Path, root: Path, config_text: str, pki_files: dict[str, Any]
) -> None:
    place(root, pki_files)
    other, _ = generate(pki_inputs(SPEC))
    place(root, {p: f for p, f in files_for_host(other, HOST).items() if p.endswith("admin.conf")})
    with pytest.raises(
        Exception, match=r'"/etc/kubernetes/admin\.conf" exists already but has got the wrong CA'
    ):
        certs.ensure_kubeconfigs(_node(tmp_path, config_text), init=True)


def test_certs_check_expiration_and_renew(root: Path, pki_files: dict[str, Any], capsys: Any) -> None:
    from capstan.lab.standins.kubeadm import kubeconfig, pkiutil

    place(root, pki_files)
    rc, out = kubeadm(capsys, "certs", "check-expiration")
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line}
    assert rows["apiserver"].rstrip().endswith("no") and " ca " in rows["apiserver"]
    assert "front-proxy-ca" in rows["front-proxy-client"] and "admin.conf" in rows
    pki = root / "etc/kubernetes/pki"
    old = pkiutil.load_cert((pki / "apiserver.crt").read_bytes())
    rc, out = kubeadm(capsys, "certs", "renew", "apiserver")
    assert rc == 0 and "certificate for apiserver renewed" in out
    new = pkiutil.load_cert((pki / "apiserver.crt").read_bytes())
    assert new.serial_number != old.serial_number and pkiutil.sans_of(new) == pkiutil.sans_of(old)
    assert pkiutil.signed_by(new, pkiutil.load_cert((pki / "ca.crt").read_bytes()))
    rc, _ = kubeadm(capsys, "certs", "renew", "all")
    admin = (root / "etc/kubernetes/admin.conf").read_bytes()
    original = kubeconfig.client_cert_pem(pki_files["/etc/kubernetes/admin.conf"].content)
    assert rc == 0 and original and kubeconfig.client_cert_pem(admin) not in (b"", original)
    (pki / "ca.key").unlink()
    rc, out = kubeadm(capsys, "certs", "renew", "apiserver")
    assert rc == 1 and "signed by an external CA" in out
    rc, out = kubeadm(capsys, "certs", "renew", "etcd-server")
    assert rc == 1 and 'unknown certificate "etcd-server"' in out
