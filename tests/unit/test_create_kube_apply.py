"""Server-side apply bookkeeping and the CNI manifest's download rules (no cluster, no network)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from capstan.errors import ArtifactError
from capstan.kube import apply as kapply
from capstan.kube import cni
from capstan.kube.access import KubeError
from capstan.spec import parse_spec


def cm(name: str, data: dict[str, str], ns: str = "kube-system") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


class FakeApi:
    """get/patch like lightkube's Client over a dict store; apply bumps resourceVersion every time."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, str | None, str]] = []
        self.reads: list[str] = []
        self.rv = 0

    def list(self, res: Any, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Like the API: list items carry no kind and apiVersion."""
        self.reads.append(f"list {res.__name__} {namespace}")
        items = [v for (kind, ns, _), v in self.store.items() if kind == res.__name__ and ns == namespace]
        return [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items]

    def get(self, res: Any, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        self.reads.append(f"get {res.__name__} {namespace}/{name}")
        key = (res.__name__, namespace, name)
        if key not in self.store:
            raise ApiError(status=Status(code=404, message=f"{name} not found"))
        return self.store[key]

    def patch(self, res: Any, name: str, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        assert kw["patch_type"].value == "application/apply-patch+yaml"
        assert kw["field_manager"] == "capstan" and kw["force"] is True
        key = (res.__name__, kw["namespace"], name)
        self.patches.append(key)
        self.rv += 1
        new = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        new["metadata"]["managedFields"] = [
            {"manager": "capstan", "operation": "Apply", "time": str(self.rv)}
        ]
        self.store[key] = new
        return new


def test_first_apply_changes_everything_second_changes_nothing() -> None:
    api = FakeApi()
    objs = [cm("a", {"k": "1"}), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]
    first = kapply.apply_objects(api, objs)  # type: ignore[arg-type]
    assert first.changed == ["Namespace x", "ConfigMap kube-system/a"]  # namespaces first
    second = kapply.apply_objects(api, objs)  # type: ignore[arg-type]
    assert second.changed == [] and len(second.unchanged) == 2
    assert len(api.patches) == 2  # converged: read, not sent again
    api.reads.clear()
    kapply.apply_objects(api, [cm("a", {"k": "1"}), cm("b", {"k": "1"}), *objs[1:]])  # type: ignore[arg-type]
    # the two ConfigMaps with one list (b is missing: applied), the lone Namespace with a get
    assert api.reads == ["list ConfigMap kube-system", "get Namespace None/x"]
    third = kapply.apply_objects(api, [cm("a", {"k": "2"})])  # type: ignore[arg-type]
    assert third.changed == ["ConfigMap kube-system/a"] and len(api.patches) == 4  # b, then a again


def test_every_applied_object_carries_the_digest_of_what_was_rendered() -> None:
    api = FakeApi()
    kapply.apply_objects(api, [cm("a", {"k": "1"}), cm("b", {"k": "1"})])  # type: ignore[arg-type]
    digests = {
        name: api.store[("ConfigMap", "kube-system", name)]["metadata"]["annotations"][kapply.APPLIED_DIGEST]
        for name in ("a", "b")
    }
    assert len(digests["a"]) == 64 and digests["a"] != digests["b"]  # the name is part of what is hashed
    assert kapply.stamped(cm("a", {"k": "1"}))["metadata"]["annotations"] == {
        kapply.APPLIED_DIGEST: digests["a"]
    }


def test_an_object_edited_by_someone_else_is_applied_back() -> None:
    api = FakeApi()
    kapply.apply_objects(api, [cm("a", {"k": "1"})])  # type: ignore[arg-type]
    api.store[("ConfigMap", "kube-system", "a")]["data"] = {"k": "edited"}
    again = kapply.apply_objects(api, [cm("a", {"k": "1"})])  # type: ignore[arg-type]
    assert again.changed == ["ConfigMap kube-system/a"] and len(api.patches) == 2
    assert api.store[("ConfigMap", "kube-system", "a")]["data"] == {"k": "1"}


def test_an_identical_object_capstan_did_not_apply_is_applied_to_take_it_over() -> None:
    api = FakeApi()
    kapply.apply_objects(api, [cm("a", {"k": "1"})])  # type: ignore[arg-type]
    live = api.store[("ConfigMap", "kube-system", "a")]
    live["metadata"]["managedFields"] = [{"manager": "kubeadm", "operation": "Update"}]
    kapply.apply_objects(api, [cm("a", {"k": "1"})])  # type: ignore[arg-type]
    assert len(api.patches) == 2  # same content, but only an apply makes capstan its field manager


def test_dry_run_reads_and_compares_only() -> None:
    api = FakeApi()
    kapply.apply_objects(api, [cm("a", {"k": "1"})])  # type: ignore[arg-type]
    api.store[("ConfigMap", "kube-system", "a")]["metadata"]["uid"] = "server-set"
    dry = kapply.apply_objects(api, [cm("a", {"k": "1"}), cm("b", {})], dry_run=True)  # type: ignore[arg-type]
    assert dry.unchanged == ["ConfigMap kube-system/a"] and dry.changed == ["ConfigMap kube-system/b"]
    assert len(api.patches) == 1


def test_objects_without_kind_or_name_are_refused_before_anything_is_applied() -> None:
    api = FakeApi()
    with pytest.raises(KubeError, match=r"metadata\.name"):
        kapply.apply_objects(api, [cm("a", {}), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}])  # type: ignore[arg-type]
    assert api.patches == []


def test_unknown_kind_is_named() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(KubeError, match=r"Widget w: example\.com/v1 Widget is neither a built-in kind"):
        kapply.apply_objects(FakeApi(), [obj])  # type: ignore[arg-type]


def test_comparable_drops_server_bookkeeping() -> None:
    live = cm("a", {"k": "1"})
    live["metadata"].update(resourceVersion="7", uid="u", managedFields=[{}], creationTimestamp="t")
    live["status"] = {"x": 1}
    assert kapply.comparable(live) == cm("a", {"k": "1"})


# ---- CNI manifest -------------------------------------------------------------------------------
def cluster(mirror: str | None = "http://mirror.test:8080", extra: dict[str, Any] | None = None) -> Any:
    spec: dict[str, Any] = {
        "hosts": [{"name": "cp1", "address": "192.0.2.10", "roles": ["control-plane", "etcd"]}]
    }
    if mirror:
        spec["artifacts"] = {"mirror": mirror, "mode": "pull", "extraChecksums": extra or {}}
    return parse_spec(
        {"apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "t"}, "spec": spec}
    )


MANIFEST = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: calico-config, namespace: kube-system}
data: {calico_backend: bird, veth_mtu: "0"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      containers:
        - name: calico-node
          env: [{name: CALICO_IPV4POOL_IPIP, value: Always}, {name: CALICO_IPV4POOL_VXLAN, value: Never}]
"""


def test_manifest_sum_comes_from_the_mirror_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = cluster()
    art = cni.manifest_artifact(c)
    rel = art.url.removeprefix("http://mirror.test:8080/")
    digest = hashlib.sha256(MANIFEST).hexdigest()
    fetched: list[str] = []

    def get(url: str) -> bytes:
        fetched.append(url)
        if url.endswith(cni.SUMS_FILE):
            return f"{'0' * 64}  other/file\n{digest}  {rel}\n".encode()
        assert url == art.url
        return MANIFEST

    monkeypatch.setattr(cni, "_get", get)
    objs = cni.cni_objects(c, tmp_path)
    node = next(o for o in objs if o["kind"] == "DaemonSet")
    env = {e["name"]: e.get("value") for e in node["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CALICO_IPV4POOL_CIDR"] == str(c.spec.kubernetes.pod_cidr)
    cni.cni_objects(c, tmp_path)  # the second time the manifest comes from the cache
    assert fetched.count(art.url) == 1


def test_a_manifest_with_the_wrong_sum_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = cluster(extra={"calico-manifest": {"no_arch": {cni.manifest_artifact(cluster()).version: "1" * 64}}})
    monkeypatch.setattr(cni, "_get", lambda url: MANIFEST)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        cni.cni_objects(c, tmp_path)
    assert not list(tmp_path.rglob("calico.yaml"))


def test_no_sum_anywhere_means_no_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def get(url: str) -> bytes:
        if url.endswith(cni.SUMS_FILE):
            return b""
        raise AssertionError(f"downloaded {url} without a sum")

    monkeypatch.setattr(cni, "_get", get)
    with pytest.raises(ArtifactError, match="no sha256 known for calico-manifest"):
        cni.cni_objects(cluster(), tmp_path)


def test_a_helm_chart_is_refused_by_name() -> None:
    art = cni.manifest_artifact(cluster())
    with pytest.raises(ArtifactError, match="Helm chart archive"):
        cni.parse_manifest(art, gzip.compress(b"chart"))


def test_lab_api_keeps_same_numbered_ports_of_two_protocols_apart_on_reapply() -> None:
    """A re-apply of CoreDNS (53/UDP + 53/TCP) must not fold the two ports into one (lab apiserver)."""
    from capstan.lab.standins.apiserver.patch import strategic_merge

    pod = {
        "containers": [
            {
                "name": "coredns",
                "ports": [
                    {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                    {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                ],
            }
        ]
    }
    assert strategic_merge(pod, pod) == pod
