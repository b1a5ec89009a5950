"""Edits to the pinned upstream CNI manifests: pod CIDR, per-node prefix, encapsulation and MTU.

The manifests come from each project's release (checked against a sha256 by the artifacts layer), so
capstan does not template them: it edits the few fields that depend on the spec in the parsed
documents and leaves everything else exactly as upstream shipped it. Every field it edits must already
be there (except calico's pool CIDR, which upstream ships commented out): if a future release renames a
ConfigMap key or a container, the edit fails with a RenderError naming what is missing, instead of
applying a manifest that silently ignores the spec.

- calico: env of the ``calico-node`` container (pool CIDR, block size = node prefix, IP-in-IP / VXLAN
  mode) and the ``calico-config`` ConfigMap (``calico_backend``, ``veth_mtu``). With VXLAN, BGP is not
  needed: the backend becomes ``vxlan`` and BIRD's liveness/readiness checks are dropped, as Calico's
  documentation describes.
- flannel: ``net-conf.json`` of the ``kube-flannel-cfg`` ConfigMap (Network, SubnetLen, Backend.Type).
- cilium (the output of ``helm template`` of the pinned chart): the ``cilium-config`` ConfigMap
  (cluster-pool IPAM CIDR and mask size, routing mode and tunnel protocol, MTU).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from capstan.errors import RenderError
from capstan.spec.models import Cluster

Doc = dict[str, Any]


def _find(docs: list[Doc], kind: str, name: str, what: str) -> Doc:
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise RenderError(f"{what} manifest: no {kind} named {name!r}")


def _data(doc: Doc, keys: tuple[str, ...], what: str) -> dict[str, str]:
    data = doc.get("data")
    name = doc["metadata"]["name"]
    if not isinstance(data, dict):
        raise RenderError(f"{what} manifest: ConfigMap {name!r} has no data")
    for key in keys:
        if key not in data:
            raise RenderError(f"{what} manifest: ConfigMap {name!r} has no key {key!r}")
    return data


def _container(doc: Doc, name: str, what: str) -> Doc:
    try:
        containers = doc["spec"]["template"]["spec"]["containers"]
    except (KeyError, TypeError):
        containers = []
    for c in containers:
        if isinstance(c, dict) and c.get("name") == name:
            return c
    raise RenderError(f"{what} manifest: {doc['kind']} {doc['metadata']['name']!r} has no container {name!r}")


def _set_env(container: Doc, name: str, value: str) -> None:
    env: list[Doc] = container.setdefault("env", [])
    for entry in env:
        if entry.get("name") == name:
            entry.pop("valueFrom", None)
            entry["value"] = value
            return
    env.append({"name": name, "value": value})


def _drop_probe_flag(container: Doc, probe: str, flag: str) -> None:
    command = container.get(probe, {}).get("exec", {}).get("command")
    if isinstance(command, list) and flag in command:
        command.remove(flag)


def _calico(cluster: Cluster, docs: list[Doc]) -> None:
    what = "calico"
    k = cluster.spec.kubernetes
    net = cluster.spec.network
    encap = net.calico.encapsulation
    node = _container(_find(docs, "DaemonSet", "calico-node", what), "calico-node", what)
    for required in ("CALICO_IPV4POOL_IPIP", "CALICO_IPV4POOL_VXLAN"):
        if not any(e.get("name") == required for e in node.get("env", [])):
            raise RenderError(f"{what} manifest: container 'calico-node' has no env {required}")
    _set_env(node, "CALICO_IPV4POOL_CIDR", str(k.pod_cidr))
    _set_env(node, "CALICO_IPV4POOL_BLOCK_SIZE", str(k.node_prefix))
    _set_env(node, "CALICO_IPV4POOL_IPIP", "Always" if encap == "ipip" else "Never")
    _set_env(node, "CALICO_IPV4POOL_VXLAN", "Always" if encap == "vxlan" else "Never")
    data = _data(_find(docs, "ConfigMap", "calico-config", what), ("calico_backend", "veth_mtu"), what)
    data["calico_backend"] = "vxlan" if encap == "vxlan" else "bird"
    if encap == "vxlan":
        _drop_probe_flag(node, "livenessProbe", "-bird-live")
        _drop_probe_flag(node, "readinessProbe", "-bird-ready")
    if net.mtu:
        data["veth_mtu"] = str(net.mtu)


def _flannel(cluster: Cluster, docs: list[Doc]) -> None:
    what = "flannel"
    data = _data(_find(docs, "ConfigMap", "kube-flannel-cfg", what), ("net-conf.json",), what)
    try:
        conf = json.loads(data["net-conf.json"])
    except (TypeError, json.JSONDecodeError) as exc:
        raise RenderError(
            f"{what} manifest: net-conf.json of 'kube-flannel-cfg' is not JSON: {exc}"
        ) from None
    if not isinstance(conf, dict):
        raise RenderError(f"{what} manifest: net-conf.json of 'kube-flannel-cfg' is not a JSON object")
    k = cluster.spec.kubernetes
    conf["Network"] = str(k.pod_cidr)
    conf["SubnetLen"] = k.node_prefix
    backend = conf.get("Backend")
    backend = dict(backend) if isinstance(backend, dict) else {}
    backend["Type"] = cluster.spec.network.flannel.backend
    conf["Backend"] = backend
    data["net-conf.json"] = json.dumps(conf, indent=2) + "\n"


def _cilium(cluster: Cluster, docs: list[Doc]) -> None:
    what = "cilium"
    keys = ("cluster-pool-ipv4-cidr", "cluster-pool-ipv4-mask-size")
    data = _data(_find(docs, "ConfigMap", "cilium-config", what), keys, what)
    k = cluster.spec.kubernetes
    net = cluster.spec.network
    data["ipam"] = "cluster-pool"
    data["cluster-pool-ipv4-cidr"] = str(k.pod_cidr)
    data["cluster-pool-ipv4-mask-size"] = str(k.node_prefix)
    if net.cilium.tunnel == "disabled":
        data["routing-mode"] = "native"
        data["ipv4-native-routing-cidr"] = str(k.pod_cidr)
        data["auto-direct-node-routes"] = "true"
        data.pop("tunnel-protocol", None)
    else:
        data["routing-mode"] = "tunnel"
        data["tunnel-protocol"] = net.cilium.tunnel
    if net.mtu:
        data["mtu"] = str(net.mtu)


_EDITORS = {"calico": _calico, "flannel": _flannel, "cilium": _cilium}


def adjust_cni_manifest(cluster: Cluster, docs: list[Doc]) -> list[Doc]:
    """A copy of the upstream manifest ``docs`` of ``spec.network.plugin``, with the spec applied."""
    plugin = cluster.spec.network.plugin
    out = [copy.deepcopy(d) for d in docs if d is not None]
    for i, doc in enumerate(out):
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            raise RenderError(f"{plugin} manifest: document {i} is not a Kubernetes object")
    _EDITORS[plugin](cluster, out)
    return out
