"""calico.yaml (manifest install, kube-system): ConfigMap, RBAC, calico-node DaemonSet, kube-controllers.

As upstream: ``CALICO_IPV4POOL_CIDR`` is absent (upstream ships it commented out) and IP-in-IP is on;
``cni_network_config`` is the template install-cni fills (``__CNI_MTU__`` from ``veth_mtu``).
"""

from __future__ import annotations

import json

from capstan.lab.standins.cni.common import (
    Obj,
    binding,
    cluster_role,
    configmap,
    env,
    env_from,
    host_volume,
    rule,
    service_account,
    workload,
)

NS = "kube-system"
CNI_TEMPLATE = {
    "name": "k8s-pod-network",
    "cniVersion": "0.3.1",
    "plugins": [
        {
            "type": "calico",
            "log_level": "info",
            "datastore_type": "kubernetes",
            "nodename": "__KUBERNETES_NODE_NAME__",
            "mtu": "__CNI_MTU__",
            "ipam": {"type": "calico-ipam"},
            "policy": {"type": "k8s"},
            "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"},
        },
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
    ],
}


def _cni_template() -> str:
    # The MTU placeholder is a bare number in the rendered JSON, as in upstream's template.
    return json.dumps(CNI_TEMPLATE, indent=2).replace('"__CNI_MTU__"', "__CNI_MTU__")


def _node(version: str) -> Obj:
    return {
        "name": "calico-node",
        "image": f"quay.io/calico/node:v{version}",
        "env": [
            env("DATASTORE_TYPE", "kubernetes"),
            env("WAIT_FOR_DATASTORE", "true"),
            {"name": "NODENAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            env_from("CALICO_NETWORKING_BACKEND", "calico-config", "calico_backend"),
            env("CLUSTER_TYPE", "k8s,bgp"),
            env("IP", "autodetect"),
            env("CALICO_IPV4POOL_IPIP", "Always"),
            env("CALICO_IPV4POOL_VXLAN", "Never"),
            env("CALICO_IPV6POOL_VXLAN", "Never"),
            env_from("FELIX_IPINIPMTU", "calico-config", "veth_mtu"),
            env_from("FELIX_VXLANMTU", "calico-config", "veth_mtu"),
            env("CALICO_DISABLE_FILE_LOGGING", "true"),
            env("FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT"),
            env("FELIX_IPV6SUPPORT", "false"),
            env("FELIX_HEALTHENABLED", "true"),
        ],
        "securityContext": {"privileged": True},
        "livenessProbe": {
            "exec": {"command": ["/bin/calico-node", "-felix-live", "-bird-live"]},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "exec": {"command": ["/bin/calico-node", "-felix-ready", "-bird-ready"]},
            "periodSeconds": 10,
        },
        "volumeMounts": [
            {"name": "cni-net-dir", "mountPath": "/host/etc/cni/net.d"},
            {"name": "var-run-calico", "mountPath": "/var/run/calico"},
        ],
    }


def objects(version: str) -> list[Obj]:
    install_cni = {
        "name": "install-cni",
        "image": f"quay.io/calico/cni:v{version}",
        "command": ["/opt/cni/bin/install"],
        "env": [
            env("CNI_CONF_NAME", "10-calico.conflist"),
            env_from("CNI_NETWORK_CONFIG", "calico-config", "cni_network_config"),
            env_from("CNI_MTU", "calico-config", "veth_mtu"),
            env("SLEEP", "false"),
        ],
        "securityContext": {"privileged": True},
        "volumeMounts": [
            {"name": "cni-bin-dir", "mountPath": "/host/opt/cni/bin"},
            {"name": "cni-net-dir", "mountPath": "/host/etc/cni/net.d"},
        ],
    }
    node_pod = {
        "hostNetwork": True,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"effect": "NoSchedule", "operator": "Exists"},
            {"effect": "NoExecute", "operator": "Exists"},
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
        ],
        "priorityClassName": "system-node-critical",
        "terminationGracePeriodSeconds": 0,
        "initContainers": [install_cni],
        "containers": [_node(version)],
        "volumes": [
            host_volume("cni-bin-dir", "/opt/cni/bin"),
            host_volume("cni-net-dir", "/etc/cni/net.d"),
            host_volume("var-run-calico", "/var/run/calico"),
        ],
    }
    controllers_pod = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
        ],
        "priorityClassName": "system-cluster-critical",
        "containers": [
            {
                "name": "calico-kube-controllers",
                "image": f"quay.io/calico/kube-controllers:v{version}",
                "env": [env("ENABLED_CONTROLLERS", "node,loadbalancer"), env("DATASTORE_TYPE", "kubernetes")],
            }
        ],
    }
    return [
        configmap(
            "calico-config",
            NS,
            {
                "typha_service_name": "none",
                "calico_backend": "bird",
                "veth_mtu": "0",
                "cni_network_config": _cni_template(),
            },
        ),
        service_account("calico-kube-controllers", NS),
        service_account("calico-node", NS),
        service_account("calico-cni-plugin", NS),
        cluster_role(
            "calico-kube-controllers",
            [rule([""], ["nodes"], ["watch", "list", "get"]), rule([""], ["pods"], ["get", "list", "watch"])],
        ),
        cluster_role(
            "calico-node",
            [
                rule([""], ["pods", "nodes", "namespaces"], ["get", "list", "watch"]),
                rule([""], ["nodes/status"], ["patch", "update"]),
                rule(["crd.projectcalico.org"], ["*"], ["get", "list", "watch", "create", "update"]),
            ],
        ),
        cluster_role("calico-cni-plugin", [rule([""], ["pods", "nodes", "namespaces"], ["get"])]),
        binding("calico-kube-controllers", "calico-kube-controllers", NS),
        binding("calico-node", "calico-node", NS),
        binding("calico-cni-plugin", "calico-cni-plugin", NS),
        workload("DaemonSet", "calico-node", NS, "calico-node", {"k8s-app": "calico-node"}, node_pod),
        workload(
            "Deployment",
            "calico-kube-controllers",
            NS,
            "calico-kube-controllers",
            {"k8s-app": "calico-kube-controllers"},
            controllers_pod,
        ),
    ]
