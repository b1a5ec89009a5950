"""adjust_cni_manifest: the spec's network settings land in (small, upstream-shaped) CNI manifests,
the result still passes the strict schema, and a manifest of the wrong shape fails by name."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from capstan.errors import RenderError
from capstan.render import adjust_cni_manifest
from capstan.spec import Cluster, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).with_name("golden") / "cni"


def _spec(network: dict[str, Any], **spec_changes: Any) -> Cluster:
    data = yaml.safe_load((ROOT / "examples" / "ha.yaml").read_text())
    if network.get("plugin") == "cilium":
        data["spec"]["kubernetes"]["proxyMode"] = "iptables"
    data["spec"].update(network=network, **spec_changes)
    return parse_spec(data)


def _sample(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((SAMPLES / f"{name}.yaml").read_text()) if d]


def _get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container = _get(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _validate(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, "1.36.4", strict=True)


def test_calico_vxlan_default() -> None:
    original = _sample("calico")
    pristine = copy.deepcopy(original)
    docs = adjust_cni_manifest(_spec({"plugin": "calico"}), original)
    assert original == pristine, "the input must not be modified"
    env = _env(docs)
    assert env["CALICO_IPV4POOL_CIDR"] == "10.233.64.0/18"
    assert env["CALICO_IPV4POOL_BLOCK_SIZE"] == "24"
    assert env["CALICO_IPV4POOL_VXLAN"] == "Always" and env["CALICO_IPV4POOL_IPIP"] == "Never"
    assert env["DATASTORE_TYPE"] == "kubernetes"
    data = _get(docs, "ConfigMap", "calico-config")["data"]
    assert data["calico_backend"] == "vxlan" and data["veth_mtu"] == "0"
    node = _get(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]["containers"][0]
    assert node["livenessProbe"]["exec"]["command"] == ["/bin/calico-node", "-felix-live"]
    assert node["readinessProbe"]["exec"]["command"] == ["/bin/calico-node", "-felix-ready"]
    _validate(docs)


@pytest.mark.parametrize(
    ("encap", "ipip", "vxlan", "backend"),
    [("ipip", "Always", "Never", "bird"), ("none", "Never", "Never", "bird")],
)
def test_calico_other_encapsulations_and_mtu(encap: str, ipip: str, vxlan: str, backend: str) -> None:
    docs = adjust_cni_manifest(
        _spec({"plugin": "calico", "mtu": 1450, "calico": {"encapsulation": encap}}), _sample("calico")
    )
    env = _env(docs)
    assert (env["CALICO_IPV4POOL_IPIP"], env["CALICO_IPV4POOL_VXLAN"]) == (ipip, vxlan)
    data = _get(docs, "ConfigMap", "calico-config")["data"]
    assert data["calico_backend"] == backend and data["veth_mtu"] == "1450"
    node = _get(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]["containers"][0]
    assert "-bird-live" in node["livenessProbe"]["exec"]["command"]
    _validate(docs)


def test_flannel() -> None:
    cluster = _spec({"plugin": "flannel", "flannel": {"backend": "host-gw"}})
    docs = adjust_cni_manifest(cluster, _sample("flannel"))
    conf = json.loads(_get(docs, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"])
    assert conf == {
        "Network": "10.233.64.0/18",
        "EnableNFTables": False,
        "SubnetLen": 24,
        "Backend": {"Type": "host-gw"},
    }
    _validate(docs)
    wg = adjust_cni_manifest(
        _spec({"plugin": "flannel", "flannel": {"backend": "wireguard"}}), _sample("flannel")
    )
    assert (
        json.loads(_get(wg, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"])["Backend"]["Type"]
        == "wireguard"
    )


def test_cilium() -> None:
    docs = adjust_cni_manifest(
        _spec({"plugin": "cilium", "mtu": 1400, "cilium": {"tunnel": "geneve"}}), _sample("cilium")
    )
    data = _get(docs, "ConfigMap", "cilium-config")["data"]
    assert data["cluster-pool-ipv4-cidr"] == "10.233.64.0/18"
    assert data["cluster-pool-ipv4-mask-size"] == "24"
    assert data["routing-mode"] == "tunnel" and data["tunnel-protocol"] == "geneve"
    assert data["mtu"] == "1400" and data["identity-allocation-mode"] == "crd"
    _validate(docs)
    native = adjust_cni_manifest(
        _spec({"plugin": "cilium", "cilium": {"tunnel": "disabled"}}), _sample("cilium")
    )
    data = _get(native, "ConfigMap", "cilium-config")["data"]
    assert data["routing-mode"] == "native" and data["ipv4-native-routing-cidr"] == "10.233.64.0/18"
    assert "tunnel-protocol" not in data and "mtu" not in data


def _without(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [d for d in docs if not (d["kind"] == kind and d["metadata"]["name"] == name)]


@pytest.mark.parametrize(
    ("plugin", "break_it", "message"),
    [
        ("calico", lambda d: _without(d, "DaemonSet", "calico-node"), "no DaemonSet named 'calico-node'"),
        ("calico", lambda d: _without(d, "ConfigMap", "calico-config"), "no ConfigMap named 'calico-config'"),
        (
            "flannel",
            lambda d: _without(d, "ConfigMap", "kube-flannel-cfg"),
            "no ConfigMap named 'kube-flannel-cfg'",
        ),
        ("cilium", lambda d: _without(d, "ConfigMap", "cilium-config"), "no ConfigMap named 'cilium-config'"),
    ],
)
def test_missing_objects_fail_by_name(plugin: str, break_it: Any, message: str) -> None:
    with pytest.raises(RenderError, match=f"{plugin} manifest: {message}"):
        adjust_cni_manifest(_spec({"plugin": plugin}), break_it(_sample(plugin)))


def test_missing_container_keys_and_env_fail_by_name() -> None:
    docs = _sample("calico")
    _get(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]["containers"][0]["name"] = "node"
    with pytest.raises(RenderError, match="has no container 'calico-node'"):
        adjust_cni_manifest(_spec({"plugin": "calico"}), docs)
    docs = _sample("calico")
    del _get(docs, "ConfigMap", "calico-config")["data"]["veth_mtu"]
    with pytest.raises(RenderError, match="no key 'veth_mtu'"):
        adjust_cni_manifest(_spec({"plugin": "calico"}), docs)
    docs = _sample("calico")
    container = _get(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "CALICO_IPV4POOL_VXLAN"]
    with pytest.raises(RenderError, match="no env CALICO_IPV4POOL_VXLAN"):
        adjust_cni_manifest(_spec({"plugin": "calico"}), docs)
    docs = _sample("flannel")
    _get(docs, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"] = "{not json"
    with pytest.raises(RenderError, match=r"net-conf\.json .* is not JSON"):
        adjust_cni_manifest(_spec({"plugin": "flannel"}), docs)
    docs = _sample("cilium")
    del _get(docs, "ConfigMap", "cilium-config")["data"]["cluster-pool-ipv4-mask-size"]
    with pytest.raises(RenderError, match="no key 'cluster-pool-ipv4-mask-size'"):
        adjust_cni_manifest(_spec({"plugin": "cilium"}), docs)
    with pytest.raises(RenderError, match="document 0 is not a Kubernetes object"):
        adjust_cni_manifest(_spec({"plugin": "cilium"}), [{"kind": "ConfigMap"}])
