"""The API stand-ins on a real lab host: PodDisruptionBudgets, etcd snapshot/restore, foreign client CAs.

One host (control plane, etcd member and worker) brought up by hand as in ``test_standins_lab``: capstan's
rendered files and PKI, the real etcd and containerd, ``kubeadm init`` with the stand-ins, then the
calico manifest so the node turns Ready. Everything is reached the way an operator would: the real
``kubectl`` and ``etcdctl`` on the host, raw HTTPS from this machine to the host's :6443.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from test_standins_lab import ADMIN, VERSION, Cluster, ok, prepare, put, sh

from capstan.lab import Lab
from capstan.lab.standins.cni import manifest
from capstan.lab.standins.common.kubeconfig import load_cert_chain
from capstan.lab.standins.common.pki import Pem, issue, make_ca
from capstan.pki import cluster_ca_pem

pytestmark = pytest.mark.lab

LAB_HOSTS = [("cp1", ["control-plane", "etcd", "worker"])]
ETCDCTL = "set -a; . /etc/etcdctl.env; set +a; etcdctl"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every half second until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.5)


@dataclass
class Api:
    """Raw HTTPS to cp1's API server from this machine (the root namespace reaches lab hosts)."""

    host: str
    ca: bytes

    def call(self, method: str, path: str, body: Any = None, cred: Pem | None = None) -> tuple[int, Any]:
        ctx = ssl.create_default_context(cadata=self.ca.decode())
        if cred is not None:
            load_cert_chain(ctx, cred.cert, cred.key)
        conn = http.client.HTTPSConnection(self.host, 6443, context=ctx, timeout=20)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()


@dataclass
class ControlPlane:
    cluster: Cluster
    api: Api
    admin: Pem

    @property
    def lab(self) -> Lab:
        return self.cluster.lab

    def kubectl(self, args: str, timeout: float = 120) -> str:
        return ok(self.lab, "cp1", f"kubectl {ADMIN} {args}", timeout)


def _admin_credentials(lab: Lab) -> Pem:
    conf = yaml.safe_load(ok(lab, "cp1", "cat /etc/kubernetes/admin.conf"))
    user = conf["users"][0]["user"]
    return Pem(base64.b64decode(user["client-certificate-data"]), base64.b64decode(user["client-key-data"]))


def _node_ready(cp: ControlPlane) -> bool:
    node = json.loads(cp.kubectl("get node cp1 -o json"))
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    untainted = not any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints") or [])
    return ready and untainted


@pytest.fixture(scope="module")
def cp(lab: Lab) -> ControlPlane:
    cluster = prepare(lab, VERSION)
    out = ok(lab, "cp1", "kubeadm init --config /etc/kubernetes/kubeadm-config.yaml", timeout=400)
    assert "Your Kubernetes control-plane has initialized successfully!" in out
    plane = ControlPlane(cluster, Api(lab.ip("cp1"), cluster_ca_pem(cluster.pki)), _admin_credentials(lab))
    put(lab, "cp1", "/root/calico.yaml", manifest("calico", "3.31.7"))
    plane.kubectl("apply -f /root/calico.yaml")
    wait_for(lambda: _node_ready(plane), 180, "cp1 Ready and without the not-ready taint")
    return plane


# ---- PodDisruptionBudget ---------------------------------------------------------------------------

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/pause:3.10}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"""


def _web_pods(cp: ControlPlane) -> list[dict[str, Any]]:
    items = json.loads(cp.kubectl("get pods -n default -l app=web -o json"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _healthy(pods: list[dict[str, Any]], count: int) -> bool:
    ready = [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    ]
    return len(pods) == count and len(ready) == count


def _evict(cp: ControlPlane, pod: str) -> tuple[int, Any]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}}
    return cp.api.call("POST", f"/api/v1/namespaces/default/pods/{pod}/eviction", body, cp.admin)


def test_eviction_under_a_pdb_with_min_available_equal_to_replicas_is_429(cp: ControlPlane) -> None:
    put(cp.lab, "cp1", "/root/web.yaml", WEB.encode())
    cp.kubectl("apply -f /root/web.yaml")
    wait_for(lambda: _healthy(_web_pods(cp), 2), 120, "2 web pods Running and Ready")
    victim = _web_pods(cp)[0]["metadata"]["name"]
    code, body = _evict(cp, victim)
    assert code == 429, body
    assert body["reason"] == "TooManyRequests" and "disruption budget" in body["message"]
    drain = sh(cp.lab, "cp1", f"kubectl {ADMIN} drain cp1 --pod-selector=app=web --timeout=15s", timeout=120)
    try:
        assert drain.returncode != 0
        assert (
            "Cannot evict pod as it would violate the pod's disruption budget" in drain.stdout + drain.stderr
        )
    finally:
        cp.kubectl("uncordon cp1")
    assert len(_web_pods(cp)) == 2  # nothing was evicted
    cp.kubectl("""patch deployment web -n default --type=merge -p '{"spec":{"replicas":3}}'""")
    wait_for(lambda: _healthy(_web_pods(cp), 3), 120, "3 web pods Running and Ready")
    code, body = _evict(cp, victim)
    assert code == 201, body  # one above the budget: this one may go


# ---- etcd snapshot and restore ---------------------------------------------------------------------


def _readyz(cp: ControlPlane) -> bool:
    try:
        return cp.api.call("GET", "/readyz")[0] == 200
    except OSError:
        return False


def test_objects_survive_an_etcd_snapshot_and_restore_with_the_real_etcdctl(cp: ControlPlane) -> None:
    cp.kubectl("create configmap before-snapshot -n default --from-literal=answer=42")
    ok(cp.lab, "cp1", f"{ETCDCTL} snapshot save /root/snapshot.db", timeout=120)
    cp.kubectl("create configmap after-snapshot -n default --from-literal=answer=0")
    ok(cp.lab, "cp1", "systemctl stop etcd")
    wait_for(lambda: not _readyz(cp), 60, "readyz to fail without etcd")
    restore = (
        "set -a; . /etc/etcd.env; set +a; rm -rf /var/lib/etcd && ETCDCTL_API=3 etcdctl snapshot restore "
        '/root/snapshot.db --name "$ETCD_NAME" --data-dir /var/lib/etcd '
        '--initial-cluster "$ETCD_NAME=$ETCD_INITIAL_ADVERTISE_PEER_URLS" '
        '--initial-advertise-peer-urls "$ETCD_INITIAL_ADVERTISE_PEER_URLS" '
        '--initial-cluster-token "$ETCD_INITIAL_CLUSTER_TOKEN" '
        "&& chown -R etcd:etcd /var/lib/etcd && chmod 700 /var/lib/etcd"
    )
    ok(cp.lab, "cp1", restore, timeout=120)
    ok(cp.lab, "cp1", "systemctl start etcd")
    wait_for(lambda: _readyz(cp), 120, "readyz after the restore")
    got = cp.kubectl("get configmap before-snapshot -n default -o jsonpath={.data.answer}")
    assert got == "42"
    gone = sh(cp.lab, "cp1", f"kubectl {ADMIN} get configmap after-snapshot -n default")
    assert gone.returncode != 0 and "NotFound" in gone.stderr  # the restore really went back in time


# ---- client certificates from another CA -----------------------------------------------------------


def test_a_client_certificate_from_another_ca_is_refused(cp: ControlPlane) -> None:
    path = "/api/v1/namespaces/kube-system/secrets"
    assert cp.api.call("GET", path, cred=cp.admin)[0] == 200  # the cluster CA's admin: the control
    stranger = issue(make_ca("kubernetes"), "kubernetes-admin", orgs=("system:masters",))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        cp.api.call("GET", path, cred=stranger)
    conf = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://{cp.lab.ip('cp1')}:6443",
                    "certificate-authority-data": base64.b64encode(cp.api.ca).decode(),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": base64.b64encode(stranger.cert).decode(),
                    "client-key-data": base64.b64encode(stranger.key).decode(),
                },
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    put(cp.lab, "cp1", "/root/stranger.conf", yaml.safe_dump(conf).encode(), 0o600)
    refused = sh(cp.lab, "cp1", "kubectl --kubeconfig=/root/stranger.conf get secrets -n kube-system")
    assert refused.returncode != 0 and "bootstrap-token" not in refused.stdout


# ---- the bootstrap signer ------------------------------------------------------------------------


def test_a_token_created_as_a_raw_secret_gets_its_cluster_info_signature(cp: ControlPlane) -> None:
    ok(
        cp.lab,
        "cp1",
        f"kubectl {ADMIN} -n kube-system create secret generic bootstrap-token-q1w2e3 "
        "--type=bootstrap.kubernetes.io/token --from-literal=token-id=q1w2e3 "
        "--from-literal=token-secret=0123456789abcdef --from-literal=usage-bootstrap-signing=true "
        "--from-literal=usage-bootstrap-authentication=true",
    )

    def signed() -> bool:
        info = json.loads(cp.kubectl("get configmap cluster-info -n kube-public -o json"))
        return "jws-kubeconfig-q1w2e3" in info["data"]

    wait_for(signed, 60, "the controller-manager to sign cluster-info for token q1w2e3")
