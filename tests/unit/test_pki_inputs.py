"""Input validation and the small derived facts (service IP, URLs, SAN typing) the PKI relies on."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from capstan.errors import PKIError
from capstan.pki import NodeIdentity, PKIInputs, expiry_report, files_for_host, generate

NOW = datetime(2025, 1, 1, tzinfo=UTC)
CP = frozenset({"control-plane", "etcd"})
BASE = PKIInputs(
    cluster_name="t",
    cluster_domain="cluster.local",
    service_cidr="10.233.0.0/18",
    nodes=(
        NodeIdentity("cp1", "10.0.0.1", "", CP),
        NodeIdentity("w1", "10.0.0.2", "", frozenset({"worker"})),
    ),
    endpoint_host="127.0.0.1",
    endpoint_port=6443,
)


def openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stdout}{done.stderr}"
    return done.stdout


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    }


def test_derived_values() -> None:
    assert BASE.service_ip() == "10.233.0.1"
    assert dataclasses.replace(BASE, service_cidr="fd00:10:96::/112").service_ip() == "fd00:10:96::1"
    assert BASE.endpoint_url() == "https://127.0.0.1:6443"
    assert BASE.first_control_plane().name == "cp1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cluster_name": ""}, r"^pki\.cluster_name: "),
        ({"cluster_domain": ".local"}, r"^pki\.cluster_domain: '\.local'"),
        ({"service_cidr": "10.233.0.0/33"}, r"^pki\.service_cidr: '10\.233\.0\.0/33' is not a CIDR"),
        ({"service_cidr": "10.0.0.0/31"}, r"^pki\.service_cidr: .* too small"),
        ({"endpoint_port": 0}, r"^pki\.endpoint_port: 0 is not a TCP port"),
        ({"apiserver_bind_port": 70000}, r"^pki\.apiserver_bind_port: "),
        ({"key_algorithm": "dsa"}, r"^pki\.key_algorithm: 'dsa'"),
        ({"leaf_validity_days": 0}, r"^pki\.leaf_validity_days: "),
        ({"leaf_validity_days": 4000}, r"^pki\.leaf_validity_days: must not exceed"),
        ({"etcd_clients": ("w1", "nope")}, r"^pki\.etcd_clients\[1\]: 'nope' is not a node"),
        ({"apiserver_extra_sans": ("ok", "a b")}, r"^pki\.apiserver_extra_sans\[1\]: "),
        (
            {"nodes": (NodeIdentity("w1", "10.0.0.2", "", frozenset({"worker"})),)},
            r"no node has the control-plane",
        ),
        (
            {"nodes": (NodeIdentity("c", "10.0.0.2", "", frozenset({"control-plane"})),)},
            r"no node has the etcd",
        ),
        ({"nodes": (BASE.nodes[0], BASE.nodes[0])}, r"^pki\.nodes\[1\]\.name: 'cp1' appears twice"),
        ({"nodes": (NodeIdentity("cp1", "cp1.lan", "", CP),)}, r"^pki\.nodes\[0\]\.ip: 'cp1\.lan'"),
        ({"nodes": (NodeIdentity("cp1", "10.0.0.1", "x", CP),)}, r"^pki\.nodes\[0\]\.access_ip: 'x'"),
        (
            {"nodes": (NodeIdentity("cp1", "10.0.0.1", "", frozenset({"master", "etcd"})),)},
            r"roles: unknown.*master",
        ),
    ],
)
def test_invalid_inputs_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(PKIError, match=message):
        dataclasses.replace(BASE, **change)  # type: ignore[arg-type]


def test_ipv6_endpoint_and_nodes() -> None:
    inputs = dataclasses.replace(
        BASE,
        nodes=(NodeIdentity("cp1", "fd00::1", "", CP),),
        endpoint_host="fd00::100",
        service_cidr="fd00:10:96::/112",
        apiserver_extra_sans=("2001:db8::7",),
    )
    assert inputs.endpoint_url() == "https://[fd00::100]:6443"
    pki, _ = generate(inputs, now=NOW)
    ext = pki.get("kubernetes/apiserver@cp1").cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    ips = {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)}
    assert {"fd00::1", "fd00::100", "fd00:10:96::1", "2001:db8::7", "127.0.0.1"} <= ips
    scheduler = yaml.safe_load(pki.kubeconfig("kubeconfig/scheduler@cp1"))
    assert scheduler["clusters"][0]["cluster"]["server"] == "https://[fd00::1]:6443"


def test_endpoint_name_becomes_a_dns_san() -> None:
    pki, _ = generate(dataclasses.replace(BASE, endpoint_host="api.lab.test"), now=NOW)
    ext = pki.get("kubernetes/apiserver@cp1").cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "api.lab.test" in ext.value.get_values_for_type(x509.DNSName)


def test_unknown_host_and_bad_report_input_are_pki_errors() -> None:
    pki, _ = generate(BASE, now=NOW)
    with pytest.raises(PKIError, match="no node named 'ghost'"):
        files_for_host(pki, "ghost")
    with pytest.raises(PKIError, match="no certificate named"):
        pki.get("kubernetes/apiserver@w1")
    with pytest.raises(PKIError, match=r"^/etc/x\.crt: contains an unreadable certificate"):
        expiry_report({"/etc/x.crt": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})
    # Keys and unrelated files carry no certificate and are simply not reported.
    assert (
        expiry_report({"/etc/kubernetes/pki/sa.key": pki.sa_key_pem(), "/etc/hosts": b"127.0.0.1 x\n"}) == []
    )


def test_rsa_option(tmp_path: Path) -> None:
    inputs = PKIInputs(
        cluster_name="r",
        cluster_domain="cluster.local",
        service_cidr="10.96.0.0/12",
        nodes=(
            NodeIdentity("a", "10.1.0.1", "", CP),
            NodeIdentity("b", "10.1.0.2", "", frozenset({"worker"})),
        ),
        endpoint_host="localhost",
        endpoint_port=6443,
        key_algorithm="rsa-2048",
    )
    pki, _ = generate(inputs, now=NOW)
    for name, ck in pki.certificates().items():
        assert isinstance(ck.key, rsa.RSAPrivateKey) and ck.key.key_size == 2048, name
        ku = ck.cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_encipherment == (not ck.is_ca), name
    files = files_for_host(pki, "a")
    for rel in ("pki/ca.crt", "pki/apiserver.crt", "pki/apiserver.key"):
        (tmp_path / rel.replace("pki/", "")).write_bytes(files[f"/etc/kubernetes/{rel}"].content)
    text = openssl("x509", "-noout", "-text", "-in", tmp_path / "apiserver.crt")
    assert "sha256WithRSAEncryption" in text and "Key Encipherment" in text
    at = str(int(NOW.timestamp()) + 60)
    assert openssl(
        "verify", "-x509_strict", "-attime", at, "-CAfile", tmp_path / "ca.crt", tmp_path / "apiserver.crt"
    )
    assert openssl("rsa", "-check", "-noout", "-in", tmp_path / "apiserver.key").strip() == "RSA key ok"
    dns, ips = sans(pki.get("kubernetes/apiserver@a").cert)
    assert "localhost" in dns and "10.96.0.1" in ips
    kubelet = yaml.safe_load(pki.kubeconfig("kubeconfig/kubelet@b"))
    assert kubelet["clusters"][0]["cluster"]["server"] == "https://localhost:6443"
