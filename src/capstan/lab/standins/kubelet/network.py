"""Node readiness inputs: the container runtime socket and the pod network (CNI) configuration.

A real kubelet reports ``Ready=False`` while the runtime is down (it cannot reach the CRI socket) or
while the runtime reports ``NetworkReady=false`` (no CNI config in ``/etc/cni/net.d``, which is what
containerd watches). The stand-in checks both for real: it connects to the unix socket (the lab runs
the real containerd) and looks for a network config file.

Who writes the CNI config: on a real node, the CNI's DaemonSet pod (calico-node's install-cni, the
flannel and cilium agents) drops it into ``/etc/cni/net.d``. No container runs in the lab, so once a pod
of the CNI's DaemonSet is bound to this node (the scheduler places it on the NotReady node because it
tolerates the not-ready taint, as on a real cluster), the kubelet stand-in does that one step on its
behalf, rendering the file from the CNI's ConfigMap (calico's ``cni_network_config`` with
``veth_mtu``, flannel's ``cni-conf.json``). A cluster without a CNI therefore keeps its nodes NotReady,
as a real one does, and so does one whose CNI pods cannot be scheduled.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from capstan.lab.standins import host_path
from capstan.lab.standins.kubeadm.rest import Api, RestError

CNI_DIR = "/etc/cni/net.d"


def cri_error(endpoint: str) -> str:
    """Empty when the CRI socket accepts a connection, else the reason (the runtime is down)."""
    sock_path = str(host_path(urlsplit(endpoint).path or endpoint))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(sock_path)
    except OSError as exc:
        return f"container runtime is down: dial unix {sock_path}: {exc.strerror or exc}"
    return ""


def network_ready() -> bool:
    folder = host_path(CNI_DIR)
    return folder.is_dir() and any(
        f.suffix in (".conf", ".conflist", ".json") and f.is_file() for f in folder.iterdir()
    )


@dataclass(frozen=True)
class CniPlugin:
    name: str
    daemonset: str  # namespace/name
    configmap: str  # namespace/name
    file: str


PLUGINS = (
    CniPlugin("calico", "kube-system/calico-node", "kube-system/calico-config", "10-calico.conflist"),
    CniPlugin(
        "flannel", "kube-flannel/kube-flannel-ds", "kube-flannel/kube-flannel-cfg", "10-flannel.conflist"
    ),
    CniPlugin("cilium", "kube-system/cilium", "kube-system/cilium-config", "05-cilium.conflist"),
)


def _get(api: Api, kind_path: str, ref: str) -> dict[str, object] | None:
    namespace, name = ref.split("/")
    try:
        found = api.get(f"{kind_path.format(ns=namespace)}/{name}")
        return found if isinstance(found, dict) else None
    except RestError:
        return None


def _render(plugin: CniPlugin, data: dict[str, str], node_name: str) -> str:
    if plugin.name == "calico":
        text = data.get("cni_network_config", "")
        for key, value in (
            ("__CNI_MTU__", data.get("veth_mtu", "0")),
            ("__KUBERNETES_NODE_NAME__", node_name),
            ("__KUBECONFIG_FILEPATH__", "/etc/cni/net.d/calico-kubeconfig"),
        ):
            text = text.replace(key, value)
        return text
    if plugin.name == "flannel":
        return data.get("cni-conf.json", "")
    return json.dumps(
        {"cniVersion": "0.3.1", "name": "cilium", "plugins": [{"type": "cilium-cni"}]}, indent=2
    )


def _cni_pods(api: Api, node_name: str) -> set[str]:
    """``namespace/name`` of the CNI DaemonSets that have a pod bound to this node."""
    owners: set[str] = set()
    for namespace in sorted({p.daemonset.split("/")[0] for p in PLUGINS}):
        try:
            found = api.get(f"/api/v1/namespaces/{namespace}/pods")
        except RestError:
            continue
        for pod in (found.get("items") if isinstance(found, dict) else None) or []:
            if (pod.get("spec") or {}).get("nodeName") != node_name:
                continue
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
                if ref.get("kind") == "DaemonSet":
                    owners.add(f"{namespace}/{ref.get('name', '')}")
    return owners


def install_cni_config(api: Api, node_name: str) -> str:
    """Write the CNI config of the first CNI whose DaemonSet has a pod on this node; its name, or ""."""
    owners = _cni_pods(api, node_name)
    for plugin in PLUGINS:
        if plugin.daemonset not in owners:
            continue
        cm = _get(api, "/api/v1/namespaces/{ns}/configmaps", plugin.configmap) or {}
        data = cm.get("data")
        text = _render(plugin, data if isinstance(data, dict) else {}, node_name)
        if not text.strip():
            continue
        try:
            json.loads(text)
        except ValueError:
            continue  # a real install-cni would crash-loop on this; the node stays NotReady
        target = host_path(f"{CNI_DIR}/{plugin.file}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return plugin.name
    return ""
