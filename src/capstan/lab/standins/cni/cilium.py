"""cilium: what `helm template` of the chart renders: config, RBAC, agent DaemonSet, operator."""

from __future__ import annotations

from capstan.lab.standins.cni.common import (
    Obj,
    binding,
    cluster_role,
    configmap,
    host_volume,
    rule,
    service_account,
    workload,
)

NS = "kube-system"
CONFIG = {
    "identity-allocation-mode": "crd",
    "debug": "false",
    "enable-ipv4": "true",
    "enable-ipv6": "false",
    "ipam": "cluster-pool",
    "cluster-pool-ipv4-cidr": "10.0.0.0/8",
    "cluster-pool-ipv4-mask-size": "24",
    "routing-mode": "tunnel",
    "tunnel-protocol": "vxlan",
    "mtu": "0",
    "kube-proxy-replacement": "false",
    "enable-policy": "default",
    "cni-exclusive": "true",
    "write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
}


def objects(version: str) -> list[Obj]:
    agent_labels = {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent"}
    operator_labels = {"io.cilium/app": "operator", "name": "cilium-operator"}
    agent = {
        "hostNetwork": True,
        "priorityClassName": "system-node-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"operator": "Exists"}],
        "initContainers": [
            {
                "name": "install-cni-binaries",
                "image": f"quay.io/cilium/cilium:v{version}",
                "command": ["/install-plugin.sh"],
                "volumeMounts": [{"name": "cni-path", "mountPath": "/host/opt/cni/bin"}],
            }
        ],
        "containers": [
            {
                "name": "cilium-agent",
                "image": f"quay.io/cilium/cilium:v{version}",
                "command": ["cilium-agent"],
                "args": ["--config-dir=/tmp/cilium/config-map"],
                "env": [{"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "securityContext": {"privileged": True},
                "volumeMounts": [
                    {"name": "etc-cni-netd", "mountPath": "/host/etc/cni/net.d"},
                    {"name": "cilium-config-path", "mountPath": "/tmp/cilium/config-map", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            host_volume("cni-path", "/opt/cni/bin"),
            host_volume("etc-cni-netd", "/etc/cni/net.d"),
            {"name": "cilium-config-path", "configMap": {"name": "cilium-config"}},
        ],
    }
    operator = {
        "hostNetwork": True,
        "priorityClassName": "system-cluster-critical",
        "tolerations": [{"operator": "Exists"}],
        "containers": [
            {
                "name": "cilium-operator",
                "image": f"quay.io/cilium/operator-generic:v{version}",
                "command": ["cilium-operator-generic"],
                "args": ["--config-dir=/tmp/cilium/config-map"],
            }
        ],
    }
    return [
        service_account("cilium", NS),
        service_account("cilium-operator", NS),
        configmap("cilium-config", NS, dict(CONFIG)),
        cluster_role(
            "cilium",
            [
                rule(
                    [""], ["namespaces", "services", "pods", "endpoints", "nodes"], ["get", "list", "watch"]
                ),
                rule(["cilium.io"], ["*"], ["*"]),
            ],
        ),
        cluster_role(
            "cilium-operator",
            [
                rule([""], ["pods"], ["get", "list", "watch", "delete"]),
                rule([""], ["nodes"], ["list", "watch"]),
                rule(["cilium.io"], ["*"], ["*"]),
            ],
        ),
        binding("cilium", "cilium", NS),
        binding("cilium-operator", "cilium-operator", NS),
        workload("DaemonSet", "cilium", NS, "cilium", agent_labels, agent),
        workload("Deployment", "cilium-operator", NS, "cilium-operator", operator_labels, operator),
    ]
