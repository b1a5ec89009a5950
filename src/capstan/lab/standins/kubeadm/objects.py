"""The API objects kubeadm creates, as plain dicts (no I/O): configs, tokens, RBAC, addons.

Names and shapes follow real kubeadm so that anything reading the cluster (capstan's flows, the real
kubectl) finds them where it would on a real cluster: ``kubeadm-config`` and ``kubelet-config`` in
kube-system, ``cluster-info`` in kube-public, ``bootstrap-token-<id>`` Secrets, kubeadm's Roles and
bindings, and the kube-proxy / CoreDNS addon objects.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
DEFAULT_NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def configmap(name: str, namespace: str, data: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def _subject(kind: str, name: str, namespace: str = "") -> Obj:
    subj: Obj = {"kind": kind, "name": name}
    if kind in ("User", "Group"):
        subj["apiGroup"] = RBAC
    if namespace:
        subj["namespace"] = namespace
    return subj


def role(name: str, namespace: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def role_binding(name: str, namespace: str, role_name: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role_name},
        "subjects": subjects,
    }


def cluster_role_binding(name: str, cluster_role: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": cluster_role},
        "subjects": subjects,
    }


def upload_config_objects(cluster_yaml: str, kubelet_yaml: str) -> list[Obj]:
    """The upload-config phase: the two ConfigMaps and the Roles that let nodes and joiners read them."""
    readers = [_subject("Group", "system:nodes"), _subject("Group", DEFAULT_NODE_TOKEN_GROUP)]
    get_cm = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    return [
        configmap("kubeadm-config", "kube-system", {"ClusterConfiguration": cluster_yaml}),
        role(
            "kubeadm:nodes-kubeadm-config",
            "kube-system",
            [{**get_cm[0], "resourceNames": ["kubeadm-config"]}],
        ),
        role_binding("kubeadm:nodes-kubeadm-config", "kube-system", "kubeadm:nodes-kubeadm-config", readers),
        configmap("kubelet-config", "kube-system", {"kubelet": kubelet_yaml}),
        role("kubeadm:kubelet-config", "kube-system", [{**get_cm[0], "resourceNames": ["kubelet-config"]}]),
        role_binding("kubeadm:kubelet-config", "kube-system", "kubeadm:kubelet-config", readers),
    ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def parse_ttl(ttl: str) -> timedelta:
    """A Go duration such as ``24h0m0s`` or ``2h``; ``0``/``0s`` means never expires."""
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", ttl):
        total += float(number) * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
    return timedelta(seconds=total)


def bootstrap_token_secret(
    token: str, description: str, ttl: str, usages: list[str], groups: list[str], now: datetime | None = None
) -> Obj:
    """The ``bootstrap-token-<id>`` Secret: type bootstrap.kubernetes.io/token, values base64."""
    token_id, token_secret = token.split(".", 1)
    data = {"token-id": token_id, "token-secret": token_secret}
    if description:
        data["description"] = description
    lifetime = parse_ttl(ttl)
    if lifetime.total_seconds() > 0:
        data["expiration"] = ((now or datetime.now(UTC)) + lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
    for usage in usages:
        data[f"usage-bootstrap-{usage}"] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "data": {k: _b64(v) for k, v in data.items()},
    }


def bootstrap_rbac() -> list[Obj]:
    """The bootstrap-token phase's RBAC: joins may post CSRs, get nodes; CSRs are auto-approved."""
    bootstrappers = [_subject("Group", DEFAULT_NODE_TOKEN_GROUP)]
    return [
        cluster_role_binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", bootstrappers),
        cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            bootstrappers,
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [_subject("Group", "system:nodes")],
        ),
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "kubeadm:get-nodes"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
        },
        cluster_role_binding("kubeadm:get-nodes", "kubeadm:get-nodes", bootstrappers),
        role(
            "kubeadm:bootstrap-signer-clusterinfo",
            "kube-public",
            [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["cluster-info"],
                    "verbs": ["get"],
                }
            ],
        ),
        role_binding(
            "kubeadm:bootstrap-signer-clusterinfo",
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            [_subject("User", "system:anonymous")],
        ),
    ]


def kubeadm_certs_rbac() -> list[Obj]:
    """Joining control planes read kubeadm-certs with the bootstrap token (upload-certs phase)."""
    return [
        role(
            "kubeadm:kubeadm-certs",
            "kube-system",
            [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["kubeadm-certs"],
                    "verbs": ["get"],
                }
            ],
        ),
        role_binding(
            "kubeadm:kubeadm-certs",
            "kube-system",
            "kubeadm:kubeadm-certs",
            [_subject("Group", DEFAULT_NODE_TOKEN_GROUP)],
        ),
    ]


def cluster_admins_binding() -> Obj:
    return cluster_role_binding(
        "kubeadm:cluster-admins", "cluster-admin", [_subject("Group", "kubeadm:cluster-admins")]
    )


def kube_proxy_objects(proxy_doc: Obj, kubeconfig_yaml: str, image: str) -> list[Obj]:
    """The kube-proxy addon: its ConfigMap (config.conf + kubeconfig.conf), ServiceAccount and DaemonSet."""
    labels = {"k8s-app": "kube-proxy"}
    container = {
        "name": "kube-proxy",
        "image": image,
        "command": [
            "/usr/local/bin/kube-proxy",
            "--config=/var/lib/kube-proxy/config.conf",
            "--hostname-override=$(NODE_NAME)",
        ],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "securityContext": {"privileged": True},
        "volumeMounts": [{"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        },
        cluster_role_binding(
            "kubeadm:node-proxier",
            "system:node-proxier",
            [_subject("ServiceAccount", "kube-proxy", "kube-system")],
        ),
        # joining nodes read the kube-proxy component config with the bootstrap token
        role(
            "kube-proxy",
            "kube-system",
            [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["kube-proxy"],
                    "verbs": ["get"],
                }
            ],
        ),
        role_binding(
            "kube-proxy", "kube-system", "kube-proxy", [_subject("Group", DEFAULT_NODE_TOKEN_GROUP)]
        ),
        configmap(
            "kube-proxy",
            "kube-system",
            {
                "config.conf": yaml.safe_dump(proxy_doc, sort_keys=True, default_flow_style=False),
                "kubeconfig.conf": kubeconfig_yaml,
            },
        ),
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "hostNetwork": True,
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": "kube-proxy",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [{"operator": "Exists"}],
                        "volumes": [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}}],
                    },
                },
            },
        },
    ]


def proxy_kubeconfig(server: str) -> str:
    """kube-proxy's in-cluster kubeconfig (service-account token and CA), as kubeadm writes it."""
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "default", "cluster": {"certificate-authority": f"{sa}/ca.crt", "server": server}}
            ],
            "contexts": [
                {
                    "name": "default",
                    "context": {"cluster": "default", "namespace": "default", "user": "default"},
                }
            ],
            "current-context": "default",
            "users": [{"name": "default", "user": {"tokenFile": f"{sa}/token"}}],
        },
        sort_keys=False,
    )


def coredns_objects(image: str, dns_ip: str, domain: str) -> list[Obj]:
    """The CoreDNS addon as kubeadm installs it (when neither skipped nor ``dns.disabled``)."""
    labels = {"k8s-app": "kube-dns"}
    corefile = (
        f".:53 {{\n    errors\n    health\n    ready\n    kubernetes {domain} in-addr.arpa ip6.arpa {{\n"
        "       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n    }\n    forward . "
        "/etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n"
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        configmap("coredns", "kube-system", {"Corefile": corefile}),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "coredns", "image": image, "args": ["-conf", "/etc/coredns/Corefile"]}
                        ],
                        "serviceAccountName": "coredns",
                        "tolerations": [
                            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": dns_ip,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
