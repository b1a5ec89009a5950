"""kubeadm, kubelet and kube-proxy configuration: golden files for examples/ha.yaml plus the rules each
document must follow. Regenerate the golden files with ``CAPSTAN_UPDATE_GOLDEN=1 pytest ...`` and
review the diff: it is exactly what changes on every host."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.errors import RenderError
from capstan.render import Secrets, ca_cert_hash, kube_proxy_config_yaml, kubelet_config_yaml, render_host
from capstan.spec import Cluster, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "ha"
SECRETS = Secrets(base64.b64encode(bytes(range(32))).decode(), "abcdef.0123456789abcdef")
HASH = "sha256:" + "ab" * 32
UPDATE = os.environ.get("CAPSTAN_UPDATE_GOLDEN") == "1"
KUBEADM = "/etc/kubernetes/kubeadm-config.yaml"


def _spec(example: str = "ha", **spec_changes: Any) -> Cluster:
    data = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    data["spec"].update(spec_changes)
    return parse_spec(data)


def _docs(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


@pytest.mark.parametrize("host", ["cp1", "cp2", "w1", "w2"])
def test_golden_files_of_the_ha_example(host: str) -> None:
    files = render_host(load_spec(ROOT / "examples" / "ha.yaml"), host, SECRETS, ca_cert_hash=HASH)
    for path, f in files.items():
        golden = GOLDEN / host / path.lstrip("/")
        if UPDATE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_bytes(f.content)
        assert golden.exists(), f"no golden file {golden}; run with CAPSTAN_UPDATE_GOLDEN=1"
        assert f.content == golden.read_bytes(), f"{host}:{path} differs from {golden}"
    on_disk = {"/" + str(p.relative_to(GOLDEN / host)) for p in (GOLDEN / host).rglob("*") if p.is_file()}
    assert on_disk == set(files), "stale golden files: regenerate with CAPSTAN_UPDATE_GOLDEN=1"


def test_first_control_plane_gets_init_cluster_kubelet_and_proxy() -> None:
    cluster = _spec("ha")
    text = render_host(cluster, "cp1", SECRETS)[KUBEADM].text
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert kinds == [
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
        "KubeProxyConfiguration",
    ]
    docs = _docs(text)
    init, cc = docs["InitConfiguration"], docs["ClusterConfiguration"]
    assert init["apiVersion"] == cc["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["bootstrapTokens"][0]["token"] == SECRETS.bootstrap_token
    # No certificate upload: capstan places the control planes' certificates itself.
    assert "certificateKey" not in init
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.0.2.11", "bindPort": 6443}
    assert init["skipPhases"] == ["addon/coredns"]
    reg = init["nodeRegistration"]
    assert reg["name"] == "cp1" and reg["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert reg["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert {"name": "node-ip", "value": "192.0.2.11"} in reg["kubeletExtraArgs"]
    assert cc["kubernetesVersion"] == "v1.36.4"
    assert cc["clusterName"] == "prod"
    # The node-local balancer's port, not the apiserver's (which still binds 6443 above).
    assert cc["controlPlaneEndpoint"] == "127.0.0.1:6444"
    assert cc["etcd"]["external"] == {
        "endpoints": ["https://192.0.2.11:2379", "https://192.0.2.12:2379", "https://192.0.2.13:2379"],
        "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
        "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
    }
    assert cc["networking"] == {
        "serviceSubnet": "10.233.0.0/18",
        "podSubnet": "10.233.64.0/18",
        "dnsDomain": "cluster.local",
    }
    assert cc["dns"] == {"disabled": True}
    args = {a["name"]: a["value"] for a in cc["apiServer"]["extraArgs"]}
    assert args["authorization-mode"] == "Node,RBAC"
    assert args["profiling"] == "false"
    assert args["enable-admission-plugins"] == "NodeRestriction"
    assert args["audit-policy-file"] == "/etc/kubernetes/audit-policy.yaml"
    # Mounted: every file the apiserver flags name outside /etc/kubernetes/pki.
    mounts = {v["hostPath"] for v in cc["apiServer"]["extraVolumes"]}
    for flag in (
        "encryption-provider-config",
        "audit-policy-file",
        "admission-control-config-file",
        "authentication-config",
    ):
        assert args[flag] in mounts
    assert "/var/log/kubernetes/audit" in mounts
    assert {"192.0.2.11", "192.0.2.12", "192.0.2.13", "127.0.0.1"} <= set(cc["apiServer"]["certSANs"])
    cm = {a["name"]: a["value"] for a in cc["controllerManager"]["extraArgs"]}
    assert cm["node-cidr-mask-size"] == "24" and cm["profiling"] == "false"


def test_anonymous_access_is_limited_to_health_endpoints_not_disabled_by_flag() -> None:
    """--anonymous-auth=false would fail kubeadm's unauthenticated /livez probes of the apiserver."""
    files = render_host(_spec("ha"), "cp1", SECRETS)
    cc = _docs(files[KUBEADM].text)["ClusterConfiguration"]
    names = [a["name"] for a in cc["apiServer"]["extraArgs"]]
    assert "anonymous-auth" not in names and "authentication-config" in names
    authn = yaml.safe_load(files["/etc/kubernetes/authentication-config.yaml"].text)
    assert authn["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert authn["anonymous"] == {
        "enabled": True,
        "conditions": [{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}],
    }
    open_spec = _spec("ha", security={"anonymousAuth": True})
    files = render_host(open_spec, "cp1", SECRETS)
    assert "/etc/kubernetes/authentication-config.yaml" not in files


def test_oidc_goes_into_the_authentication_config() -> None:
    oidc = {
        "issuerUrl": "https://id.example.com",
        "clientId": "kube",
        "groupsClaim": "groups",
        "caFile": "/etc/kubernetes/oidc-ca.pem",
    }
    cluster = _spec("ha", security={"oidc": oidc})
    with pytest.raises(RenderError, match=r"spec\.security\.oidc\.caFile"):
        render_host(cluster, "cp1", SECRETS)
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    files = render_host(cluster, "cp1", SECRETS, oidc_ca_pem=pem)
    authn = yaml.safe_load(files["/etc/kubernetes/authentication-config.yaml"].text)
    jwt = authn["jwt"][0]
    assert jwt["issuer"] == {
        "url": "https://id.example.com",
        "audiences": ["kube"],
        "certificateAuthority": pem,
    }
    assert jwt["claimMappings"] == {
        "username": {"claim": "sub", "prefix": "https://id.example.com#"},
        "groups": {"claim": "groups", "prefix": ""},
    }
    args = [a["name"] for a in _docs(files[KUBEADM].text)["ClusterConfiguration"]["apiServer"]["extraArgs"]]
    assert not [a for a in args if a.startswith("oidc-")]


def test_user_extra_args_override_ours_in_place_and_append_new_ones() -> None:
    kube = {
        "version": "1.36.4",
        "featureGates": {"B": False, "A": True},
        "extraArgs": {
            "apiserver": {"profiling": "true", "event-ttl": "2h"},
            "scheduler": {"v": "2"},
            "kubelet": {"v": "3"},
        },
    }
    files = render_host(_spec("ha", kubernetes=kube), "cp1", SECRETS)
    docs = _docs(files[KUBEADM].text)
    api = docs["ClusterConfiguration"]["apiServer"]["extraArgs"]
    names = [a["name"] for a in api]
    assert names.count("profiling") == 1 and {"name": "profiling", "value": "true"} in api
    assert api[-1] == {"name": "event-ttl", "value": "2h"}
    assert {"name": "feature-gates", "value": "A=true,B=false"} in api
    assert {"name": "v", "value": "2"} in docs["ClusterConfiguration"]["scheduler"]["extraArgs"]
    assert {"name": "v", "value": "3"} in docs["InitConfiguration"]["nodeRegistration"]["kubeletExtraArgs"]
    assert docs["KubeletConfiguration"]["featureGates"] == {"A": True, "B": False}
    assert docs["KubeProxyConfiguration"]["featureGates"] == {"A": True, "B": False}


def test_kube_proxy_flags_are_refused() -> None:
    kube = {"version": "1.36.4", "extraArgs": {"proxy": {"v": "2"}}}
    with pytest.raises(RenderError, match=r"spec\.kubernetes\.extraArgs\.proxy"):
        render_host(_spec("ha", kubernetes=kube), "cp1", SECRETS)


def test_join_configurations() -> None:
    cluster = _spec("ha")
    cp2 = yaml.safe_load(render_host(cluster, "cp2", SECRETS, ca_cert_hash=HASH)[KUBEADM].text)
    assert cp2["kind"] == "JoinConfiguration" and cp2["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    # A joining control plane has its own balancer already (the API-endpoint phase runs before joins),
    # so it discovers through it like every other node; its apiserver will bind the apiserver port.
    assert cp2["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "127.0.0.1:6444",
        "token": SECRETS.bootstrap_token,
        "caCertHashes": [HASH],
    }
    assert cp2["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "192.0.2.12", "bindPort": 6443}}
    w1 = yaml.safe_load(render_host(cluster, "w1", SECRETS, ca_cert_hash=HASH)[KUBEADM].text)
    assert w1["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "127.0.0.1:6444"
    assert "controlPlane" not in w1
    assert w1["nodeRegistration"]["taints"] == []
    assert {"name": "node-labels", "value": "node.example.com/pool=general"} in w1["nodeRegistration"][
        "kubeletExtraArgs"
    ]
    w2 = yaml.safe_load(render_host(cluster, "w2", SECRETS, ca_cert_hash=HASH)[KUBEADM].text)
    assert w2["nodeRegistration"]["taints"] == [
        {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
    ]
    vip = _spec("separate-etcd")
    for host in ("cp2", "w1"):
        doc = yaml.safe_load(render_host(vip, host, SECRETS, ca_cert_hash=HASH)[KUBEADM].text)
        assert doc["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.0.2.100:6443"
    cc = _docs(render_host(vip, "cp1", SECRETS)[KUBEADM].text)["ClusterConfiguration"]
    assert cc["controlPlaneEndpoint"] == "192.0.2.100:6443"
    assert cc["etcd"]["external"]["endpoints"][0] == "https://192.0.2.41:2379"


def test_local_lb_port_and_apiserver_port_go_to_different_places() -> None:
    """The balancer's port is the endpoint everyone uses; the apiserver port is what apiservers bind and
    what the balancer forwards to. Changing one must not move the other."""
    cluster = _spec(
        "ha",
        kubernetes={"version": "1.36.4", "apiserverPort": 8443},
        controlPlaneEndpoint={"localLbPort": 7443},
    )
    files = {h: render_host(cluster, h, SECRETS, ca_cert_hash=HASH) for h in ("cp1", "cp2", "w1")}
    docs = _docs(files["cp1"][KUBEADM].text)
    assert docs["ClusterConfiguration"]["controlPlaneEndpoint"] == "127.0.0.1:7443"
    assert docs["InitConfiguration"]["localAPIEndpoint"]["bindPort"] == 8443
    cp2 = yaml.safe_load(files["cp2"][KUBEADM].text)
    assert cp2["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "127.0.0.1:7443"
    assert cp2["controlPlane"]["localAPIEndpoint"]["bindPort"] == 8443
    w1 = yaml.safe_load(files["w1"][KUBEADM].text)
    assert w1["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "127.0.0.1:7443"
    for host in ("cp1", "w1"):
        haproxy = files[host]["/etc/kube-lb/haproxy.cfg"].text
        assert "bind 127.0.0.1:7443\n" in haproxy
        assert "server cp1 192.0.2.11:8443\n" in haproxy and ":6443" not in haproxy


def test_a_control_plane_that_is_also_a_worker_is_not_tainted() -> None:
    single = load_spec(ROOT / "examples" / "single.yaml")
    init = _docs(render_host(single, "node1", SECRETS)[KUBEADM].text)["InitConfiguration"]
    # Explicitly empty: an absent list would make kubeadm add the control-plane taint.
    assert init["nodeRegistration"]["taints"] == []


def test_kubelet_configuration() -> None:
    kubelet = yaml.safe_load(kubelet_config_yaml(_spec("ha")))
    assert kubelet["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["clusterDNS"] == ["169.254.25.10"]
    assert kubelet["clusterDomain"] == "cluster.local"
    assert kubelet["maxPods"] == 110
    assert kubelet["kubeReserved"] == {"cpu": "100m", "memory": "256Mi"}
    assert kubelet["systemReserved"] == {"cpu": "500m", "memory": "512Mi"}
    assert kubelet["evictionHard"]["memory.available"] == "100Mi"
    assert kubelet["rotateCertificates"] is True and kubelet["serverTLSBootstrap"] is False
    assert kubelet["readOnlyPort"] == 0
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}
    assert kubelet["authentication"]["webhook"]["enabled"] is True
    assert kubelet["authentication"]["x509"] == {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}
    assert kubelet["authorization"]["mode"] == "Webhook"
    no_nld = _spec("ha", dns={"nodelocaldns": {"enabled": False}})
    assert yaml.safe_load(kubelet_config_yaml(no_nld))["clusterDNS"] == ["10.233.0.3"]
    empty = _spec("ha", kubernetes={"version": "1.36.4", "kubelet": {"kubeReserved": {}}})
    assert yaml.safe_load(kubelet_config_yaml(empty))["kubeReserved"] == {}


def test_kube_proxy_configuration() -> None:
    proxy = yaml.safe_load(kube_proxy_config_yaml(_spec("ha")))
    assert proxy == {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "ipvs",
        "clusterCIDR": "10.233.64.0/18",
        "metricsBindAddress": "127.0.0.1:10249",
        "ipvs": {"strictARP": True},
    }
    assert yaml.safe_load(kube_proxy_config_yaml(_spec("separate-etcd")))["mode"] == "iptables"


def test_control_plane_config_files() -> None:
    files = render_host(_spec("ha"), "cp1", SECRETS)
    enc = yaml.safe_load(files["/etc/kubernetes/encryption-config.yaml"].text)
    assert enc["kind"] == "EncryptionConfiguration"
    (res,) = enc["resources"]
    assert res["resources"] == ["secrets"]
    assert res["providers"] == [
        {"secretbox": {"keys": [{"name": "key1", "secret": SECRETS.encryption_key_b64}]}},
        {"identity": {}},
    ]
    audit = yaml.safe_load(files["/etc/kubernetes/audit-policy.yaml"].text)
    assert audit["apiVersion"] == "audit.k8s.io/v1" and audit["kind"] == "Policy"
    assert audit["rules"][0]["level"] == "None" and "/livez*" in audit["rules"][0]["nonResourceURLs"]
    assert {r["level"] for r in audit["rules"]} == {"None", "Metadata", "RequestResponse"}
    secret_rule = next(
        r for r in audit["rules"] if any("secrets" in g["resources"] for g in r.get("resources", []))
    )
    assert secret_rule["level"] == "Metadata"
    adm = yaml.safe_load(files["/etc/kubernetes/admission-config.yaml"].text)
    (plugin,) = adm["plugins"]
    pss = plugin["configuration"]
    assert plugin["name"] == "PodSecurity" and pss["apiVersion"] == "pod-security.admission.config.k8s.io/v1"
    assert pss["defaults"] == {
        "enforce": "baseline",
        "enforce-version": "latest",
        "audit": "restricted",
        "audit-version": "latest",
        "warn": "restricted",
        "warn-version": "latest",
    }
    assert pss["exemptions"]["namespaces"] == ["kube-system"]
    off = _spec(
        "ha",
        security={
            "encryptionAtRest": {"enabled": False},
            "audit": {"enabled": False},
            "podSecurity": {"exemptNamespaces": []},
        },
    )
    files = render_host(off, "cp1", SECRETS)
    assert "/etc/kubernetes/encryption-config.yaml" not in files
    assert "/etc/kubernetes/audit-policy.yaml" not in files
    args = [a["name"] for a in _docs(files[KUBEADM].text)["ClusterConfiguration"]["apiServer"]["extraArgs"]]
    assert "encryption-provider-config" not in args and "audit-log-path" not in args
    adm = yaml.safe_load(files["/etc/kubernetes/admission-config.yaml"].text)
    assert adm["plugins"][0]["configuration"]["exemptions"]["namespaces"] == []


def test_ca_cert_hash_matches_the_openssl_recipe(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, crt = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=kubernetes",
        ],
        check=True,
        capture_output=True,
    )
    pub = subprocess.run(
        [openssl, "x509", "-in", str(crt), "-pubkey", "-noout"], check=True, capture_output=True
    )
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "der"], input=pub.stdout, check=True, capture_output=True
    ).stdout
    assert ca_cert_hash(crt.read_bytes()) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert ca_cert_hash(crt.read_text()) == ca_cert_hash(crt.read_bytes())
    with pytest.raises(RenderError, match="PEM"):
        ca_cert_hash(b"not a certificate")
