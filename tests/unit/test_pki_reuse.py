"""Running ``generate`` again over what the hosts already have: reuse, renewal and refusal."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from capstan.errors import PKIError
from capstan.pki import (
    CA_ETCD,
    CA_FRONT_PROXY,
    CA_KUBERNETES,
    SERVICE_ACCOUNT,
    ClusterPKI,
    NodeIdentity,
    PKIInputs,
    files_for_host,
    generate,
    leaf_specs,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CP = frozenset({"control-plane", "etcd"})
INPUTS = PKIInputs(
    cluster_name="reuse",
    cluster_domain="cluster.local",
    service_cidr="10.233.0.0/18",
    nodes=(
        NodeIdentity("cp1", "10.0.0.11", "", CP),
        NodeIdentity("cp2", "10.0.0.12", "", CP),
        NodeIdentity("e3", "10.0.0.13", "", frozenset({"etcd"})),
        NodeIdentity("w1", "10.0.0.21", "", frozenset({"worker"})),
    ),
    endpoint_host="127.0.0.1",
    endpoint_port=6443,
)
CAS = (CA_KUBERNETES, CA_FRONT_PROXY, CA_ETCD)
CP1_LEAVES = [name for name, spec in leaf_specs(INPUTS).items() if spec.node == "cp1"]
PKI_DIR = "/etc/kubernetes/pki"


def host_files(pki: ClusterPKI, node: str) -> dict[str, bytes]:
    return {path: hf.content for path, hf in files_for_host(pki, node).items()}


def all_hosts(pki: ClusterPKI) -> dict[str, dict[str, bytes]]:
    return {node: host_files(pki, node) for node in INPUTS.node_names()}


@pytest.fixture(scope="module")
def first() -> ClusterPKI:
    return generate(INPUTS, now=NOW)[0]


@pytest.fixture(scope="module")
def cp1_files(first: ClusterPKI) -> dict[str, bytes]:
    return host_files(first, "cp1")


def fingerprints(pki: ClusterPKI) -> dict[str, str]:
    return {name: ck.fingerprint for name, ck in pki.certificates().items()}


def test_cas_and_first_control_plane_leaves_are_reused(
    first: ClusterPKI, cp1_files: dict[str, bytes]
) -> None:
    again, issued = generate(INPUTS, cp1_files, now=NOW + timedelta(days=1))
    for name in (*CAS, *CP1_LEAVES):
        assert again.get(name).fingerprint == first.get(name).fingerprint, name
    assert again.sa_key_pem() == first.sa_key_pem()
    # Without the other hosts' files their per-node leaves are unknown, hence issued (under the same CAs).
    assert set(issued) == set(leaf_specs(INPUTS)) - set(CP1_LEAVES)
    assert SERVICE_ACCOUNT not in issued


def test_nothing_is_issued_when_every_host_is_current(first: ClusterPKI) -> None:
    again, issued = generate(INPUTS, now=NOW + timedelta(days=30), existing_hosts=all_hosts(first))
    assert issued == []
    assert again.reasons == {}
    assert fingerprints(again) == fingerprints(first)
    for node in INPUTS.node_names():
        assert host_files(again, node) == host_files(first, node), node


def test_leaves_expiring_within_renew_within_are_reissued(first: ClusterPKI, tmp_path: Path) -> None:
    later = NOW + timedelta(days=340)  # leaves end at day 365: inside the default 30-day window
    renewed, issued = generate(INPUTS, now=later, existing_hosts=all_hosts(first))
    assert issued == list(leaf_specs(INPUTS))
    assert all(renewed.reasons[n].startswith("expires 2026-06-01") for n in issued)
    for name in CAS:
        assert renewed.get(name).fingerprint == first.get(name).fingerprint
    assert renewed.get("etcd/member@e3").not_after == later + timedelta(days=365)
    (tmp_path / "ca.crt").write_bytes(renewed.get(CA_ETCD).cert_pem())
    (tmp_path / "member.crt").write_bytes(renewed.get("etcd/member@e3").cert_pem())
    at = str(int(later.timestamp()) + 60)
    cmd: list[str | Path] = [
        "openssl",
        "verify",
        "-attime",
        at,
        "-CAfile",
        tmp_path / "ca.crt",
        tmp_path / "member.crt",
    ]
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
    _, nothing = generate(INPUTS, now=later, existing_hosts=all_hosts(first), renew_within=timedelta(days=7))
    assert nothing == []


def test_only_the_expiring_leaf_is_reissued(first: ClusterPKI, cp1_files: dict[str, bytes]) -> None:
    short = dataclasses.replace(INPUTS, leaf_validity_days=10)
    ca_files = {p: c for p, c in cp1_files.items() if "ca." in p.rsplit("/", 1)[1]}
    short_pki, _ = generate(short, ca_files, now=NOW)  # same CAs, 10-day leaves
    files = {**cp1_files}
    files[f"{PKI_DIR}/apiserver.crt"] = short_pki.get("kubernetes/apiserver@cp1").cert_pem()
    files[f"{PKI_DIR}/apiserver.key"] = short_pki.get("kubernetes/apiserver@cp1").key_pem()
    again, issued = generate(INPUTS, files, now=NOW)
    assert [n for n in issued if n in CP1_LEAVES] == ["kubernetes/apiserver@cp1"]
    assert again.reasons["kubernetes/apiserver@cp1"] == "expires 2025-06-11 (within 30 days)"


def test_new_sans_reissue_only_the_apiserver_certificates(first: ClusterPKI) -> None:
    wider = dataclasses.replace(INPUTS, apiserver_extra_sans=("k8s.example.test",))
    again, issued = generate(wider, now=NOW, existing_hosts=all_hosts(first))
    assert issued == ["kubernetes/apiserver@cp1", "kubernetes/apiserver@cp2"]
    assert again.reasons["kubernetes/apiserver@cp1"] == "SANs lack k8s.example.test"


def test_an_added_control_plane_extends_every_apiserver_certificate(first: ClusterPKI) -> None:
    grown = dataclasses.replace(INPUTS, nodes=(*INPUTS.nodes, NodeIdentity("cp3", "10.0.0.14", "", CP)))
    _, issued = generate(grown, now=NOW, existing_hosts=all_hosts(first))
    assert "kubernetes/apiserver@cp1" in issued and "kubernetes/apiserver@cp2" in issued
    assert "etcd/member@cp1" not in issued and "kubeconfig/admin@cp1" not in issued
    assert {n for n in issued if n.endswith("@cp3")} == {n for n in leaf_specs(grown) if n.endswith("@cp3")}


def test_leaf_from_another_ca_is_reissued(first: ClusterPKI, cp1_files: dict[str, bytes]) -> None:
    stranger, _ = generate(INPUTS, now=NOW)
    files = {
        **cp1_files,
        **{p: c for p, c in host_files(stranger, "cp1").items() if "front-proxy-client" in p},
    }
    again, issued = generate(INPUTS, files, now=NOW)
    assert "kubernetes/front-proxy-client@cp1" in issued
    assert (
        again.reasons["kubernetes/front-proxy-client@cp1"]
        == "not signed by the current kubernetes/front-proxy-ca"
    )
    assert again.get(CA_FRONT_PROXY).fingerprint == first.get(CA_FRONT_PROXY).fingerprint


def test_leaf_with_wrong_or_missing_key_is_reissued(cp1_files: dict[str, bytes]) -> None:
    files = {**cp1_files, f"{PKI_DIR}/apiserver.key": cp1_files[f"{PKI_DIR}/front-proxy-client.key"]}
    del files[f"{PKI_DIR}/apiserver-etcd-client.key"]
    files[f"{PKI_DIR}/apiserver-kubelet-client.crt"] = b"garbage"
    again, issued = generate(INPUTS, files, now=NOW)
    assert again.reasons["kubernetes/apiserver@cp1"] == "private key does not match the certificate"
    assert "is missing" in again.reasons["kubernetes/apiserver-etcd-client@cp1"]
    assert again.reasons["kubernetes/apiserver-kubelet-client@cp1"].startswith("unreadable on cp1")
    assert {n for n in issued if n in CP1_LEAVES} == {
        "kubernetes/apiserver@cp1",
        "kubernetes/apiserver-etcd-client@cp1",
        "kubernetes/apiserver-kubelet-client@cp1",
    }


def test_kubelet_conf_pointing_at_files_is_reissued(first: ClusterPKI) -> None:
    hosts = all_hosts(first)
    doc = yaml.safe_load(hosts["w1"]["/etc/kubernetes/kubelet.conf"])
    doc["users"][0]["user"] = {
        "client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
        "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem",
    }
    hosts["w1"]["/etc/kubernetes/kubelet.conf"] = yaml.safe_dump(doc).encode()
    again, issued = generate(INPUTS, now=NOW, existing_hosts=hosts)
    assert issued == ["kubeconfig/kubelet@w1"]
    assert "no embedded client credential" in again.reasons["kubeconfig/kubelet@w1"]


def test_mismatched_ca_key_is_refused_naming_the_file(cp1_files: dict[str, bytes]) -> None:
    files = {**cp1_files, f"{PKI_DIR}/ca.key": cp1_files[f"{PKI_DIR}/front-proxy-ca.key"]}
    with pytest.raises(PKIError, match=r"^/etc/kubernetes/pki/ca\.key: private key does not match"):
        generate(INPUTS, files, now=NOW)


def test_half_present_ca_is_refused(cp1_files: dict[str, bytes]) -> None:
    files = {k: v for k, v in cp1_files.items() if k != f"{PKI_DIR}/etcd/ca.key"}
    with pytest.raises(
        PKIError, match=r"^/etc/kubernetes/pki/etcd/ca\.key: missing while .*etcd/ca\.crt exists"
    ):
        generate(INPUTS, files, now=NOW)


def test_unreadable_ca_is_refused_naming_the_file(cp1_files: dict[str, bytes]) -> None:
    files = {**cp1_files, f"{PKI_DIR}/front-proxy-ca.crt": b"-----BEGIN CERTIFICATE-----\nnope\n"}
    with pytest.raises(PKIError, match=r"^/etc/kubernetes/pki/front-proxy-ca\.crt: not a PEM certificate"):
        generate(INPUTS, files, now=NOW)


def test_leaf_in_place_of_ca_is_refused(cp1_files: dict[str, bytes]) -> None:
    files = {
        **cp1_files,
        f"{PKI_DIR}/ca.crt": cp1_files[f"{PKI_DIR}/apiserver.crt"],
        f"{PKI_DIR}/ca.key": cp1_files[f"{PKI_DIR}/apiserver.key"],
    }
    with pytest.raises(PKIError, match=r"^/etc/kubernetes/pki/ca\.crt: not a CA certificate"):
        generate(INPUTS, files, now=NOW)


def test_expired_ca_is_refused(cp1_files: dict[str, bytes]) -> None:
    with pytest.raises(PKIError, match=r"^/etc/kubernetes/pki/ca\.crt: CA expired on 2035-05-30"):
        generate(INPUTS, cp1_files, now=NOW + timedelta(days=3651))


def test_mismatched_service_account_public_key_is_refused(cp1_files: dict[str, bytes]) -> None:
    other = generate(INPUTS, now=NOW)[0].sa_pub_pem()
    with pytest.raises(PKIError, match=r"^/etc/kubernetes/pki/sa\.pub: does not match"):
        generate(INPUTS, {**cp1_files, f"{PKI_DIR}/sa.pub": other}, now=NOW)


def test_unknown_host_in_existing_hosts_is_refused() -> None:
    with pytest.raises(PKIError, match="'ghost'"):
        generate(INPUTS, now=NOW, existing_hosts={"ghost": {}})


def test_kubeadm_style_traditional_key_encodings_are_accepted(
    first: ClusterPKI, cp1_files: dict[str, bytes]
) -> None:
    """kubeadm writes "EC PRIVATE KEY" (SEC1) CA keys and an "RSA PRIVATE KEY" (PKCS#1) sa.key."""
    traditional = serialization.PrivateFormat.TraditionalOpenSSL
    ca_key = first.get(CA_KUBERNETES).key.private_bytes(
        serialization.Encoding.PEM, traditional, serialization.NoEncryption()
    )
    sa_key = first.sa_key.private_bytes(serialization.Encoding.PEM, traditional, serialization.NoEncryption())
    assert ca_key.startswith(b"-----BEGIN EC PRIVATE KEY") and sa_key.startswith(
        b"-----BEGIN RSA PRIVATE KEY"
    )
    files = {**cp1_files, f"{PKI_DIR}/ca.key": ca_key, f"{PKI_DIR}/sa.key": sa_key}
    again, issued = generate(INPUTS, files, now=NOW)
    assert not set(issued) & {*CAS, SERVICE_ACCOUNT, *CP1_LEAVES}
    assert again.sa_pub_pem() == first.sa_pub_pem()


def test_ca_made_by_openssl_is_reused(tmp_path: Path) -> None:
    req = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    req += ["-days", "30", "-subj", "/CN=kubernetes", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    subprocess.run(
        [*req, "-keyout", tmp_path / "ca.key", "-out", tmp_path / "ca.crt"],
        capture_output=True,
        check=True,
    )
    files = {
        f"{PKI_DIR}/ca.crt": (tmp_path / "ca.crt").read_bytes(),
        f"{PKI_DIR}/ca.key": (tmp_path / "ca.key").read_bytes(),
    }
    now = datetime.now(UTC)
    pki, issued = generate(INPUTS, files, now=now)
    assert CA_KUBERNETES not in issued and CA_FRONT_PROXY in issued
    leaf = pki.get("kubeconfig/admin@cp1")
    # Leaves never outlive their CA: the 365-day default is clipped to the 30-day openssl CA.
    assert leaf.not_after == pki.get(CA_KUBERNETES).not_after
    kubeconfig = yaml.safe_load(pki.kubeconfig("kubeconfig/admin@cp1"))
    (tmp_path / "admin.crt").write_bytes(
        base64.b64decode(kubeconfig["users"][0]["user"]["client-certificate-data"])
    )
    cmd: list[str | Path] = [
        "openssl",
        "verify",
        "-x509_strict",
        "-CAfile",
        tmp_path / "ca.crt",
        tmp_path / "admin.crt",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_one_hosts_leaves_are_built_and_its_files_are_the_same(first: ClusterPKI) -> None:
    from capstan.pki.layout import host_slots

    for node in INPUTS.node_names():
        wanted = {slot.name for slot in host_slots(INPUTS, node)}
        mine, issued = generate(
            INPUTS,
            host_files(first, "cp1"),
            now=NOW,
            existing_hosts={node: host_files(first, node)},
            only=wanted,
        )
        assert issued == [], node  # nothing of this host's is missing, and no other host's is built
        assert host_files(mine, node) == host_files(first, node), node
        assert set(mine.certificates()) - set(CAS) <= wanted, node
