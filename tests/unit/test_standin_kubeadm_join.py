"""kubeadm stand-in: joins (discovery, token, CA pin, preflight), tokens, uploaded certs and upgrades.

Discovery and token handling run against an in-memory API (``FakeApi``) holding what ``kubeadm init``
publishes (the bootstrap-token Secret and the cluster-info ConfigMap) once the controller-manager's
bootstrap signer has signed it.
"""

from __future__ import annotations

import argparse
import base64
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.lab.standins.apiserver import bootstrapsigner
from capstan.lab.standins.common.client import ApiError
from capstan.lab.standins.kubeadm import clusterops, discovery, init, kubeconfig, main, objects, pkiutil
from capstan.lab.standins.kubeadm import uploadcerts as uc
from capstan.lab.standins.kubeadm.base import KubeadmError, Version
from capstan.lab.standins.kubeadm.config import NodeSetup, default_cluster
from capstan.lab.standins.kubeadm.upgrade import enforce, version_policy
from capstan.render import ca_cert_hash

TOKEN = "abcdef.0123456789abcdef"
SERVER = "https://10.0.0.10:6443"


class FakeApi:
    """Objects by API path; create (POST to the collection), get, put, merge-patch, delete."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def get(self, path: str, /) -> Any:
        if path in self.objects:
            return self.objects[path]
        raise ApiError(404, {"reason": "NotFound"}, path)

    def post(self, path: str, body: Any, /) -> Any:
        item = f"{path}/{body['metadata']['name']}"
        if item in self.objects:
            raise ApiError(409, {"reason": "AlreadyExists"}, path)
        self.objects[item] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1", "uid": "u1"}}
        return self.objects[item]

    def put(self, path: str, body: Any, /) -> Any:
        self.objects[path] = body
        return body

    def patch(self, path: str, body: Any, /) -> Any:
        self.objects[path] = {**self.get(path), **body}
        return self.objects[path]

    def delete(self, path: str, /) -> Any:
        return self.objects.pop(path)


@pytest.fixture(scope="module")
def ca() -> pkiutil.Issued:
    return pkiutil.make_ca("kubernetes", "ECDSA-P256", 10)


@pytest.fixture
def cluster_api(ca: pkiutil.Issued) -> FakeApi:
    """What init leaves in the API: the token Secret and a cluster-info signed for that token."""
    api = FakeApi()
    clusterops.apply(api, objects.bootstrap_token_secret(TOKEN, "", "2h", ["signing", "authentication"], []))
    info = objects.configmap(
        "cluster-info", "kube-public", {"kubeconfig": kubeconfig.cluster_info(SERVER, ca.cert_pem())}
    )
    token_id, secret = discovery.split_token(TOKEN)
    info["data"] = bootstrapsigner.signed_data(info["data"], {token_id: secret})
    clusterops.apply(api, info)
    return api


def run_signer(api: FakeApi) -> None:
    """What the controller-manager's bootstrapsigner does, over the FakeApi's Secrets."""
    secrets = [
        o for path, o in api.objects.items() if path.startswith("/api/v1/namespaces/kube-system/secrets/")
    ]
    info = api.get(discovery.CLUSTER_INFO)
    info["data"] = bootstrapsigner.signed_data(info["data"], bootstrapsigner.signing_tokens(secrets))


def fetch(api: FakeApi) -> Any:
    return lambda: api.get(discovery.CLUSTER_INFO)


def test_the_ca_pin_is_the_sha256_of_the_ca_public_key(ca: pkiutil.Issued) -> None:
    pin = pkiutil.spki_hash(ca.cert)
    assert pin == ca_cert_hash(ca.cert_pem())  # what capstan renders into JoinConfiguration
    assert pin.startswith("sha256:") and len(pin) == 71


def test_discovery_with_the_right_token_and_pin(cluster_api: FakeApi, ca: pkiutil.Issued) -> None:
    found = discovery.discover(fetch(cluster_api), TOKEN, [pkiutil.spki_hash(ca.cert)], False)
    assert found.server == SERVER
    assert found.ca_pem == ca.cert_pem()


def test_a_wrong_ca_hash_is_refused(cluster_api: FakeApi) -> None:
    with pytest.raises(
        KubeadmError, match="cluster CA found in cluster-info ConfigMap is invalid: none of the"
    ):
        discovery.discover(fetch(cluster_api), TOKEN, ["sha256:" + "0" * 64], False)


def test_an_unknown_token_id_is_refused(cluster_api: FakeApi, ca: pkiutil.Issued) -> None:
    with pytest.raises(KubeadmError, match='This token id "zzzzzz" is invalid for this cluster'):
        discovery.discover(fetch(cluster_api), "zzzzzz.0123456789abcdef", [pkiutil.spki_hash(ca.cert)], False)


def test_a_wrong_token_secret_is_refused(cluster_api: FakeApi, ca: pkiutil.Issued) -> None:
    with pytest.raises(KubeadmError, match="failed to verify JWS signature"):
        discovery.discover(fetch(cluster_api), "abcdef.ffffffffffffffff", [pkiutil.spki_hash(ca.cert)], False)


def test_the_token_secret_is_what_the_apiserver_checks(cluster_api: FakeApi) -> None:
    secret = cluster_api.get("/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert data["token-id"] == "abcdef" and data["token-secret"] == "0123456789abcdef"
    assert data["usage-bootstrap-authentication"] == "true" and "expiration" in data


def test_token_create_writes_only_the_secret_and_the_signer_signs_for_it(
    cluster_api: FakeApi, monkeypatch: pytest.MonkeyPatch, ca: pkiutil.Issued, tmp_path: Path
) -> None:
    from capstan.lab.standins.kubeadm import reset

    monkeypatch.setattr(reset.rest, "from_kubeconfig", lambda _path: cluster_api)
    args = argparse.Namespace(
        kubeconfig=None,
        token="qwerty.0123456789qwerty",
        groups=None,
        usages=None,
        description=None,
        ttl=None,
        print_join_command=False,
        certificate_key=None,
    )
    assert reset.token_create(args) == 0
    assert "jws-kubeconfig-qwerty" not in cluster_api.get(discovery.CLUSTER_INFO)["data"]  # as real kubeadm
    pin = [pkiutil.spki_hash(ca.cert)]
    with pytest.raises(KubeadmError, match='token id "qwerty" is invalid'):
        discovery.discover(fetch(cluster_api), "qwerty.0123456789qwerty", pin, False)
    run_signer(cluster_api)
    found = discovery.discover(fetch(cluster_api), "qwerty.0123456789qwerty", pin, False)
    assert found.server == SERVER


def test_discovery_waits_for_the_signature_until_its_deadline(
    cluster_api: FakeApi, ca: pkiutil.Issued
) -> None:
    info = cluster_api.get(discovery.CLUSTER_INFO)
    unsigned = {**info, "data": {"kubeconfig": info["data"]["kubeconfig"]}}
    answers = [unsigned, unsigned, info]
    calls: list[int] = []

    def fetch_in_turn() -> Any:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    pin = [pkiutil.spki_hash(ca.cert)]
    found = discovery.discover(
        fetch_in_turn, TOKEN, pin, False, wait_until=time.monotonic() + 30, interval=0.01
    )
    assert found.server == SERVER and len(calls) == 3
    with pytest.raises(KubeadmError, match='token id "abcdef" is invalid'):
        discovery.discover(
            lambda: unsigned, TOKEN, pin, False, wait_until=time.monotonic() + 0.05, interval=0.01
        )


def _join_config(tmp_path: Path, **changes: Any) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": "10.0.0.10:6443",
                "token": TOKEN,
                "caCertHashes": ["sha256:" + "ab" * 32],
            }
        },
        "nodeRegistration": {"name": "w1"},
        **changes,
    }
    target = tmp_path / "join.yaml"
    target.write_text(yaml.safe_dump(doc))
    return str(target)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    host_root = tmp_path / "host"
    host_root.mkdir()
    monkeypatch.setenv("CAPSTAN_STANDIN_ROOT", str(host_root))
    return host_root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv), "1.36.4")
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_join_without_a_ca_pin_is_refused(tmp_path: Path, root: Path, capsys: Any) -> None:
    config = _join_config(
        tmp_path, discovery={"bootstrapToken": {"apiServerEndpoint": "10.0.0.10:6443", "token": TOKEN}}
    )
    rc, out = run(capsys, "join", "--config", config)
    assert rc == 1
    assert "using token-based discovery without caCertHashes can be unsafe" in out


def test_join_without_discovery_is_refused(tmp_path: Path, root: Path, capsys: Any) -> None:
    rc, out = run(capsys, "join", "--config", _join_config(tmp_path, discovery={}))
    assert rc == 1 and "bootstrapToken or file must be set" in out


def test_join_on_an_already_joined_node_is_refused(tmp_path: Path, root: Path, capsys: Any) -> None:
    conf = root / "etc/kubernetes/kubelet.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("kind: Config\n")
    rc, out = run(capsys, "join", "--config", _join_config(tmp_path), "--ignore-preflight-errors=CRI")
    assert rc == 1
    assert "error execution phase preflight" in out
    assert (
        "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: /etc/kubernetes/kubelet.conf already exists"
        in out
    )


def test_join_config_cannot_be_mixed_with_join_flags(tmp_path: Path, root: Path, capsys: Any) -> None:
    rc, out = run(
        capsys, "join", "--config", _join_config(tmp_path), "--control-plane", "--certificate-key", "ab" * 32
    )
    assert rc == 1
    assert "can not mix '--config' with arguments [certificate-key control-plane]" in out


def test_join_flags_alone_are_validated(root: Path, capsys: Any) -> None:
    rc, out = run(capsys, "join", "10.0.0.10:6443", "--token", TOKEN)
    assert rc == 1 and "without caCertHashes" in out
    rc, out = run(capsys, "join", "10.0.0.10:6443", "--token", "bad", "--discovery-token-ca-cert-hash", "x")
    assert rc == 1 and "discovery.bootstrapToken.token: Invalid value" in out and "caCertHashes[0]" in out


def test_uploaded_certs_need_the_certificate_key(root: Path, ca: pkiutil.Issued) -> None:
    pki = root / "etc/kubernetes/pki"
    pki.mkdir(parents=True)
    for name in ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"):
        (pki / name).write_bytes(f"content of {name}".encode())
    cluster = default_cluster(
        {"kubernetesVersion": "v1.36.4", "etcd": {"external": {"endpoints": ["https://e:2379"]}}}
    )
    node = NodeSetup(cluster, "cp1", "10.0.0.10", 6443)
    key = uc.new_certificate_key()
    secret = uc.secret_body(node, key, None)
    assert all(b"content of" not in base64.b64decode(v) for v in secret["data"].values())
    (pki / "ca.key").unlink()
    with pytest.raises(KubeadmError, match="message authentication failed"):
        uc.write_downloaded(node, secret, uc.new_certificate_key())
    assert not (pki / "ca.key").exists()
    assert uc.write_downloaded(node, secret, key) == 1
    assert (pki / "ca.key").read_bytes() == b"content of ca.key"


def test_init_phase_upload_certs_needs_the_flag(root: Path, capsys: Any) -> None:
    rc, out = run(capsys, "init", "phase", "upload-certs")
    assert rc == 0 and "Skipping phase" in out


V = Version.parse


def test_upgrade_that_skips_a_minor_is_refused() -> None:
    mandatory, _ = version_policy(V("1.34.11"), V("1.36.4"), V("1.36.4"))
    assert any("kubeadm can upgrade only 1 minor version at a time" in m for m in mandatory)
    with pytest.raises(KubeadmError, match="too high"):
        enforce(V("1.34.11"), V("1.36.4"), V("1.36.4"), force=True)  # --force does not override it


def test_minor_downgrade_is_refused() -> None:
    mandatory, _ = version_policy(V("1.36.4"), V("1.35.8"), V("1.36.4"))
    assert any("too low; kubeadm can downgrade only patch versions" in m for m in mandatory)


def test_target_newer_than_kubeadm_is_refused_unless_forced() -> None:
    _, skippable = version_policy(V("1.35.8"), V("1.36.4"), V("1.35.8"))
    assert any("is higher than the kubeadm version" in s for s in skippable)
    with pytest.raises(KubeadmError, match="override these with --force"):
        enforce(V("1.35.8"), V("1.36.4"), V("1.35.8"), force=False)


def test_one_minor_upgrade_with_the_matching_kubeadm_is_allowed() -> None:
    assert version_policy(V("1.35.8"), V("1.36.4"), V("1.36.4")) == ([], [])
    assert version_policy(V("1.36.3"), V("1.36.4"), V("1.36.4")) == ([], [])
    enforce(V("1.35.8"), V("1.36.4"), V("1.36.4"), force=False)


def test_upgrade_apply_needs_a_control_plane(root: Path, capsys: Any) -> None:
    rc, out = run(capsys, "upgrade", "apply", "-y", "v1.36.4")
    assert rc == 1 and "not a control plane" in out


def test_a_fresh_token_has_kubeadms_shape() -> None:
    token = init.new_token()
    assert discovery.split_token(token)[0] == token[:6]
