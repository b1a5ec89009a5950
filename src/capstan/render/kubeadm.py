"""kubeadm's configuration files: InitConfiguration + ClusterConfiguration + KubeletConfiguration +
KubeProxyConfiguration for the first control plane, JoinConfiguration for every other node.

Why the join files carry no KubeletConfiguration: ``kubeadm join`` only reads JoinConfiguration and
ignores other kinds (with a warning); joining kubelets get their config from the cluster's
``kubelet-config`` ConfigMap that ``kubeadm init`` uploaded from the first control plane's file.
``kubelet_config_yaml`` is public so the ops layer can converge ``/var/lib/kubelet/config.yaml`` when
the spec changes later.

Endpoints. ``controlPlaneEndpoint`` is the spec's endpoint (127.0.0.1:<localLbPort> in local-lb mode,
the LB/VIP otherwise) and every node discovers the cluster through it: the API-endpoint phase runs
before any join, so the local balancer already forwards to the first control plane when a node joins.

No ``certificateKey``: capstan places every certificate on the control planes itself before they join,
so kubeadm's encrypted certificate upload (``--upload-certs``) is not used.

The CA pin (``caCertHashes``) is computed from the cluster CA by :func:`ca_cert_hash`; rendering takes
it as an input because the CA lives on the first control plane, not in the spec.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from capstan.errors import RenderError
from capstan.render import apiserver as api
from capstan.render._checks import check_flags, check_host
from capstan.render._env import render_yaml
from capstan.render.etcd import etcd_endpoints
from capstan.render.runtime import cri_socket
from capstan.render.types import Secrets
from capstan.spec.models import Cluster, Host

KUBEADM_CONFIG_PATH = "/etc/kubernetes/kubeadm-config.yaml"
BOOTSTRAP_TOKEN_TTL = "2h0m0s"  # long enough for the joins of one create run; a scale run makes a new one
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "value": "", "effect": "NoSchedule"}
_ALGORITHMS = {"ecdsa-p256": "ECDSA-P256", "rsa-2048": "RSA-2048"}


def ca_cert_hash(ca_pem: bytes | str) -> str:
    """kubeadm's CA pin: ``sha256:`` + hex SHA-256 of the CA certificate's SubjectPublicKeyInfo (DER)."""
    data = ca_pem.encode("ascii") if isinstance(ca_pem, str) else ca_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise RenderError(f"CA certificate for the join pin does not parse as PEM: {exc}") from None
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _check_hash(value: str | None, host: Host) -> str:
    if value is None:
        raise RenderError(
            f"{host.name}: a join config needs the CA pin; pass ca_cert_hash (see ca_cert_hash())"
        )
    if not (
        value.startswith("sha256:") and len(value) == 71 and all(c in "0123456789abcdef" for c in value[7:])
    ):
        raise RenderError(f"{host.name}: ca_cert_hash must be 'sha256:' and 64 lowercase hex digits")
    return value


def cluster_dns_ip(cluster: Cluster) -> str:
    """What pods resolve through: nodelocaldns's link-local IP when enabled, else the CoreDNS service."""
    dns = cluster.spec.dns
    return str(dns.nodelocaldns.ip) if dns.nodelocaldns.enabled else cluster.spec.kubernetes.dns_service_ip


def _node(cluster: Cluster, host: Host) -> dict[str, Any]:
    """nodeRegistration inputs: name, CRI socket, taints and kubelet flags."""
    check_host(cluster, host)
    taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in host.taints]
    if host.has("control-plane") and not host.has("worker"):
        taints.insert(0, CONTROL_PLANE_TAINT)
    kubelet_args = [api.Arg("node-ip", host.bind_ip)]
    if host.labels:
        labels = ",".join(f"{k}={v}" for k, v in sorted(host.labels.items()))
        kubelet_args.append(api.Arg("node-labels", labels))
    user = cluster.spec.kubernetes.extra_args.kubelet
    check_flags(user, "spec.kubernetes.extraArgs.kubelet")
    return {
        "name": host.name,
        "ip": host.bind_ip,
        "cri_socket": cri_socket(cluster),
        "taints": taints,
        "kubelet_args": api.merge_args(kubelet_args, user),
    }


def kubelet_config_yaml(cluster: Cluster) -> str:
    """The cluster-wide KubeletConfiguration document."""
    k = cluster.spec.kubernetes
    return render_yaml(
        "kubeadm/kubelet.yaml.j2",
        cri_socket=cri_socket(cluster),
        cluster_dns=cluster_dns_ip(cluster),
        cluster_domain=k.cluster_domain,
        max_pods=k.kubelet.max_pods,
        kube_reserved=dict(sorted(k.kubelet.kube_reserved.items())),
        system_reserved=dict(sorted(k.kubelet.system_reserved.items())),
        eviction_hard=dict(sorted(k.kubelet.eviction_hard.items())),
        rotate_certificates=k.kubelet.rotate_certificates,
        client_ca=f"{api.PKI_DIR}/ca.crt",
        feature_gates=dict(sorted(k.feature_gates.items())),
    )


def kube_proxy_config_yaml(cluster: Cluster) -> str:
    """The KubeProxyConfiguration document kubeadm turns into the kube-proxy ConfigMap."""
    k = cluster.spec.kubernetes
    if k.extra_args.proxy:
        raise RenderError(
            "spec.kubernetes.extraArgs.proxy: kube-proxy runs from kubeadm's DaemonSet with a config file "
            "and takes no extra flags; remove them"
        )
    return render_yaml(
        "kubeadm/kube-proxy.yaml.j2",
        mode=k.proxy_mode,
        cluster_cidr=str(k.pod_cidr),
        feature_gates=dict(sorted(k.feature_gates.items())),
    )


def cert_sans(cluster: Cluster) -> list[str]:
    """Loopback, the endpoint, every control plane's name and addresses, then the spec's extras."""
    sans = ["127.0.0.1", "localhost", cluster.endpoint[0]]
    for h in cluster.control_planes:
        sans += [h.name, h.bind_ip, h.peer_ip]
    sans += cluster.spec.pki.apiserver_extra_sans
    return list(dict.fromkeys(sans))


def _endpoint(cluster: Cluster) -> str:
    """``host:port`` of the cluster endpoint: ``controlPlaneEndpoint``, and where every joiner discovers."""
    host, port = cluster.endpoint
    return f"{host}:{port}"


def cluster_config_yaml(cluster: Cluster) -> str:
    """The ClusterConfiguration document (the same for every control plane)."""
    k = cluster.spec.kubernetes
    pki = cluster.spec.pki
    return render_yaml(
        "kubeadm/cluster.yaml.j2",
        cluster_name=cluster.name,
        kubernetes_version=f"v{k.version}",
        endpoint=_endpoint(cluster),
        pki_dir=api.PKI_DIR,
        encryption_algorithm=_ALGORITHMS[pki.key_algorithm],
        cert_validity=f"{pki.leaf_validity_days * 24}h0m0s",
        ca_validity=f"{pki.ca_validity_days * 24}h0m0s",
        etcd_endpoints=etcd_endpoints(cluster),
        service_cidr=str(k.service_cidr),
        pod_cidr=str(k.pod_cidr),
        cluster_domain=k.cluster_domain,
        cert_sans=cert_sans(cluster),
        apiserver_args=api.apiserver_args(cluster),
        apiserver_volumes=api.apiserver_volumes(cluster),
        controller_manager_args=api.controller_manager_args(cluster),
        scheduler_args=api.scheduler_args(cluster),
    )


def init_config_yaml(cluster: Cluster, host: Host, secrets: Secrets) -> str:
    """The first control plane's file: Init, Cluster, Kubelet and KubeProxy configurations."""
    init = render_yaml(
        "kubeadm/init.yaml.j2",
        node=_node(cluster, host),
        cluster_name=cluster.name,
        token=secrets.bootstrap_token,
        token_ttl=BOOTSTRAP_TOKEN_TTL,
        port=cluster.spec.kubernetes.apiserver_port,
    )
    docs = [init, cluster_config_yaml(cluster), kubelet_config_yaml(cluster), kube_proxy_config_yaml(cluster)]
    return "---\n".join(docs)


def join_config_yaml(cluster: Cluster, host: Host, secrets: Secrets, ca_cert_hash: str | None) -> str:
    """JoinConfiguration for a control plane other than the first, or for a worker."""
    return render_yaml(
        "kubeadm/join.yaml.j2",
        node=_node(cluster, host),
        control_plane=host.has("control-plane"),
        endpoint=_endpoint(cluster),
        token=secrets.bootstrap_token,
        ca_cert_hash=_check_hash(ca_cert_hash, host),
        port=cluster.spec.kubernetes.apiserver_port,
    )
