"""Addon objects: every one passes the strict Kubernetes schema of the cluster's version, and carries
the spec's values (DNS IP, domain, upstreams, pinned images, autoscaler parameters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from capstan.render import render_addons
from capstan.spec import Cluster, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _spec(example: str = "ha", **spec_changes: Any) -> Cluster:
    data = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    data["spec"].update(spec_changes)
    return parse_spec(data)


def _get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_addon_object_passes_the_strict_schema(example: Path) -> None:
    cluster = load_spec(example)
    docs = render_addons(cluster)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, cluster.spec.kubernetes.version, strict=True)


def test_the_schema_check_can_fail() -> None:
    doc = _get(render_addons(_spec()), "Deployment", "coredns")
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.36.4", strict=True)


def test_coredns() -> None:
    docs = render_addons(_spec())
    svc = _get(docs, "Service", "kube-dns")
    assert svc["spec"]["clusterIP"] == "10.233.0.3"
    corefile = _get(docs, "ConfigMap", "coredns")["data"]["Corefile"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile
    assert "forward . /etc/resolv.conf" in corefile
    deploy = _get(docs, "Deployment", "coredns")
    assert (
        deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.k8s.io/coredns/coredns:v1.14.2"
    )
    assert deploy["spec"]["replicas"] == 2
    assert _get(docs, "PodDisruptionBudget", "coredns")["spec"]["maxUnavailable"] == 1
    for kind, name in (
        ("ServiceAccount", "coredns"),
        ("ClusterRole", "system:coredns"),
        ("ClusterRoleBinding", "system:coredns"),
    ):
        _get(docs, kind, name)
    custom = _spec(
        dns={"upstreamServers": ["192.0.2.53", "192.0.2.54"]},
        kubernetes={"version": "1.36.4", "clusterDomain": "corp.internal", "serviceCidr": "10.96.0.0/16"},
    )
    docs = render_addons(custom)
    corefile = _get(docs, "ConfigMap", "coredns")["data"]["Corefile"]
    assert "forward . 192.0.2.53 192.0.2.54" in corefile and "kubernetes corp.internal " in corefile
    assert _get(docs, "Service", "kube-dns")["spec"]["clusterIP"] == "10.96.0.3"
    nld = _get(docs, "ConfigMap", "nodelocaldns")["data"]["Corefile"]
    assert "corp.internal:53 {" in nld and "forward . 10.96.0.3 {" in nld


def test_nodelocaldns() -> None:
    docs = render_addons(_spec())
    ds = _get(docs, "DaemonSet", "nodelocaldns")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    assert container["image"] == "registry.k8s.io/dns/k8s-dns-node-cache:1.25.0"
    assert container["args"][:2] == ["-localip", "169.254.25.10"]
    corefile = _get(docs, "ConfigMap", "nodelocaldns")["data"]["Corefile"]
    assert corefile.count("bind 169.254.25.10") == 4
    assert "forward . 10.233.0.3 {" in corefile
    _get(docs, "ServiceAccount", "nodelocaldns")
    off = render_addons(_spec(dns={"nodelocaldns": {"enabled": False}}))
    assert not [d for d in off if d["metadata"]["name"] == "nodelocaldns"]


def test_dns_autoscaler() -> None:
    docs = render_addons(
        _spec(dns={"autoscaler": {"coresPerReplica": 128, "nodesPerReplica": 8, "minReplicas": 3}})
    )
    params = json.loads(_get(docs, "ConfigMap", "dns-autoscaler")["data"]["linear"])
    assert params["coresPerReplica"] == 128 and params["nodesPerReplica"] == 8 and params["min"] == 3
    deploy = _get(docs, "Deployment", "dns-autoscaler")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.k8s.io/cpa/cluster-proportional-autoscaler:v1.8.8"
    assert "--target=Deployment/coredns" in container["command"]
    default = next(c for c in container["command"] if c.startswith("--default-params="))
    assert json.loads(default.removeprefix("--default-params="))["linear"] == params
    assert _get(docs, "Deployment", "coredns")["spec"]["replicas"] == 3
    off = render_addons(_spec(dns={"autoscaler": {"enabled": False}}))
    assert not [d for d in off if d["metadata"]["name"] == "dns-autoscaler"]


def test_metrics_server() -> None:
    docs = render_addons(_spec())
    api = _get(docs, "APIService", "v1beta1.metrics.k8s.io")
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system"}
    reader = _get(docs, "ClusterRole", "system:aggregated-metrics-reader")
    assert reader["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    container = _get(docs, "Deployment", "metrics-server")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.k8s.io/metrics-server/metrics-server:v0.8.1"
    assert "--kubelet-preferred-address-types=InternalIP" in container["args"]
    assert "--secure-port=10250" in container["args"]
    _get(docs, "Service", "metrics-server")
    _get(docs, "RoleBinding", "metrics-server-auth-reader")
    off = render_addons(_spec(addons={"metricsServer": {"enabled": False}}))
    assert not [d for d in off if "metrics" in d["metadata"]["name"]]


def test_addons_are_deterministic() -> None:
    assert render_addons(_spec()) == render_addons(_spec())
