"""kube-flannel.yml: the kube-flannel Namespace, RBAC, kube-flannel-cfg ConfigMap and the DaemonSet."""

from __future__ import annotations

import json

from capstan.lab.standins.cni.common import (
    Obj,
    binding,
    cluster_role,
    configmap,
    host_volume,
    namespace,
    rule,
    service_account,
    workload,
)

NS = "kube-flannel"
CNI_CONF = {
    "name": "cbr0",
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
NET_CONF = {"Network": "10.244.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}}


def objects(version: str) -> list[Obj]:
    labels = {"app": "flannel", "k8s-app": "flannel", "tier": "node"}
    image = f"ghcr.io/flannel-io/flannel:v{version}"
    pod = {
        "hostNetwork": True,
        "priorityClassName": "system-node-critical",
        "tolerations": [{"effect": "NoSchedule", "operator": "Exists"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "initContainers": [
            {
                "name": "install-cni-plugin",
                "image": "ghcr.io/flannel-io/flannel-cni-plugin:v1.7.1-flannel1",
                "command": ["cp"],
                "args": ["-f", "/flannel", "/opt/cni/bin/flannel"],
                "volumeMounts": [{"name": "cni-plugin", "mountPath": "/opt/cni/bin"}],
            },
            {
                "name": "install-cni",
                "image": image,
                "command": ["cp"],
                "args": ["-f", "/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"],
                "volumeMounts": [
                    {"name": "cni", "mountPath": "/etc/cni/net.d"},
                    {"name": "flannel-cfg", "mountPath": "/etc/kube-flannel/"},
                ],
            },
        ],
        "containers": [
            {
                "name": "kube-flannel",
                "image": image,
                "command": ["/opt/bin/flanneld"],
                "args": ["--ip-masq", "--kube-subnet-mgr"],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "EVENT_QUEUE_DEPTH", "value": "5000"},
                ],
                "securityContext": {"privileged": False, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                "volumeMounts": [
                    {"name": "run", "mountPath": "/run/flannel"},
                    {"name": "flannel-cfg", "mountPath": "/etc/kube-flannel/"},
                ],
            },
        ],
        "volumes": [
            host_volume("run", "/run/flannel"),
            host_volume("cni-plugin", "/opt/cni/bin"),
            host_volume("cni", "/etc/cni/net.d"),
            {"name": "flannel-cfg", "configMap": {"name": "kube-flannel-cfg"}},
        ],
    }
    return [
        namespace(NS, {"k8s-app": "flannel", "pod-security.kubernetes.io/enforce": "privileged"}),
        service_account("flannel", NS),
        cluster_role(
            "flannel",
            [
                rule([""], ["pods"], ["get"]),
                rule([""], ["nodes"], ["get", "list", "watch"]),
                rule([""], ["nodes/status"], ["patch"]),
            ],
        ),
        binding("flannel", "flannel", NS),
        configmap(
            "kube-flannel-cfg",
            NS,
            {
                "cni-conf.json": json.dumps(CNI_CONF, indent=2) + "\n",
                "net-conf.json": json.dumps(NET_CONF, indent=2) + "\n",
            },
        ),
        workload("DaemonSet", "kube-flannel-ds", NS, "flannel", labels, pod),
    ]
