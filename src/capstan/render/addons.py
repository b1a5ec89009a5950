"""Cluster addons capstan applies through the API: CoreDNS (+ nodelocaldns, + its autoscaler) and
metrics-server, as parsed Kubernetes objects ready for server-side apply.

Templates keep each addon readable as the YAML an operator would write; the result is parsed here so
the kube layer applies objects, not text, and the tests validate each object against the Kubernetes
schema. CoreDNS is applied by capstan instead of kubeadm so that its replicas, nodelocaldns and the
autoscaler are configured from the spec and upgraded on capstan's schedule.

Images come from registry.k8s.io at the versions pinned with the Kubernetes release; registry mirrors
are the container runtime's business (``containerRuntime.registryMirrors``).
"""

from __future__ import annotations

import json
from typing import Any

from capstan.render._env import render_yaml_docs
from capstan.spec.models import Cluster
from capstan.versions import ComponentPins, effective_pins

COREDNS_IMAGE = "registry.k8s.io/coredns/coredns"
NODELOCALDNS_IMAGE = "registry.k8s.io/dns/k8s-dns-node-cache"
AUTOSCALER_IMAGE = "registry.k8s.io/cpa/cluster-proportional-autoscaler"
METRICS_SERVER_IMAGE = "registry.k8s.io/metrics-server/metrics-server"


def _v(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


def images(pins: ComponentPins) -> dict[str, str]:
    """Addon name -> image reference (tags as each project publishes them)."""
    return {
        "coredns": f"{COREDNS_IMAGE}:{_v(pins.coredns)}",
        "nodelocaldns": f"{NODELOCALDNS_IMAGE}:{pins.nodelocaldns.removeprefix('v')}",
        "dns-autoscaler": f"{AUTOSCALER_IMAGE}:{_v(pins.cluster_proportional_autoscaler)}",
        "metrics-server": f"{METRICS_SERVER_IMAGE}:{_v(pins.metrics_server)}",
    }


def _upstream(cluster: Cluster) -> str:
    servers = cluster.spec.dns.upstream_servers
    return " ".join(str(s) for s in servers) if servers else "/etc/resolv.conf"


def autoscaler_params(cluster: Cluster) -> str:
    """The autoscaler's linear parameters as the compact JSON it reads from its ConfigMap."""
    a = cluster.spec.dns.autoscaler
    params = {
        "coresPerReplica": a.cores_per_replica,
        "nodesPerReplica": a.nodes_per_replica,
        "min": a.min_replicas,
        "preventSinglePointFailure": True,
        "includeUnschedulableNodes": True,
    }
    return json.dumps(params, separators=(",", ":"))


def render_addons(cluster: Cluster) -> list[dict[str, Any]]:
    """Every addon object the spec enables, in apply order (dependencies first)."""
    pins = effective_pins(cluster.spec.kubernetes.version)
    image = images(pins)
    k = cluster.spec.kubernetes
    dns = cluster.spec.dns
    docs = render_yaml_docs(
        "addons/coredns.yaml.j2",
        image=image["coredns"],
        domain=k.cluster_domain,
        dns_ip=k.dns_service_ip,
        upstream=_upstream(cluster),
        replicas=dns.autoscaler.min_replicas if dns.autoscaler.enabled else 2,
    )
    if dns.nodelocaldns.enabled:
        docs += render_yaml_docs(
            "addons/nodelocaldns.yaml.j2",
            image=image["nodelocaldns"],
            domain=k.cluster_domain,
            dns_ip=k.dns_service_ip,
            local_ip=str(dns.nodelocaldns.ip),
            upstream=_upstream(cluster),
        )
    if dns.autoscaler.enabled:
        docs += render_yaml_docs(
            "addons/dns-autoscaler.yaml.j2", image=image["dns-autoscaler"], linear=autoscaler_params(cluster)
        )
    if cluster.spec.addons.metrics_server.enabled:
        docs += render_yaml_docs("addons/metrics-server.yaml.j2", image=image["metrics-server"])
    return docs
