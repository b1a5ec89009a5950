"""The stand-ins on real lab hosts: a control plane brought up by hand with kubeadm init, then joins.

cp1 runs the real etcd (TLS, capstan's unit and PKI) and every host the real containerd; the kubeadm
and kubelet stand-ins are the zipapps the mirror serves, installed by hand where capstan would install
the downloaded binaries, and the files are what capstan renders. cp2 (control plane) and w1 get
capstan's PKI before they join (so kubeadm's preflight must be told to accept it), w2 gets nothing and
goes through the kubelet TLS bootstrap. The endpoint is cp1's apiserver (see ``prepare``).
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import yaml

from capstan.lab import Lab
from capstan.lab.standins.build import build_standin
from capstan.lab.standins.cni import manifest
from capstan.pki import ClusterPKI, cluster_ca_pem, files_for_host, generate
from capstan.plan.material import pki_inputs
from capstan.render import ca_cert_hash, new_secrets, render_host
from capstan.spec import parse_spec

pytestmark = pytest.mark.lab

LAB_HOSTS = [
    ("cp1", ["control-plane", "etcd"]),
    ("cp2", ["control-plane"]),
    ("w1", ["worker"]),
    ("w2", ["worker"]),
]
VERSION = "1.36.4"
ADMIN = "--kubeconfig=/etc/kubernetes/admin.conf"
PLACED_PKI = "FileAvailable--etc-kubernetes-kubelet.conf,FileAvailable--etc-kubernetes-pki-ca.crt"


def sh(lab: Lab, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return lab.exec(host, ["sh", "-c", command], timeout=timeout)


def ok(lab: Lab, host: str, command: str, timeout: float = 120) -> str:
    res = sh(lab, host, command, timeout)
    assert res.returncode == 0, f"{host}: {command}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def put(lab: Lab, host: str, path: str, data: bytes, mode: int = 0o644) -> None:
    q = shlex.quote(path)
    script = f"mkdir -p $(dirname {q}) && base64 -d > {q}.tmp && chmod {mode:o} {q}.tmp && mv {q}.tmp {q}"
    res = lab.exec(host, ["sh", "-c", script], input=base64.b64encode(data).decode())
    assert res.returncode == 0, res.stderr


def until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


@dataclass
class Cluster:
    lab: Lab
    pki: ClusterPKI


def prepare(lab: Lab, version: str, *, no_pki: tuple[str, ...] = ()) -> Cluster:
    """Put capstan's rendered files, its PKI and the stand-ins on every host; start etcd and containerd."""
    doc = yaml.safe_load(lab.spec_path.read_text())
    # cp1's apiserver is the endpoint: the node-local haproxy (maxconn 20000) needs more file
    # descriptors than this machine's hard limit (20000) allows, and it is not what is tested here.
    doc["spec"]["controlPlaneEndpoint"] = {"mode": "external", "address": lab.ip("cp1"), "port": 6443}
    doc["spec"].setdefault("kubernetes", {})["version"] = version
    spec = parse_spec(doc)
    secrets = new_secrets()
    pki, _ = generate(pki_inputs(spec))
    pin = ca_cert_hash(cluster_ca_pem(pki))
    binaries = {name: build_standin(name, version) for name in ("kubeadm", "kubelet")}
    for host in lab.hosts:
        for path, f in render_host(spec, host, secrets, ca_cert_hash=pin).items():
            put(lab, host, path, f.content, f.mode)
        if host not in no_pki:
            for path, host_file in files_for_host(pki, host).items():
                put(lab, host, path, host_file.content, host_file.mode)
        for name, data in binaries.items():
            put(lab, host, f"/usr/local/bin/{name}", data, 0o755)
        # where capstan would unpack the mirror's etcd and containerd archives
        ok(lab, host, "ln -sf /usr/bin/etcd /usr/local/bin/ && ln -sf /usr/bin/containerd /usr/local/bin/")
        ok(
            lab,
            host,
            "systemctl daemon-reload >/dev/null 2>&1; systemctl enable kubelet >/dev/null 2>&1; true",
        )
        # The emulator refuses a missing ExecStartPre even with systemd's "-" prefix; hosts have no modprobe.
        ok(lab, host, "[ -e /sbin/modprobe ] || ln -s /bin/true /sbin/modprobe")
        ok(lab, host, "systemctl start containerd")
    etcd = "mkdir -p /var/lib/etcd && chown -R etcd:etcd /etc/ssl/etcd /var/lib/etcd && systemctl start etcd"
    ok(lab, "cp1", etcd)
    return Cluster(lab, pki)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Cluster:
    return prepare(lab, VERSION, no_pki=("w2",))


def kubectl(c: Cluster, args: str) -> str:
    return ok(c.lab, "cp1", f"kubectl {ADMIN} {args}")


def test_init_brings_up_a_control_plane(cluster: Cluster) -> None:
    out = ok(cluster.lab, "cp1", "kubeadm init --config /etc/kubernetes/kubeadm-config.yaml", timeout=400)
    assert "Your Kubernetes control-plane has initialized successfully!" in out
    second = sh(cluster.lab, "cp1", "kubeadm init --config /etc/kubernetes/kubeadm-config.yaml")
    assert second.returncode == 1
    assert "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml" in second.stderr


def test_readyz_over_tls_with_the_cluster_ca(cluster: Cluster) -> None:
    ctx = ssl.create_default_context(cadata=cluster_ca_pem(cluster.pki).decode())
    url = f"https://{cluster.lab.ip('cp1')}:6443/readyz"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        assert resp.status == 200 and resp.read().strip() == b"ok"


def test_kubectl_lists_the_control_plane_node_with_its_version(cluster: Cluster) -> None:
    out = kubectl(cluster, "get nodes -o wide")
    line = next(li for li in out.splitlines() if li.startswith("cp1 "))
    assert "v1.36.4" in line and cluster.lab.ip("cp1") in line and "control-plane" in line
    pods = kubectl(cluster, "get pods -n kube-system -o name")
    assert "pod/kube-apiserver-cp1" in pods


def test_a_worker_with_placed_pki_joins_only_when_told_to_ignore_it(cluster: Cluster) -> None:
    refused = sh(cluster.lab, "w1", "kubeadm join --config /etc/kubernetes/kubeadm-config.yaml")
    assert refused.returncode == 1
    assert "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]" in refused.stderr
    out = ok(
        cluster.lab,
        "w1",
        f"kubeadm join --config /etc/kubernetes/kubeadm-config.yaml --ignore-preflight-errors={PLACED_PKI}",
        timeout=400,
    )
    assert "This node has joined the cluster" in out
    until(lambda: "w1 " in kubectl(cluster, "get nodes"), 60, "w1 to register")


def test_a_second_control_plane_joins_with_the_certificates_capstan_placed(cluster: Cluster) -> None:
    out = ok(
        cluster.lab,
        "cp2",
        f"kubeadm join --config /etc/kubernetes/kubeadm-config.yaml --ignore-preflight-errors={PLACED_PKI}",
        timeout=400,
    )
    assert "a new control plane instance was created" in out
    assert "Using existing apiserver certificate and key on disk" in out
    node = json.loads(kubectl(cluster, "get node cp2 -o json"))
    assert "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]
    ctx = ssl.create_default_context(cadata=cluster_ca_pem(cluster.pki).decode())
    with urllib.request.urlopen(
        f"https://{cluster.lab.ip('cp2')}:6443/readyz", context=ctx, timeout=10
    ) as resp:
        assert resp.status == 200


def test_token_create_prints_a_join_command_that_works(cluster: Cluster) -> None:
    line = ok(cluster.lab, "cp1", "kubeadm token create --print-join-command").strip()
    assert line.startswith(f"kubeadm join {cluster.lab.ip('cp1')}:6443 --token ")
    assert "--discovery-token-ca-cert-hash sha256:" in line


def test_a_worker_without_pki_joins_through_tls_bootstrap_with_a_new_token(cluster: Cluster) -> None:
    """The token is created just before the join, as a bare Secret (``kubeadm token create``): discovery
    needs the cluster-info signature the controller-manager's bootstrap signer adds for it (kubeadm
    does not sign), and the TLS bootstrap uses that token's RBAC rights."""
    token = ok(cluster.lab, "cp1", "kubeadm token create").strip()
    docs = list(yaml.safe_load_all(ok(cluster.lab, "w2", "cat /etc/kubernetes/kubeadm-config.yaml")))
    join = next(d for d in docs if d and d.get("kind") == "JoinConfiguration")
    assert join["discovery"]["bootstrapToken"]["token"] != token
    join["discovery"]["bootstrapToken"]["token"] = token
    put(cluster.lab, "w2", "/etc/kubernetes/kubeadm-config.yaml", yaml.safe_dump_all(docs).encode(), 0o600)
    out = ok(cluster.lab, "w2", "kubeadm join --config /etc/kubernetes/kubeadm-config.yaml", timeout=400)
    assert "This node has joined the cluster" in out
    conf = ok(cluster.lab, "w2", "cat /etc/kubernetes/kubelet.conf")
    assert "/var/lib/kubelet/pki/kubelet-client-current.pem" in conf
    until(lambda: "w2 " in kubectl(cluster, "get nodes"), 60, "w2 to register")


def test_upgrade_node_on_a_worker_rewrites_only_the_kubelet_config(cluster: Cluster) -> None:
    out = ok(cluster.lab, "w1", "kubeadm upgrade node")
    assert "Skipping phase. Not a control plane node" in out
    assert "The configuration for this node was successfully upgraded!" in out
    assert sh(cluster.lab, "w1", "ls /etc/kubernetes/manifests/*.yaml").returncode != 0


def _ready(cluster: Cluster) -> dict[str, str]:
    nodes = json.loads(kubectl(cluster, "get nodes -o json"))["items"]
    return {
        n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready")
        for n in nodes
    }


def test_nodes_become_ready_once_a_cni_is_applied(cluster: Cluster) -> None:
    assert set(_ready(cluster).values()) == {"False"}  # no pod network yet, as on a real cluster
    put(cluster.lab, "cp1", "/root/calico.yaml", manifest("calico", "3.31.7"))
    kubectl(cluster, "apply -f /root/calico.yaml")
    until(lambda: set(_ready(cluster).values()) == {"True"}, 90, "every node Ready")
    assert ok(cluster.lab, "w2", "ls /etc/cni/net.d").split() == ["10-calico.conflist"]


def test_reset_removes_what_join_wrote(cluster: Cluster) -> None:
    out = ok(cluster.lab, "w2", "kubeadm reset -f")
    assert "[reset] Deleting files" in out
    left = sh(cluster.lab, "w2", "ls /etc/kubernetes/kubelet.conf /var/lib/kubelet/config.yaml")
    assert left.returncode != 0
    assert "w2 " in kubectl(cluster, "get nodes")  # reset does not delete the Node, as the real one


def test_upgrade_changes_what_runs(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory([("cp1", ["control-plane", "etcd", "worker"])])
    c = prepare(lab, "1.35.8")
    ok(lab, "cp1", "kubeadm init --config /etc/kubernetes/kubeadm-config.yaml", timeout=400)
    assert '"gitVersion": "v1.35.8"' in kubectl(c, "version -o json")
    put(lab, "cp1", "/usr/local/bin/kubeadm", build_standin("kubeadm", "1.36.4"), 0o755)
    plan = ok(lab, "cp1", "kubeadm upgrade plan")
    assert "kubeadm upgrade apply v1.36.4" in plan
    out = ok(lab, "cp1", "kubeadm upgrade apply -y v1.36.4", timeout=400)
    assert 'SUCCESS! A control plane node of your cluster was upgraded to "v1.36.4"' in out
    assert '"gitVersion": "v1.36.4"' in kubectl(c, "version -o json")  # the kubelet restarted the apiserver
    assert "kubernetesVersion: v1.36.4" in kubectl(c, "get cm -n kube-system kubeadm-config -o yaml")
    # the kubelet is upgraded by replacing its binary, as with the real one
    put(lab, "cp1", "/usr/local/bin/kubelet", build_standin("kubelet", "1.36.4"), 0o755)
    before = ok(lab, "cp1", "cat /run/capstan-standins/pods/kube-apiserver.json")
    ok(lab, "cp1", "systemctl restart kubelet")
    until(lambda: "v1.36.4" in kubectl(c, "get node cp1"), 60, "the node to report kubelet v1.36.4")
    # the kubelet restart did not restart the static pods: they belong to the runtime
    assert ok(lab, "cp1", "cat /run/capstan-standins/pods/kube-apiserver.json") == before
    put(lab, "cp1", "/root/kubeadm-1.35", build_standin("kubeadm", "1.35.8"), 0o755)
    down = sh(lab, "cp1", "/root/kubeadm-1.35 upgrade apply -y v1.35.8 --force")
    assert down.returncode == 1 and "too low; kubeadm can downgrade only patch versions" in down.stderr
