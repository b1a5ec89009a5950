"""The kube-apiserver stand-in on a REAL etcd 3.4 (TLS, client-cert auth), driven by the REAL kubectl.

The fixture starts ``/usr/bin/etcd`` on loopback with certificates made here, builds the stand-in as the
lab ships it (the ``kube-apiserver`` zipapp, run by ``/usr/bin/python3``) and starts it with kubeadm-like
flags (including secretbox encryption of Secrets). Only processes started here are stopped, by PID.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from capstan.lab.standins import make_zipapp, package_files
from capstan.lab.standins.apiserver.etcd import EtcdStorage, client_context
from capstan.lab.standins.common.pki import Pem, issue, make_ca, self_signed

ETCD, ETCDCTL, KUBECTL, PYTHON = "/usr/bin/etcd", "/usr/bin/etcdctl", "/usr/bin/kubectl", "/usr/bin/python3"
pytestmark = pytest.mark.skipif(
    not all(os.access(p, os.X_OK) for p in (ETCD, ETCDCTL, KUBECTL, PYTHON)),
    reason="needs /usr/bin/etcd, etcdctl, kubectl and python3",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _write(d: Path, name: str, pem: Pem) -> tuple[Path, Path]:
    (d / f"{name}.crt").write_bytes(pem.cert)
    (d / f"{name}.key").write_bytes(pem.key)
    return d / f"{name}.crt", d / f"{name}.key"


def _kubeconfig(path: Path, port: int, ca: bytes, cred: Pem) -> Path:
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: lab, cluster: {{server: 'https://127.0.0.1:{port}', "
        f"certificate-authority-data: {b64(ca)}}}}}]\n"
        f"users: [{{name: u, user: {{client-certificate-data: {b64(cred.cert)}, "
        f"client-key-data: {b64(cred.key)}}}}}]\n"
        "contexts: [{name: c, context: {cluster: lab, user: u}}]\ncurrent-context: c\n"
    )
    return path


class Cluster:
    def __init__(self, d: Path) -> None:
        self.d = d
        self.client_port, self.peer_port, self.api_port = _free_port(), _free_port(), _free_port()
        self.etcd_ca = make_ca("etcd-ca")
        self.etcd_server = _write(
            d, "etcd-server", issue(self.etcd_ca, "etcd", sans=("127.0.0.1",), server=True)
        )
        self.etcd_client = _write(d, "etcd-client", issue(self.etcd_ca, "kube-apiserver-etcd-client"))
        (d / "etcd-ca.crt").write_bytes(self.etcd_ca.cert)
        self.ca = make_ca("kubernetes")
        (d / "ca.crt").write_bytes(self.ca.cert)
        self.serving = _write(
            d, "apiserver", issue(self.ca, "kube-apiserver", sans=("127.0.0.1",), server=True)
        )
        (d / "sa.key").write_bytes(self_signed("sa").key)
        key = base64.b64encode(os.urandom(32)).decode()
        (d / "encryption.yaml").write_text(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
            "- resources: [secrets]\n  providers:\n"
            f"  - secretbox: {{keys: [{{name: key1, secret: {key}}}]}}\n"
            "  - identity: {}\n"
        )
        self.admin = _kubeconfig(
            d / "admin.conf", self.api_port, self.ca.cert, issue(self.ca, "admin", orgs=("system:masters",))
        )
        self.data = d / "etcd-data"
        self.etcd: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        tls = [
            "--cacert",
            str(self.d / "etcd-ca.crt"),
            "--cert",
            str(self.etcd_client[0]),
            "--key",
            str(self.etcd_client[1]),
        ]
        cmd = [ETCDCTL, *tls, "--endpoints", self.endpoint, *args]
        return subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60
        )

    def start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            ETCD, "--name", "default", "--data-dir", str(self.data),
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--client-cert-auth",
            "--cert-file", str(self.etcd_server[0]), "--key-file", str(self.etcd_server[1]),
            "--trusted-ca-file", str(self.d / "etcd-ca.crt"),
        ]  # fmt: skip
        log = (self.d / "etcd.log").open("ab")
        self.etcd = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _wait("etcd health", lambda: self.etcdctl("endpoint", "health").returncode == 0)

    def stop_etcd(self) -> None:
        if self.etcd is not None:
            _stop(self.etcd)

    def start_api(self) -> None:
        exe = self.d / "kube-apiserver"
        exe.write_bytes(make_zipapp(package_files(), "kube-apiserver", "1.36.4"))
        exe.chmod(0o755)
        flags = {
            "advertise-address": "127.0.0.1", "bind-address": "127.0.0.1", "secure-port": str(self.api_port),
            "tls-cert-file": self.serving[0], "tls-private-key-file": self.serving[1],
            "client-ca-file": self.d / "ca.crt", "etcd-servers": self.endpoint,
            "etcd-cafile": self.d / "etcd-ca.crt", "etcd-certfile": self.etcd_client[0],
            "etcd-keyfile": self.etcd_client[1],
            "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
            "service-account-key-file": self.d / "sa.key",
            "service-account-signing-key-file": self.d / "sa.key",
            "service-cluster-ip-range": "10.96.0.0/12", "authorization-mode": "Node,RBAC",
            "enable-bootstrap-token-auth": "true", "encryption-provider-config": self.d / "encryption.yaml",
            "allow-privileged": "true", "enable-admission-plugins": "NodeRestriction",
        }  # fmt: skip
        log = (self.d / "apiserver.log").open("ab")
        self.api = subprocess.Popen(
            [str(exe), *(f"--{k}={v}" for k, v in flags.items())], stdout=log, stderr=subprocess.STDOUT
        )
        _wait("apiserver /readyz", lambda: self.readyz() == (200, "ok"))
        _wait(
            "default namespaces",
            lambda: self.kubectl("get", "ns", "kube-system", check=False).returncode == 0,
        )

    def readyz(self) -> tuple[int, str]:
        ctx = ssl.create_default_context(cadata=self.ca.cert.decode())
        conn = http.client.HTTPSConnection("127.0.0.1", self.api_port, context=ctx, timeout=5)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        except OSError:
            return 0, ""
        finally:
            conn.close()

    def kubectl(
        self, *args: str, stdin: str = "", check: bool = True, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(config or self.admin)}
        res = subprocess.run(
            [KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=90
        )
        if check:
            assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stderr}"
        return res


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("standin-etcd"))
    try:
        c.start_etcd()
        c.start_api()
        yield c
    finally:
        if c.api is not None:
            _stop(c.api)
        c.stop_etcd()


APP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop}
data: {greeting: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]
"""


def test_readyz_over_tls(cluster: Cluster) -> None:
    assert cluster.readyz() == (200, "ok")


def test_kubectl_create_apply_get_delete(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "shop")
    out = cluster.kubectl("apply", "-f", "-", stdin=APP).stdout
    assert "configmap/web-config created" in out and "deployment.apps/web created" in out
    assert "unchanged" in cluster.kubectl("apply", "-f", "-", stdin=APP).stdout
    changed = cluster.kubectl("apply", "-f", "-", stdin=APP.replace("nginx:1.27", "nginx:1.28")).stdout
    assert "deployment.apps/web configured" in changed
    image = cluster.kubectl(
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} "
        "{.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}",
    )
    assert image.stdout == "nginx:1.28 80 2"
    table = cluster.kubectl("get", "deploy,cm", "-n", "shop").stdout
    assert "deployment.apps/web" in table and "configmap/web-config" in table
    assert "serverside-applied" in cluster.kubectl("apply", "--server-side", "-f", "-", stdin=APP).stdout
    cluster.kubectl("delete", "-f", "-", stdin=APP)
    gone = cluster.kubectl("get", "deploy", "web", "-n", "shop", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    cluster.kubectl("delete", "namespace", "shop")
    assert cluster.kubectl("get", "ns", "shop", check=False).returncode != 0


NODE = """
apiVersion: v1
kind: Node
metadata: {name: NAME, labels: {node-role.kubernetes.io/control-plane: ""}}
status:
  conditions: [{type: Ready, status: "True", reason: KubeletReady}]
  addresses: [{type: InternalIP, address: 10.250.0.11}]
  nodeInfo: {kubeletVersion: v1.36.4, osImage: Debian GNU/Linux 12 (bookworm), containerRuntimeVersion: containerd://1.6.20}
"""


def test_get_nodes_wide_lists_version_and_cordon_sets_unschedulable(cluster: Cluster) -> None:
    cluster.kubectl("create", "-f", "-", stdin=NODE.replace("NAME", "cp1"))
    lines = cluster.kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] and "INTERNAL-IP" in lines[0]
    row = next(line.split() for line in lines if line.startswith("cp1"))
    assert row[1] == "Ready" and row[2] == "control-plane" and row[4] == "v1.36.4" and row[5] == "10.250.0.11"
    cluster.kubectl("cordon", "cp1")
    spec = cluster.kubectl("get", "node", "cp1", "-o", "jsonpath={.spec.unschedulable}").stdout
    assert spec == "true"
    assert "Ready,SchedulingDisabled" in cluster.kubectl("get", "node", "cp1").stdout
    cluster.kubectl("uncordon", "cp1")
    assert cluster.kubectl("get", "node", "cp1", "-o", "jsonpath={.spec.unschedulable}").stdout == ""


def _workload(cluster: Cluster, ns: str, node: str, replicas: int) -> None:
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "-f", "-", stdin=NODE.replace("NAME", node))
    rs = (
        f"apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: web, namespace: {ns}}}\n"
        f"spec: {{replicas: {replicas}, selector: {{matchLabels: {{app: web}}}}, "
        "template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: nginx}]}}}\n"
    )
    cluster.kubectl("create", "-f", "-", stdin=rs)
    uid = cluster.kubectl("get", "rs", "web", "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
    for i in range(replicas):
        pod = (
            f"apiVersion: v1\nkind: Pod\nmetadata: {{name: web-{i}, namespace: {ns}, labels: {{app: web}}, "
            "ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, "
            f"uid: {uid}, controller: true}}]}}\n"
            f"spec: {{nodeName: {node}, containers: [{{name: web, image: nginx}}]}}\n"
        )
        cluster.kubectl("create", "-f", "-", stdin=pod)
        status = '{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}'
        cluster.kubectl(
            "patch", "pod", f"web-{i}", "-n", ns, "--subresource=status", "--type=merge", "-p", status
        )


def test_drain_is_refused_while_a_pdb_would_break_and_passes_when_it_allows(cluster: Cluster) -> None:
    _workload(cluster, "drain", "w1", 2)
    pdb = (
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web-pdb, namespace: drain}\n"
        "spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}\n"
    )
    cluster.kubectl("create", "-f", "-", stdin=pdb)
    refused = cluster.kubectl("drain", "w1", "--ignore-daemonsets", "--timeout=5s", check=False)
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in refused.stderr
    assert "web-pdb" in refused.stderr
    assert len(cluster.kubectl("get", "pods", "-n", "drain", "-o", "name").stdout.split()) == 2
    cluster.kubectl(
        "patch", "pdb", "web-pdb", "-n", "drain", "--type=merge", "-p", '{"spec":{"minAvailable":0}}'
    )
    done = cluster.kubectl("drain", "w1", "--ignore-daemonsets", "--timeout=20s")
    assert "node/w1 drained" in done.stdout
    assert cluster.kubectl("get", "pods", "-n", "drain", "-o", "name").stdout.strip() == ""


def test_objects_survive_an_etcd_snapshot_and_restore(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "keep")
    cluster.kubectl("create", "configmap", "precious", "-n", "keep", "--from-literal=answer=42")
    snap = cluster.d / "snap.db"
    assert cluster.etcdctl("snapshot", "save", str(snap)).returncode == 0
    cluster.kubectl("delete", "configmap", "precious", "-n", "keep")
    cluster.stop_etcd()
    _wait("readyz to fail without etcd", lambda: cluster.readyz()[0] == 500)
    shutil.rmtree(cluster.data)
    peer = f"http://127.0.0.1:{cluster.peer_port}"
    restore = subprocess.run(
        [ETCDCTL, "snapshot", "restore", str(snap), "--name", "default", "--data-dir", str(cluster.data),
         "--initial-cluster", f"default={peer}", "--initial-advertise-peer-urls", peer],
        capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60,
    )  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    cluster.start_etcd()
    _wait("readyz after restore", lambda: cluster.readyz() == (200, "ok"))
    got = cluster.kubectl("get", "configmap", "precious", "-n", "keep", "-o", "jsonpath={.data.answer}")
    assert got.stdout == "42"


def test_keys_use_the_real_layout_and_secrets_are_encrypted(cluster: Cluster) -> None:
    cluster.kubectl("create", "-f", "-", stdin=NODE.replace("NAME", "layout1"))
    cluster.kubectl("create", "secret", "generic", "pw", "--from-literal=password=hunter2")
    keys = cluster.etcdctl("get", "--prefix", "--keys-only", "/registry/").stdout.split()
    assert "/registry/minions/layout1" in keys and "/registry/namespaces/kube-system" in keys
    assert "/registry/services/specs/default/kubernetes" in keys
    raw = subprocess.run(
        [ETCDCTL, "--cacert", str(cluster.d / "etcd-ca.crt"), "--cert", str(cluster.etcd_client[0]),
         "--key", str(cluster.etcd_client[1]), "--endpoints", cluster.endpoint, "get", "--print-value-only",
         "/registry/secrets/default/pw"],
        capture_output=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30,
    ).stdout  # fmt: skip
    assert raw.startswith(b"k8s:enc:secretbox:v1:key1:") and b"hunter2" not in raw
    value = cluster.kubectl("get", "secret", "pw", "-o", "jsonpath={.data.password}").stdout
    assert base64.b64decode(value) == b"hunter2"


def test_a_client_certificate_from_another_ca_is_refused(cluster: Cluster) -> None:
    stranger = issue(make_ca("not-the-cluster-ca"), "admin", orgs=("system:masters",))
    config = _kubeconfig(cluster.d / "stranger.conf", cluster.api_port, cluster.ca.cert, stranger)
    res = cluster.kubectl("get", "nodes", check=False, config=config)
    assert res.returncode != 0 and "nodes" not in res.stdout
    ctx = ssl.create_default_context(cadata=cluster.ca.cert.decode())
    (cluster.d / "s.crt").write_bytes(stranger.cert)
    (cluster.d / "s.key").write_bytes(stranger.key)
    ctx.load_cert_chain(cluster.d / "s.crt", cluster.d / "s.key")
    conn = http.client.HTTPSConnection("127.0.0.1", cluster.api_port, context=ctx, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        conn.request("GET", "/api/v1/nodes")
        conn.getresponse().read()
    conn.close()


def test_stamp_on_real_etcd_counts_keys_and_finds_the_newest_revision(cluster: Cluster) -> None:
    """What the stand-in's list cache relies on: etcd's keys-only, newest-first, limit-1 range still
    counts every key, and any create, update or delete under the prefix changes (count, newest)."""
    ctx = client_context(str(cluster.d / "etcd-ca.crt"), *map(str, cluster.etcd_client))
    store = EtcdStorage([cluster.endpoint], ctx)
    prefix = "/stamp-test/"
    assert store.stamp(prefix)[:2] == (0, 0)
    r1 = store.create(prefix + "a", b"1")
    r2 = store.create(prefix + "b", b"2")
    store.create("/stamp-test-other/c", b"3")  # a sibling prefix is not counted
    count, newest, rev = store.stamp(prefix)
    assert (count, newest) == (2, r2) and rev > r2
    r3 = store.update(prefix + "a", b"1b", r1)
    assert store.stamp(prefix)[:2] == (2, r3)
    assert store.delete(prefix + "a")
    assert store.stamp(prefix)[:2] == (1, r2)
    kvs, _ = store.list(prefix)
    assert [kv.key for kv in kvs] == [prefix + "b"]
