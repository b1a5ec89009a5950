"""kubelet stand-in: readiness needs a live CRI socket and a CNI config; static pods run as processes.

Runs under a short temporary root (CAPSTAN_STANDIN_ROOT; unix socket paths are limited to 108 bytes)
with real processes: a tiny script stands in for a component's "image".
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.lab.standins import executable_path
from capstan.lab.standins.cni import manifest
from capstan.lab.standins.common.client import ApiError
from capstan.lab.standins.kubelet import main, network, parse_taints, readiness, runtime
from capstan.lab.standins.kubelet.node import NodeAgent
from capstan.lab.standins.kubelet.pods import StaticPods

CRI = "unix:///run/containerd/containerd.sock"


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}

    def get(self, path: str, /) -> Any:
        if path not in self.objects:
            raise ApiError(404, {"reason": "NotFound"}, path)
        return self.objects[path]

    def post(self, path: str, body: Any, /) -> Any:
        self.objects[f"{path}/{body['metadata']['name']}"] = body
        return body

    def put(self, path: str, body: Any, /) -> Any:
        self.objects[path] = body
        return body

    def patch(self, path: str, body: Any, /) -> Any:
        self.objects[path] = {**self.objects.get(path, {}), **body}
        return self.objects[path]

    def delete(self, path: str, /) -> Any:
        return self.objects.pop(path, None)


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    host_root = Path(tempfile.mkdtemp(prefix="kl", dir="/tmp"))
    monkeypatch.setenv("CAPSTAN_STANDIN_ROOT", str(host_root))
    yield host_root
    for rec in runtime.load_all().values():
        runtime.terminate(rec, grace=2)
    shutil.rmtree(host_root, ignore_errors=True)


@pytest.fixture
def containerd(root: Path) -> Iterator[socket.socket]:
    """A listening unix socket where containerd's CRI socket would be."""
    path = root / "run/containerd/containerd.sock"
    path.parent.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    yield sock
    sock.close()


def agent(api: FakeApi | None = None) -> NodeAgent:
    return NodeAgent(api or FakeApi(), "w1", "10.0.0.21", "1.36.4", "containerd://1.6.20", {})


def test_not_ready_without_the_cri_socket(root: Path) -> None:
    ready, why = readiness(CRI, agent())
    assert not ready
    assert why.startswith("container runtime is down: dial unix") and "containerd.sock" in why


def test_a_stale_socket_file_is_not_a_runtime(root: Path, containerd: socket.socket) -> None:
    containerd.close()  # the file stays, nobody listens: connect() is refused
    ready, why = readiness(CRI, agent())
    assert not ready and "container runtime is down" in why


def test_not_ready_until_a_cni_pod_is_on_the_node(root: Path, containerd: socket.socket) -> None:
    api = FakeApi()
    ready, why = readiness(CRI, agent(api))
    assert not ready and "NetworkPluginNotReady" in why
    for doc in yaml.safe_load_all(manifest("calico", "3.31.7")):
        if doc["kind"] == "ConfigMap":
            doc["data"]["veth_mtu"] = "1400"
            api.objects[f"/api/v1/namespaces/kube-system/configmaps/{doc['metadata']['name']}"] = doc
    ready, _ = readiness(CRI, agent(api))
    assert not ready  # the manifest alone is not enough: a calico-node pod must be bound to this node
    owner = {"kind": "DaemonSet", "name": "calico-node", "apiVersion": "apps/v1"}
    pin = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w1"]}]}
    affinity = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [pin]}}
    }
    pod = {
        "metadata": {"name": "calico-node-x", "namespace": "kube-system", "ownerReferences": [owner]},
        "spec": {"affinity": affinity},
    }
    api.objects["/api/v1/namespaces/kube-system/pods"] = {"items": [{**pod, "spec": {"nodeName": "w9"}}]}
    assert not readiness(CRI, agent(api))[0]  # a calico pod on another node does not count
    api.objects["/api/v1/namespaces/kube-system/pods"] = {"items": [pod]}
    assert not readiness(CRI, agent(api))[0]  # pinned here by the DaemonSet controller, not yet bound
    bound = {**pod, "spec": {"affinity": affinity, "nodeName": "w1"}}
    api.objects["/api/v1/namespaces/kube-system/pods"] = {"items": [bound]}
    ready, why = readiness(CRI, agent(api))
    assert ready, why
    conflist = (root / "etc/cni/net.d/10-calico.conflist").read_text()
    assert '"mtu": 1400' in conflist and "w1" in conflist
    assert network.network_ready()


def test_registration_carries_labels_taints_and_version() -> None:
    api = FakeApi()
    node = agent(api)
    assert node.register({"capstan.dev/pool": "a"}, parse_taints("dedicated=db:NoSchedule"))
    obj = api.objects["/api/v1/nodes/w1"]
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == "w1"
    assert obj["metadata"]["labels"]["capstan.dev/pool"] == "a"
    assert obj["spec"]["taints"] == [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    status = node.status(False, "container runtime is down")
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.4"
    assert {"type": "InternalIP", "address": "10.0.0.21"} in status["addresses"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "container runtime is down"
    assert ready["lastHeartbeatTime"]


def test_bad_taint_spec_is_refused() -> None:
    with pytest.raises(Exception, match="invalid taint spec"):
        parse_taints("dedicated=db:Sometimes")


def test_kubelet_exits_until_its_config_exists(root: Path, capsys: Any) -> None:
    assert (
        main(["--config=/var/lib/kubelet/config.yaml", "--kubeconfig=/etc/kubernetes/kubelet.conf"], "1.36.4")
        == 1
    )
    assert "failed to load kubelet config file" in capsys.readouterr().err
    assert main(["--no-such-flag"], "1.36.4") == 1
    assert main(["--version"], "1.36.4") == 0
    assert capsys.readouterr().out.strip() == "Kubernetes v1.36.4"


def _image(root: Path, component: str = "kube-scheduler", version: str = "1.36.4") -> None:
    exe = executable_path(component, version)
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\nexec sleep 120\n")
    exe.chmod(0o755)


def _manifest(root: Path, image: str, extra: list[str] | None = None, name: str = "kube-scheduler") -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "containers": [{
                "name": name,
                "image": image,
                "command": [name, "--kubeconfig=/etc/kubernetes/scheduler.conf", *(extra or [])],
                "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/kubernetes/scheduler.conf"}],
            }],
            "volumes": [{"name": "kubeconfig",
                         "hostPath": {"path": "/etc/kubernetes/scheduler.conf", "type": "FileOrCreate"}}],
            "terminationGracePeriodSeconds": 2,
        },
    }  # fmt: skip
    target = root / "etc/kubernetes/manifests" / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(pod))


def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.1)


def test_static_pod_without_an_image_is_err_image_pull(root: Path) -> None:
    _manifest(root, "registry.k8s.io/kube-scheduler:v1.37.0")
    state = StaticPods("/etc/kubernetes/manifests").sync()["kube-scheduler"]
    assert state.reason == "ErrImagePull" and "v1.37.0" in state.message


def test_a_flag_naming_an_unmounted_file_is_a_create_container_error(root: Path) -> None:
    _image(root)
    _manifest(
        root, "registry.k8s.io/kube-scheduler:v1.36.4", ["--config=/etc/kubernetes/scheduler-config.yaml"]
    )
    state = StaticPods("/etc/kubernetes/manifests").sync()["kube-scheduler"]
    assert state.reason == "CreateContainerError" and "/etc/kubernetes/scheduler-config.yaml" in state.message


def test_static_pods_start_restart_on_change_survive_the_kubelet_and_stop(root: Path) -> None:
    _image(root)
    _manifest(root, "registry.k8s.io/kube-scheduler:v1.36.4")
    pods = StaticPods("/etc/kubernetes/manifests")
    first = pods.sync()["kube-scheduler"]
    assert first.state == "Running", first.message
    assert (root / "etc/kubernetes/scheduler.conf").is_file()  # FileOrCreate hostPath
    pid = first.record.pid if first.record else 0
    assert runtime.alive(runtime.load_all()["kube-scheduler"])
    # a kubelet restart adopts the running process instead of starting another
    pods.detach()
    again = StaticPods("/etc/kubernetes/manifests").sync()["kube-scheduler"]
    assert again.record is not None and again.record.pid == pid
    # a changed manifest replaces the process
    _manifest(root, "registry.k8s.io/kube-scheduler:v1.36.4", ["--v=2"])
    pods = StaticPods("/etc/kubernetes/manifests")
    changed = pods.sync()["kube-scheduler"]
    assert changed.record is not None and changed.record.pid != pid
    # a removed manifest stops it
    (root / "etc/kubernetes/manifests/kube-scheduler.yaml").unlink()
    assert pods.sync() == {}
    until(lambda: not runtime.load_all())


def test_reset_stops_static_pods_through_the_runtime(root: Path) -> None:
    _image(root)
    _manifest(root, "registry.k8s.io/kube-scheduler:v1.36.4")
    state = StaticPods("/etc/kubernetes/manifests").sync()["kube-scheduler"]
    assert state.record is not None
    assert runtime.kill_all(grace=2) == ["kube-scheduler"]
    assert not runtime.alive(state.record)


def test_kubelet_may_not_label_itself_with_a_node_role(root: Path, capsys: Any) -> None:
    from capstan.lab.standins.kubelet import check_node_labels

    check_node_labels({"node.kubernetes.io/pool": "a", "kubernetes.io/os": "linux", "example.com/x": "1"})
    config = root / "var/lib/kubelet/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")
    rc = main(
        ["--config=/var/lib/kubelet/config.yaml", "--node-labels=node-role.kubernetes.io/worker="], "1.36.4"
    )
    assert rc == 1
    assert (
        "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels" in capsys.readouterr().err
    )


class CountingApi(FakeApi):
    """FakeApi that records every write (method, path) and can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []
        self.down = False

    def patch(self, path: str, body: Any, /) -> Any:
        self.writes.append(("PATCH", path))
        if self.down:
            raise ApiError(0, "connection refused", path)
        return super().patch(path, body)

    def post(self, path: str, body: Any, /) -> Any:
        self.writes.append(("POST", path))
        return super().post(path, body)

    def taken(self) -> list[tuple[str, str]]:
        out, self.writes = self.writes, []
        return out


STATUS = ("PATCH", "/api/v1/nodes/w1/status")
LEASE = ("PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/w1")
MIRROR_STATUS = ("PATCH", "/api/v1/namespaces/kube-system/pods/etcd-w1/status")


def test_a_steady_node_renews_its_lease_and_posts_only_what_changed() -> None:
    from capstan.lab.standins.kubelet import Reporting
    from capstan.lab.standins.kubelet.pods import PodState

    api = CountingApi()
    rep = Reporting(agent(api), lease_every=10, report_every=300)
    etcd = PodState("etcd", "a" * 64, {"spec": {"containers": [{"name": "etcd", "image": "etcd"}]}})
    etcd.state, etcd.started_at = "Running", 1000.0
    up = (True, "")

    rep.tick(0, up, {"etcd": etcd})  # first tick: status, lease, the mirror made and given its status
    first = api.taken()
    assert first[0] == STATUS and first[1] == LEASE
    assert ("POST", "/api/v1/namespaces/kube-system/pods") in first and MIRROR_STATUS in first

    for now in range(1, 60):  # a steady minute: the lease every 10 s, nothing else
        rep.tick(now, up, {"etcd": etcd})
    assert api.taken() == [LEASE] * 5

    rep.tick(55.5, (False, "container runtime is down"), {"etcd": etcd})  # a change: posted at once
    assert api.taken() == [STATUS]
    etcd.restarts = 1  # the static pod restarted: its mirror says so at the next tick
    rep.tick(56, (False, "container runtime is down"), {"etcd": etcd})
    assert api.taken() == [MIRROR_STATUS]

    for now in range(57, 300):
        rep.tick(now, (False, "container runtime is down"), {"etcd": etcd})
    assert STATUS not in api.taken()
    rep.tick(361, (False, "container runtime is down"), {"etcd": etcd})  # report period over
    assert STATUS in api.taken()


def test_a_failed_post_or_renewal_is_tried_again_a_second_later() -> None:
    from capstan.lab.standins.kubelet import Reporting

    api = CountingApi()
    rep = Reporting(agent(api), lease_every=10, report_every=300)
    api.down = True
    rep.tick(0, (True, ""), {})
    assert api.taken() == [STATUS, LEASE]
    api.down = False
    rep.tick(1, (True, ""), {})
    assert api.taken() == [STATUS, LEASE]
    rep.tick(2, (True, ""), {})
    assert api.taken() == []


def test_a_manifest_is_parsed_again_only_when_its_bytes_change(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from capstan.lab.standins.kubelet import pods as pods_module

    parsed: list[str] = []
    real = pods_module.read_manifest

    def counting(file: Path, data: bytes | None = None) -> Any:
        parsed.append(file.name)
        return real(file, data)

    monkeypatch.setattr(pods_module, "read_manifest", counting)
    _manifest(root, "registry.k8s.io/kube-scheduler:v1.37.0")
    (root / "etc/kubernetes/manifests/broken.yaml").write_text("kind: [unclosed\n")
    pods = StaticPods("/etc/kubernetes/manifests")
    for _ in range(3):
        assert list(pods.sync()) == ["kube-scheduler"]
    assert sorted(parsed) == ["broken.yaml", "kube-scheduler.yaml"]  # once each, broken or not

    _manifest(root, "registry.k8s.io/kube-scheduler:v1.37.0", ["--v=2"])
    state = pods.sync()["kube-scheduler"]
    assert parsed.count("kube-scheduler.yaml") == 2 and "--v=2" in state.container["command"]
