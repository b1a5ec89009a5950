"""The control-plane phase: static pod manifests as kubeadm writes them, and their stand-in "images".

Flags are kubeadm's defaults for an external-etcd control plane, merged with the v1beta4 ``extraArgs``
(a name given there replaces every default of that name; repeats are kept) and sorted by name, as
kubeadm does. Volumes are kubeadm's hostPath mounts plus ``extraVolumes``: the kubelet stand-in checks
that every file a flag names is inside a mounted path, as a real container would only see those.

Writing a manifest also "pulls its image": kubeadm carries every stand-in (it is one zipapp of the whole
package), so it writes ``/usr/local/lib/capstan-standins/v<version>/<component>`` for the kubelet to run.
"""

from __future__ import annotations

from typing import Any

import yaml

from capstan.lab.standins import CONTROL_PLANE, executable_path, make_zipapp, package_files, write_executable
from capstan.lab.standins.kubeadm.base import (
    CONTROLLER_MANAGER_CONF,
    MANIFESTS_DIR,
    SCHEDULER_CONF,
    say,
    write_file,
)
from capstan.lab.standins.kubeadm.config import NodeSetup, extra_args

Pod = dict[str, Any]

CA_DIRS = {
    "ca-certs": "/etc/ssl/certs",
    "etc-ca-certificates": "/etc/ca-certificates",
    "usr-local-share-ca-certificates": "/usr/local/share/ca-certificates",
    "usr-share-ca-certificates": "/usr/share/ca-certificates",
}
COMPONENT_KEYS = {
    "kube-apiserver": "apiServer",
    "kube-controller-manager": "controllerManager",
    "kube-scheduler": "scheduler",
}
PORTS = {"kube-apiserver": 6443, "kube-controller-manager": 10257, "kube-scheduler": 10259}


def merge_args(defaults: dict[str, str], extra: list[tuple[str, str]]) -> list[str]:
    """``--name=value`` flags: extra names replace defaults; sorted by name, repeats in given order."""
    names = {n for n, _ in extra}
    pairs = [(n, v) for n, v in defaults.items() if n not in names] + extra
    return [f"--{n}={v}" for n, v in sorted(pairs, key=lambda p: p[0])]


def _pki(node: NodeSetup, name: str) -> str:
    return f"{node.pki_dir}/{name}"


def apiserver_flags(node: NodeSetup) -> dict[str, str]:
    external = node.cluster["etcd"]["external"]
    domain = node.cluster["networking"]["dnsDomain"]
    return {
        "advertise-address": node.advertise,
        "allow-privileged": "true",
        "authorization-mode": "Node,RBAC",
        "client-ca-file": _pki(node, "ca.crt"),
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "etcd-cafile": str(external.get("caFile", "")),
        "etcd-certfile": str(external.get("certFile", "")),
        "etcd-keyfile": str(external.get("keyFile", "")),
        "etcd-servers": ",".join(str(e) for e in external["endpoints"]),
        "kubelet-client-certificate": _pki(node, "apiserver-kubelet-client.crt"),
        "kubelet-client-key": _pki(node, "apiserver-kubelet-client.key"),
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "proxy-client-cert-file": _pki(node, "front-proxy-client.crt"),
        "proxy-client-key-file": _pki(node, "front-proxy-client.key"),
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": _pki(node, "front-proxy-ca.crt"),
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": str(node.bind_port),
        "service-account-issuer": f"https://kubernetes.default.svc.{domain}",
        "service-account-key-file": _pki(node, "sa.pub"),
        "service-account-signing-key-file": _pki(node, "sa.key"),
        "service-cluster-ip-range": str(node.cluster["networking"]["serviceSubnet"]),
        "tls-cert-file": _pki(node, "apiserver.crt"),
        "tls-private-key-file": _pki(node, "apiserver.key"),
    }


def controller_manager_flags(node: NodeSetup) -> dict[str, str]:
    flags = {
        "authentication-kubeconfig": CONTROLLER_MANAGER_CONF,
        "authorization-kubeconfig": CONTROLLER_MANAGER_CONF,
        "bind-address": "127.0.0.1",
        "client-ca-file": _pki(node, "ca.crt"),
        "cluster-name": str(node.cluster.get("clusterName", "kubernetes")),
        "cluster-signing-cert-file": _pki(node, "ca.crt"),
        "cluster-signing-key-file": _pki(node, "ca.key"),
        "controllers": "*,bootstrapsigner,tokencleaner",
        "kubeconfig": CONTROLLER_MANAGER_CONF,
        "leader-elect": "true",
        "requestheader-client-ca-file": _pki(node, "front-proxy-ca.crt"),
        "root-ca-file": _pki(node, "ca.crt"),
        "service-account-private-key-file": _pki(node, "sa.key"),
        "service-cluster-ip-range": str(node.cluster["networking"]["serviceSubnet"]),
        "use-service-account-credentials": "true",
    }
    pod_subnet = node.cluster["networking"].get("podSubnet")
    if pod_subnet:
        flags["allocate-node-cidrs"] = "true"
        flags["cluster-cidr"] = str(pod_subnet)
    return flags


def scheduler_flags(node: NodeSetup) -> dict[str, str]:
    return {
        "authentication-kubeconfig": SCHEDULER_CONF,
        "authorization-kubeconfig": SCHEDULER_CONF,
        "bind-address": "127.0.0.1",
        "kubeconfig": SCHEDULER_CONF,
        "leader-elect": "true",
    }


def _volumes(node: NodeSetup, component: str) -> list[tuple[str, str, bool, str]]:
    """(name, path, readOnly, type) of kubeadm's default mounts plus the ``extraVolumes``."""
    vols = [(name, p, True, "DirectoryOrCreate") for name, p in CA_DIRS.items()]
    vols.append(("k8s-certs", node.pki_dir, True, "DirectoryOrCreate"))
    if component == "kube-controller-manager":
        vols.append(("kubeconfig", CONTROLLER_MANAGER_CONF, True, "FileOrCreate"))
        vols.append(
            (
                "flexvolume-dir",
                "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
                False,
                "DirectoryOrCreate",
            )
        )
    if component == "kube-scheduler":
        vols = [("kubeconfig", SCHEDULER_CONF, True, "FileOrCreate")]
    for extra in (node.cluster.get(COMPONENT_KEYS[component]) or {}).get("extraVolumes") or []:
        vols.append(
            (
                str(extra["name"]),
                str(extra["hostPath"]),
                bool(extra.get("readOnly", False)),
                str(extra.get("pathType", "")),
            )
        )
    return vols


def _probe(host: str, port: int, probe_path: str, failures: int) -> dict[str, Any]:
    return {
        "failureThreshold": failures,
        "httpGet": {"host": host, "path": probe_path, "port": port, "scheme": "HTTPS"},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 15,
    }


def static_pod(node: NodeSetup, component: str) -> Pod:
    """The v1 Pod kubeadm writes to ``/etc/kubernetes/manifests/<component>.yaml``."""
    flags = {
        "kube-apiserver": apiserver_flags,
        "kube-controller-manager": controller_manager_flags,
        "kube-scheduler": scheduler_flags,
    }[component](node)
    command = [component, *merge_args(flags, extra_args(node.cluster.get(COMPONENT_KEYS[component])))]
    port = node.bind_port if component == "kube-apiserver" else PORTS[component]
    host = node.advertise if component == "kube-apiserver" else "127.0.0.1"
    health = "/livez" if component != "kube-controller-manager" else "/healthz"
    vols = _volumes(node, component)
    container: dict[str, Any] = {
        "command": command,
        "image": f"{node.cluster.get('imageRepository', 'registry.k8s.io')}/{component}:{node.version}",
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": _probe(host, port, health, 8),
        "name": component,
        "resources": {"requests": {"cpu": "250m" if component == "kube-apiserver" else "200m"}},
        "startupProbe": _probe(host, port, health, 24),
        "volumeMounts": [{"mountPath": p, "name": n, "readOnly": ro} for n, p, ro, _ in vols],
    }
    if component != "kube-controller-manager":
        container["readinessProbe"] = _probe(host, port, "/readyz", 3)
    metadata: dict[str, Any] = {
        "labels": {"component": component, "tier": "control-plane"},
        "name": component,
        "namespace": "kube-system",
    }
    if component == "kube-apiserver":
        metadata["annotations"] = {
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{node.advertise}:{port}"
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"hostPath": {"path": p, "type": t}, "name": n} for n, p, _, t in vols],
        },
        "status": {},
    }


def pull_images(version: str) -> None:
    """Materialise the control-plane stand-ins of ``version`` (kubeadm's "pulling images")."""
    files = package_files()
    for component in CONTROL_PLANE:
        if write_executable(executable_path(component, version), make_zipapp(files, component, version)):
            say(f"[preflight] Pulled image registry.k8s.io/{component}:{version} (lab stand-in)")


def write_manifests(node: NodeSetup, components: tuple[str, ...] = CONTROL_PLANE) -> None:
    pull_images(node.version)
    say(f'[control-plane] Using manifest folder "{MANIFESTS_DIR}"')
    for component in components:
        text = yaml.safe_dump(static_pod(node, component), sort_keys=False, default_flow_style=False)
        write_file(f"{MANIFESTS_DIR}/{component}.yaml", text, 0o600)
        say(f'[control-plane] Creating static Pod manifest for "{component}"')
