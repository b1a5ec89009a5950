"""Pieces of the control-plane stand-ins: scheduler and controller loops, patches, encryption, codecs.

The loops run against the in-process API server (``MemoryStorage``) through the shared ``KubeClient``
with the identities kubeadm gives the components, so authorization is exercised too.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_standin_apiserver_support import Api, Pki, make_pki, node_obj, pod_obj, token_secret

from capstan.lab.standins.apiserver import controller, csr, encryption, protobuf, scheduler
from capstan.lab.standins.apiserver.patch import json_patch, merge_patch, strategic_merge
from capstan.lab.standins.apiserver.resources import core
from capstan.lab.standins.apiserver.secretbox import open_box, seal
from capstan.lab.standins.apiserver.workloads import Workloads
from capstan.lab.standins.common import flags as fl
from capstan.lab.standins.common.client import ApiError, KubeClient
from capstan.lab.standins.common.kubeconfig import KubeconfigError
from capstan.lab.standins.common.kubeconfig import load as load_kubeconfig
from capstan.lab.standins.kubeadm import objects

NS = "/api/v1/namespaces/default"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def api(pki: Pki) -> Iterator[Api]:
    server = Api(pki, authorization_mode="Node,RBAC", bootstrap_tokens=True)
    yield server
    server.close()


@pytest.fixture
def admin(api: Api, pki: Pki) -> KubeClient:
    return api.client(pki.client("kubernetes-admin", "system:masters"))


def settle_taints(api: Api, pki: Pki) -> None:
    """One pass of the node lifecycle controller's taints: new Nodes carry not-ready until then."""
    controller.NodeLifecycle(api.client(pki.client("system:kube-controller-manager")), grace=60).taint_pass()


def _names(items: list[dict[str, object]]) -> list[str]:
    return sorted(str(i["metadata"]["name"]) for i in items)  # type: ignore[index]


# ---- scheduler ---------------------------------------------------------------------------------


def test_scheduler_places_pending_pods_on_ready_schedulable_tolerated_nodes(
    api: Api, pki: Pki, admin: KubeClient
) -> None:
    sched = api.client(pki.client("system:kube-scheduler"))
    admin.post("/api/v1/nodes", node_obj("ready"))
    admin.post("/api/v1/nodes", node_obj("down", ready=False))
    admin.post("/api/v1/nodes", node_obj("cordoned", unschedulable=True))
    admin.post(
        "/api/v1/nodes",
        node_obj("tainted", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    for i in range(3):
        admin.post(f"{NS}/pods", pod_obj(f"p{i}"))
    db = pod_obj("db")
    db["spec"]["tolerations"] = [
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
    ]
    db["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "tainted"}
    admin.post(f"{NS}/pods", db)
    assert scheduler.schedule_once(sched) == 0  # every new Node is not-ready until the controller looks
    settle_taints(api, pki)
    assert scheduler.schedule_once(sched) == 4
    pods = {p["metadata"]["name"]: p for p in admin.items(f"{NS}/pods")}
    assert {pods[f"p{i}"]["spec"]["nodeName"] for i in range(3)} <= {"ready", "tainted"} - {"tainted"} | {
        "ready"
    }
    assert pods["db"]["spec"]["nodeName"] == "tainted"
    assert all(p["status"]["phase"] == "Running" for p in pods.values())
    assert scheduler.schedule_once(sched) == 0


def test_scheduler_reports_why_a_pod_cannot_be_placed(api: Api, pki: Pki, admin: KubeClient) -> None:
    sched = api.client(pki.client("system:kube-scheduler"))
    admin.post("/api/v1/nodes", node_obj("only", unschedulable=True))
    admin.post(f"{NS}/pods", pod_obj("stuck"))
    settle_taints(api, pki)
    assert scheduler.schedule_once(sched) == 0
    cond = admin.get(f"{NS}/pods/stuck")["status"]["conditions"][0]
    assert cond["reason"] == "Unschedulable" and "1 node(s) were unschedulable" in cond["message"]


def test_scheduler_identity_cannot_delete(api: Api, pki: Pki, admin: KubeClient) -> None:
    admin.post(f"{NS}/pods", pod_obj("p"))
    with pytest.raises(ApiError) as err:
        api.client(pki.client("system:kube-scheduler")).delete(f"{NS}/pods/p")
    assert err.value.status == 403


# ---- controller-manager ------------------------------------------------------------------------


def _deployment(replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def test_deployment_pods_are_recreated_after_eviction_and_rescheduled(
    api: Api, pki: Pki, admin: KubeClient
) -> None:
    cm = api.client(pki.client("system:kube-controller-manager"))
    sched = api.client(pki.client("system:kube-scheduler"))
    admin.post("/api/v1/nodes", node_obj("a"))
    admin.post("/api/v1/nodes", node_obj("b"))
    settle_taints(api, pki)
    admin.post("/apis/apps/v1/namespaces/default/deployments", _deployment(2))
    work = Workloads(cm)
    work.sync()
    assert len(admin.items(f"{NS}/pods")) == 2
    scheduler.schedule_once(sched)
    work.sync()
    work.sync()
    assert admin.get("/apis/apps/v1/namespaces/default/deployments/web")["status"]["readyReplicas"] == 2
    on_a = [p for p in admin.items(f"{NS}/pods") if p["spec"]["nodeName"] == "a"]
    admin.patch("/api/v1/nodes/a", {"spec": {"unschedulable": True}})
    for p in on_a:
        name = p["metadata"]["name"]
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
        admin.post(f"{NS}/pods/{name}/eviction", eviction)
    work.sync()
    scheduler.schedule_once(sched)
    pods = admin.items(f"{NS}/pods")
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {"b"}
    admin.delete("/apis/apps/v1/namespaces/default/deployments/web")
    work.sync()
    work.sync()
    assert (
        admin.items(f"{NS}/pods") == [] and admin.items("/apis/apps/v1/namespaces/default/replicasets") == []
    )


def test_daemonset_gets_one_pod_per_eligible_node(api: Api, pki: Pki, admin: KubeClient) -> None:
    cm = api.client(pki.client("system:kube-controller-manager"))
    admin.post("/api/v1/nodes", node_obj("a", unschedulable=True))
    admin.post("/api/v1/nodes", node_obj("b", taints=[{"key": "x", "effect": "NoSchedule"}]))
    settle_taints(api, pki)
    ds = _deployment(0)
    ds["kind"] = "DaemonSet"
    del ds["spec"]["replicas"]  # type: ignore[attr-defined]
    admin.post("/apis/apps/v1/namespaces/default/daemonsets", ds)
    Workloads(cm).sync()
    pods = admin.items(f"{NS}/pods")
    assert len(pods) == 1 and pods[0]["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    scheduler.schedule_once(api.client(pki.client("system:kube-scheduler")))
    assert admin.items(f"{NS}/pods")[0]["spec"]["nodeName"] == "a"  # cordoned nodes still run daemons


def test_silent_node_goes_unknown_and_its_pods_unready(api: Api, pki: Pki, admin: KubeClient) -> None:
    cm = api.client(pki.client("system:kube-controller-manager"))
    admin.post("/api/v1/nodes", node_obj("a"))
    admin.post(f"{NS}/pods", pod_obj("p"))
    settle_taints(api, pki)
    scheduler.schedule_once(api.client(pki.client("system:kube-scheduler")))
    life = controller.NodeLifecycle(cm, grace=0.2)
    life.sync()
    assert admin.get("/api/v1/nodes/a")["status"]["conditions"][0]["status"] == "True"
    deadline = time.monotonic() + 10
    while admin.get("/api/v1/nodes/a")["status"]["conditions"][0]["status"] != "Unknown":
        assert time.monotonic() < deadline
        life.sync()
    node = admin.get("/api/v1/nodes/a")
    assert node["status"]["conditions"][0]["reason"] == "NodeStatusUnknown"
    assert node["spec"]["taints"] == [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]
    life.sync()
    ready = [c for c in admin.get(f"{NS}/pods/p")["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "False"


def test_kubelet_client_csr_is_approved_and_signed(api: Api, pki: Pki, admin: KubeClient) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, "system:node:w1"),
        ]
    )
    req = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    pem = req.public_bytes(serialization.Encoding.PEM)
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr-w1"},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": csr.KUBELET_CLIENT,
            "usages": ["digital signature", "client auth"],
        },
    }
    group = "system:bootstrappers:kubeadm:default-node-token"
    admin.post(
        "/api/v1/namespaces/kube-system/secrets",
        token_secret("abcdef", "0123456789abcdef", **{"auth-extra-groups": group}),
    )
    for obj in objects.bootstrap_rbac():  # kubeadm:kubelet-bootstrap lets the token post CSRs
        if obj["kind"] == "ClusterRoleBinding":
            admin.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", obj)
    token_client = KubeClient(
        f"https://127.0.0.1:{api.port}", api.context(None), token="abcdef.0123456789abcdef"
    )
    created = token_client.post("/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
    assert created["spec"]["username"] == "system:bootstrap:abcdef"
    signer = csr.Signer(str(pki.dir / "ca.crt"), str(pki.dir / "ca.key"), 3600)
    csr.sync(api.client(pki.client("system:kube-controller-manager")), signer)
    done = token_client.get("/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr-w1")
    assert done["status"]["conditions"][0]["type"] == "Approved"
    cert = x509.load_pem_x509_certificate(base64.b64decode(done["status"]["certificate"]))
    assert cert.subject == subject and cert.issuer.rfc4514_string() == "CN=kubernetes"


# ---- patches -----------------------------------------------------------------------------------


def test_strategic_merge_keeps_unnamed_list_items_and_honours_directives() -> None:
    live = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "1"},
            ]
        }
    }
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "2"}, {"name": "b", "$patch": "delete"}],
        }
    }
    out = strategic_merge(live, patch)
    assert out == {"spec": {"containers": [{"name": "a", "image": "2", "ports": [{"containerPort": 80}]}]}}
    assert merge_patch(live, {"spec": {"containers": [{"name": "a"}]}}) == {
        "spec": {"containers": [{"name": "a"}]}
    }


def test_json_patch_operations_and_failures() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}}
    ops = [
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "replace", "path": "/spec/list/0", "value": 9},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "test", "path": "/spec/list/1", "value": 2},
    ]
    assert json_patch(doc, ops) == {"metadata": {"labels": {"b/c": "2"}}, "spec": {"list": [9, 2, 3]}}
    with pytest.raises(Exception, match="testing value"):
        json_patch(doc, [{"op": "test", "path": "/spec/list/0", "value": 5}])
    with pytest.raises(Exception, match="nonexistent"):
        json_patch(doc, [{"op": "remove", "path": "/metadata/missing"}])


def test_server_side_apply_creates_then_merges(api: Api, admin: KubeClient) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n"
    path = f"{NS}/configmaps/c"
    with pytest.raises(ApiError) as err:
        admin.patch(path, body, "application/apply-patch+yaml")
    assert err.value.status == 400  # fieldManager is required
    created = admin.patch(path, body, "application/apply-patch+yaml", {"fieldManager": "capstan"})
    assert created["data"] == {"a": "1"} and created["metadata"]["managedFields"][0]["manager"] == "capstan"
    merged = admin.patch(
        path, body.replace(b"a: '1'", b"b: '2'"), "application/apply-patch+yaml", {"fieldManager": "capstan"}
    )
    assert merged["data"] == {"a": "1", "b": "2"}


# ---- encryption, codecs, flags, kubeconfig ------------------------------------------------------


@pytest.mark.parametrize("provider", ["secretbox", "aescbc", "aesgcm"])
def test_encryption_round_trip_and_envelope(tmp_path: Path, provider: str) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    conf = tmp_path / "enc.yaml"
    conf.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        "- resources: [secrets]\n"
        f"  providers: [{{{provider}: {{keys: [{{name: k1, secret: {key}}}]}}}}, {{identity: {{}}}}]\n"
    )
    enc = encryption.load(str(conf))
    sealed = enc.encrypt(core("secrets"), "/registry/secrets/a/b", b'{"x":1}')
    assert sealed.startswith(f"k8s:enc:{provider}:v1:k1:".encode())
    assert enc.decrypt(core("secrets"), "/registry/secrets/a/b", sealed) == b'{"x":1}'
    assert enc.decrypt(core("secrets"), "/registry/secrets/a/b", b"plain") == b"plain"  # identity listed
    assert enc.encrypt(core("configmaps"), "/k", b"cm") == b"cm"


def test_encryption_config_errors_name_the_problem(tmp_path: Path) -> None:
    conf = tmp_path / "enc.yaml"
    conf.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        "- resources: [secrets]\n  providers: [{kms: {name: x}}]\n"
    )
    with pytest.raises(encryption.EncryptionConfigError, match="'kms' is not supported"):
        encryption.load(str(conf))


def test_secretbox_matches_libsodium_when_present() -> None:
    key, nonce, msg = os.urandom(32), os.urandom(24), os.urandom(300)
    sealed = seal(msg, nonce, key)
    assert open_box(sealed, nonce, key) == msg
    with pytest.raises(ValueError):
        open_box(sealed[:-1] + bytes([sealed[-1] ^ 1]), nonce, key)
    lib = ctypes.util.find_library("sodium")
    if lib is None:
        pytest.skip("libsodium not installed: reference comparison skipped")
    sodium = ctypes.CDLL(lib)
    assert sodium.sodium_init() >= 0
    out = ctypes.create_string_buffer(len(msg) + 16)
    sodium.crypto_secretbox_easy(out, msg, ctypes.c_ulonglong(len(msg)), nonce, key)
    assert out.raw == sealed


def _pb_field(num: int, payload: bytes) -> bytes:
    return bytes([num << 3 | 2, len(payload)]) + payload


def test_protobuf_eviction_is_decoded() -> None:
    meta = _pb_field(1, b"web-0") + _pb_field(3, b"shop")
    opts = _pb_field(2, _pb_field(1, b"uid-1"))
    raw = _pb_field(1, meta) + _pb_field(2, opts)
    type_meta = _pb_field(1, b"policy/v1") + _pb_field(2, b"Eviction")
    body = protobuf.MAGIC + _pb_field(1, type_meta) + _pb_field(2, raw)
    assert protobuf.decode_object(body) == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-0", "namespace": "shop"},
        "deleteOptions": {"preconditions": {"uid": "uid-1"}},
    }
    other = protobuf.MAGIC + _pb_field(1, _pb_field(1, b"apps/v1") + _pb_field(2, b"Deployment"))
    with pytest.raises(protobuf.ProtobufError, match="Deployment"):
        protobuf.decode_object(other)


def test_flag_parsing() -> None:
    spec = [fl.Flag("a"), fl.Flag("b", boolean=True), fl.Flag("c", "40s"), fl.Flag("r", required=True)]
    f = fl.parse(["--a", "x", "--b", "--r=1", "--new=2", "--c=1m30s"], spec)
    assert (
        f.get_str("a") == "x" and f.get_bool("b") and f.get_duration("c") == 90.0 and f.unknown == ["--new=2"]
    )
    with pytest.raises(fl.FlagError, match="--r"):
        fl.parse([], spec)
    with pytest.raises(fl.FlagError, match="invalid duration"):
        fl.parse_duration("forty")


def test_kubeconfig_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://x:80'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    with pytest.raises(KubeconfigError, match="https"):
        load_kubeconfig(str(conf))
    with pytest.raises(KubeconfigError, match="No such file"):
        load_kubeconfig(str(tmp_path / "missing.conf"))


def test_components_refuse_to_start_without_a_kubeconfig(capsys: pytest.CaptureFixture[str]) -> None:
    assert controller.main(["--secure-port=0"], "1.36.4") == 1
    assert "--kubeconfig is required" in capsys.readouterr().err
    assert scheduler.main(["--secure-port=0"], "1.36.4") == 1
    assert "--kubeconfig" in capsys.readouterr().err
    assert scheduler.main(["--version"], "1.36.4") == 0
