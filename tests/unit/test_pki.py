"""A freshly generated cluster PKI: chains, names, usages, kubeconfigs and who receives what.

The PKI is generated once per module (ECDSA keys are quick) and written to a tree per host under a tmp
directory, so that the real ``openssl`` checks exactly the bytes a host would receive.
"""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from capstan.pki import (
    CA_ETCD,
    CA_FRONT_PROXY,
    CA_KUBERNETES,
    SERVICE_ACCOUNT,
    ClusterPKI,
    NodeIdentity,
    PKIInputs,
    expiry_report,
    files_for_host,
    generate,
    leaf_specs,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CP = frozenset({"control-plane", "etcd"})
INPUTS = PKIInputs(
    cluster_name="lab",
    cluster_domain="cluster.local",
    service_cidr="10.233.0.0/18",
    nodes=(
        NodeIdentity("cp1", "10.0.0.11", "192.168.50.11", CP),
        NodeIdentity("cp2", "10.0.0.12", "", CP),
        NodeIdentity("etcd3", "10.0.0.13", "", frozenset({"etcd"})),
        NodeIdentity("w1", "10.0.0.21", "", frozenset({"worker"})),
        NodeIdentity("w2", "10.0.0.22", "", frozenset({"worker"})),
    ),
    endpoint_host="10.0.0.100",
    endpoint_port=8443,
    apiserver_extra_sans=("api.example.test", "203.0.113.7"),
    etcd_clients=("w1",),
)
LEAVES = leaf_specs(INPUTS)
CA_PEM_PATH = {
    CA_KUBERNETES: "kubernetes-ca.crt",
    CA_FRONT_PROXY: "front-proxy-ca.crt",
    CA_ETCD: "etcd-ca.crt",
}


def openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def generated() -> tuple[ClusterPKI, list[str]]:
    return generate(INPUTS, now=NOW)


@pytest.fixture(scope="module")
def pki(generated: tuple[ClusterPKI, list[str]]) -> ClusterPKI:
    return generated[0]


@pytest.fixture(scope="module")
def tree(pki: ClusterPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/<node>/<absolute path> for every host file, plus <tmp>/<logical>.crt for every cert."""
    root = tmp_path_factory.mktemp("pki")
    for node in INPUTS.node_names():
        for path, hf in files_for_host(pki, node).items():
            target = root / node / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(hf.content)
    for name, ck in pki.certificates().items():
        (root / (name.replace("/", "_") + ".crt")).write_bytes(ck.cert_pem())
    for ca, fname in CA_PEM_PATH.items():
        (root / fname).write_bytes(pki.get(ca).cert_pem())
    return root


def eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    }


def cn_o(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), orgs


def test_first_run_issues_every_ca_key_and_leaf(generated: tuple[ClusterPKI, list[str]]) -> None:
    pki, issued = generated
    assert issued == [CA_KUBERNETES, CA_FRONT_PROXY, CA_ETCD, SERVICE_ACCOUNT, *LEAVES]
    assert set(pki.reasons) == set(issued)
    assert all(reason == "missing" for reason in pki.reasons.values())


def test_openssl_reads_every_certificate(pki: ClusterPKI, tree: Path) -> None:
    # One openssl process per certificate, run side by side: each is independent and mostly start-up.
    procs = {
        name: subprocess.Popen(
            ["openssl", "x509", "-noout", "-text", "-in", tree / (name.replace("/", "_") + ".crt")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in pki.certificates()
    }
    for name, proc in procs.items():
        out, err = proc.communicate()
        assert proc.returncode == 0, f"{name}: {err}"
        assert "ecdsa-with-SHA256" in out, name
        assert "X509v3 Subject Key Identifier" in out, name


@pytest.mark.parametrize("name", list(LEAVES))
def test_openssl_verifies_each_leaf_against_its_ca(name: str, tree: Path) -> None:
    spec = LEAVES[name]
    leaf = tree / (name.replace("/", "_") + ".crt")
    ca = tree / CA_PEM_PATH[spec.issuer]
    at = str(int((NOW + timedelta(days=1)).timestamp()))
    purposes = (["sslserver"] if spec.server_auth else []) + (["sslclient"] if spec.client_auth else [])
    for purpose in purposes:
        out = openssl("verify", "-x509_strict", "-attime", at, "-purpose", purpose, "-CAfile", ca, leaf)
        assert out.strip().endswith(": OK")


def test_leaf_does_not_verify_against_another_ca(tree: Path) -> None:
    leaf = tree / "etcd_member@etcd3.crt"
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", tree / CA_PEM_PATH[CA_KUBERNETES], leaf],
        capture_output=True,
        check=False,
    )
    assert done.returncode != 0


@pytest.mark.parametrize(
    ("name", "cn"), [(CA_KUBERNETES, "kubernetes"), (CA_FRONT_PROXY, "front-proxy-ca"), (CA_ETCD, "etcd-ca")]
)
def test_ca_certificates(pki: ClusterPKI, name: str, cn: str) -> None:
    cert = pki.get(name).cert
    assert cn_o(cert) == (cn, [])
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert isinstance(pki.get(name).key, ec.EllipticCurvePrivateKey)


def test_leaf_extensions(pki: ClusterPKI) -> None:
    for name, spec in LEAVES.items():
        ck = pki.get(name)
        ca = pki.get(spec.issuer).cert
        assert not ck.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ku = ck.cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
        assert not ku.value.key_cert_sign
        aki = ck.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        assert ck.not_after == NOW + timedelta(days=365)
        assert ck.cert.not_valid_before_utc <= NOW


SUBJECTS = {
    "kubernetes/apiserver@cp1": ("kube-apiserver", []),
    "kubernetes/apiserver-kubelet-client@cp2": ("kube-apiserver-kubelet-client", ["kubeadm:cluster-admins"]),
    "kubernetes/front-proxy-client@cp1": ("front-proxy-client", []),
    "kubernetes/apiserver-etcd-client@cp1": ("kube-apiserver-etcd-client", []),
    "kubeconfig/admin@cp1": ("kubernetes-admin", ["kubeadm:cluster-admins"]),
    "kubeconfig/super-admin@cp1": ("kubernetes-super-admin", ["system:masters"]),
    "kubeconfig/controller-manager@cp2": ("system:kube-controller-manager", []),
    "kubeconfig/scheduler@cp2": ("system:kube-scheduler", []),
    "kubeconfig/kubelet@w2": ("system:node:w2", ["system:nodes"]),
    "etcd/member@etcd3": ("etcd3", []),
    "etcd/peer@cp1": ("cp1", []),
    "etcd/client@w1": ("etcd-client-w1", []),
}


@pytest.mark.parametrize(("name", "subject"), SUBJECTS.items())
def test_subjects(pki: ClusterPKI, name: str, subject: tuple[str, list[str]]) -> None:
    assert cn_o(pki.get(name).cert) == subject


def test_extended_key_usages(pki: ClusterPKI) -> None:
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    assert eku(pki.get("kubernetes/apiserver@cp1").cert) == {server}
    for name in ("etcd/member@cp1", "etcd/peer@etcd3"):
        assert eku(pki.get(name).cert) == {server, client}
    for name in ("kubernetes/front-proxy-client@cp1", "etcd/etcdctl@etcd3", "kubeconfig/kubelet@w1"):
        assert eku(pki.get(name).cert) == {client}


def test_apiserver_sans_cover_every_way_in(pki: ClusterPKI) -> None:
    dns, ips = sans(pki.get("kubernetes/apiserver@cp2").cert)
    assert dns == {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "cp1",
        "cp2",
        "localhost",
        "api.example.test",
    }
    assert ips == {
        "10.233.0.1",
        "10.0.0.11",
        "192.168.50.11",
        "10.0.0.12",
        "10.0.0.100",
        "127.0.0.1",
        "203.0.113.7",
    }


def test_etcd_member_sans_name_only_that_member(pki: ClusterPKI) -> None:
    assert sans(pki.get("etcd/member@cp1").cert) == (
        {"cp1", "localhost"},
        {"10.0.0.11", "192.168.50.11", "127.0.0.1"},
    )
    assert sans(pki.get("etcd/peer@etcd3").cert) == ({"etcd3", "localhost"}, {"10.0.0.13", "127.0.0.1"})


def test_worker_receives_only_its_own_material(pki: ClusterPKI) -> None:
    files = files_for_host(pki, "w2")
    assert set(files) == {"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/kubelet.conf"}
    files_w1 = files_for_host(pki, "w1")
    assert set(files_w1) == {
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/kubelet.conf",
        "/etc/ssl/etcd/ca.crt",
        "/etc/ssl/etcd/client.crt",
        "/etc/ssl/etcd/client.key",
    }
    assert files_w1["/etc/ssl/etcd/ca.crt"].content == pki.get(CA_ETCD).cert_pem()


def test_etcd_only_member_gets_etcd_material_and_no_kubelet(pki: ClusterPKI) -> None:
    files = files_for_host(pki, "etcd3")
    assert set(files) == {
        f"/etc/ssl/etcd/{f}"
        for f in ("ca.crt", "member.crt", "member.key", "peer.crt", "peer.key", "etcdctl.crt", "etcdctl.key")
    }
    assert files["/etc/ssl/etcd/member.key"].content == pki.get("etcd/member@etcd3").key_pem()


def test_control_plane_files(pki: ClusterPKI) -> None:
    files = files_for_host(pki, "cp1")
    pki_files = {
        p.removeprefix("/etc/kubernetes/pki/") for p in files if p.startswith("/etc/kubernetes/pki/")
    }
    expected = {"ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client", "sa"}
    expected |= {"apiserver-etcd-client", "etcd/ca"}
    assert pki_files == {f"{b}.{ext}" for b in expected for ext in ("crt", "key")} - {"sa.crt"} | {"sa.pub"}
    confs = {p for p in files if p.endswith(".conf")}
    assert confs == {
        f"/etc/kubernetes/{c}.conf"
        for c in ("admin", "super-admin", "controller-manager", "scheduler", "kubelet")
    }
    assert (
        files["/etc/kubernetes/pki/apiserver.crt"].content == pki.get("kubernetes/apiserver@cp1").cert_pem()
    )
    assert files["/etc/ssl/etcd/peer.key"].content == pki.get("etcd/peer@cp1").key_pem()


def test_modes_and_secrets(pki: ClusterPKI) -> None:
    for node in INPUTS.node_names():
        for path, hf in files_for_host(pki, node).items():
            secret = path.endswith((".key", ".conf"))
            assert (hf.mode, hf.secret) == ((0o600, True) if secret else (0o644, False)), path
            assert b"PRIVATE KEY" not in repr(hf).encode()
            if path.endswith(".key"):
                assert hf.content.startswith(b"-----BEGIN PRIVATE KEY-----"), path


def test_no_host_receives_another_hosts_keys(pki: ClusterPKI) -> None:
    """A secret shared by several hosts must be a CA or SA key, and only control planes share them."""
    holders: dict[bytes, set[str]] = {}
    paths: dict[bytes, set[str]] = {}
    for node in INPUTS.node_names():
        for path, hf in files_for_host(pki, node).items():
            if hf.secret:
                holders.setdefault(hf.content, set()).add(node)
                paths.setdefault(hf.content, set()).add(path)
    shared = {content: nodes for content, nodes in holders.items() if len(nodes) > 1}
    assert {p for content in shared for p in paths[content]} == {
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/sa.key",
    }
    assert all(nodes == {"cp1", "cp2"} for nodes in shared.values())
    ca_keys = {pki.get(ca).key_pem() for ca in (CA_KUBERNETES, CA_FRONT_PROXY, CA_ETCD)}
    for node in ("etcd3", "w1", "w2"):
        contents = {hf.content for hf in files_for_host(pki, node).values()}
        assert not contents & ca_keys, node
        assert pki.sa_key_pem() not in contents


def _kubeconfig(tree: Path, node: str, name: str) -> dict[str, object]:
    doc = yaml.safe_load((tree / node / "etc/kubernetes" / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("node", "conf", "server", "user"),
    [
        ("cp1", "admin.conf", "https://10.0.0.100:8443", "kubernetes-admin"),
        ("cp1", "super-admin.conf", "https://10.0.0.100:8443", "kubernetes-super-admin"),
        ("cp2", "controller-manager.conf", "https://10.0.0.12:6443", "system:kube-controller-manager"),
        ("cp2", "scheduler.conf", "https://10.0.0.12:6443", "system:kube-scheduler"),
        ("w1", "kubelet.conf", "https://10.0.0.100:8443", "system:node:w1"),
    ],
)
def test_kubeconfigs(tree: Path, tmp_path: Path, node: str, conf: str, server: str, user: str) -> None:
    doc = _kubeconfig(tree, node, conf)
    cluster = doc["clusters"][0]["cluster"]  # type: ignore[index]
    assert cluster["server"] == server
    assert doc["current-context"] == f"{user}@lab"
    assert doc["users"][0]["name"] == user  # type: ignore[index]
    cred = doc["users"][0]["user"]  # type: ignore[index]
    ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    assert ca_pem == (tree / node / "etc/kubernetes/pki/ca.crt").read_bytes()
    cert_pem = base64.b64decode(cred["client-certificate-data"])
    key_pem = base64.b64decode(cred["client-key-data"])
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "client.crt").write_bytes(cert_pem)
    (tmp_path / "client.key").write_bytes(key_pem)
    at = str(int(NOW.timestamp()) + 60)
    verify = ("verify", "-attime", at, "-purpose", "sslclient", "-CAfile", tmp_path / "ca.crt")
    assert openssl(*verify, tmp_path / "client.crt").strip().endswith(": OK")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cn_o(cert)[0] == user
    assert openssl("x509", "-noout", "-pubkey", "-in", tmp_path / "client.crt") == openssl(
        "pkey", "-pubout", "-in", tmp_path / "client.key"
    )


def test_service_account_key_pair(pki: ClusterPKI, tree: Path) -> None:
    key = serialization.load_pem_private_key(pki.sa_key_pem(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    pki_dir = tree / "cp2/etc/kubernetes/pki"
    assert openssl("pkey", "-pubout", "-in", pki_dir / "sa.key") == (pki_dir / "sa.pub").read_text()


def test_expiry_report_from_pki(pki: ClusterPKI) -> None:
    rows = expiry_report(pki, NOW + timedelta(days=100))
    assert len(rows) == 3 + len(LEAVES)
    assert [r.not_after for r in rows] == sorted(r.not_after for r in rows)
    assert {r.path for r in rows if r.is_ca} == {CA_KUBERNETES, CA_FRONT_PROXY, CA_ETCD}
    assert {r.days_left for r in rows} == {265, 3550}
    assert rows[-1].subject.startswith("CN=")


def test_expiry_report_from_host_files_reads_kubeconfigs(pki: ClusterPKI) -> None:
    files = {p: hf.content for p, hf in files_for_host(pki, "w1").items()}
    rows = expiry_report(files, NOW + timedelta(days=400))
    by_path = {r.path: r for r in rows}
    assert set(by_path) == {
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/kubelet.conf",
        "/etc/ssl/etcd/ca.crt",
        "/etc/ssl/etcd/client.crt",
    }
    assert by_path["/etc/kubernetes/kubelet.conf"].subject == "CN=system:node:w1,O=system:nodes"
    assert by_path["/etc/kubernetes/kubelet.conf"].days_left < 0
    assert by_path["/etc/ssl/etcd/ca.crt"].is_ca


def test_kubeconfigs_render_byte_for_byte_as_the_pure_python_emitter_would(tree: Path) -> None:
    """The kubeconfig emitter is libyaml's (faster); a host's file written by an earlier capstan with
    PyYAML's own emitter must still compare equal, or every converged kubeconfig would be rewritten."""
    files = sorted(tree.glob("*/etc/kubernetes/*.conf"))
    assert files
    for conf in files:
        text = conf.read_text()
        doc = yaml.safe_load(text)
        assert yaml.safe_dump(doc, sort_keys=False, default_flow_style=False) == text, conf
