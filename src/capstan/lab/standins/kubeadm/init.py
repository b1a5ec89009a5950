"""``kubeadm init``: the first control plane, phase by phase as real kubeadm runs them.

preflight -> certs -> kubeconfig -> control-plane -> kubelet-start -> wait-control-plane ->
upload-config -> upload-certs -> mark-control-plane -> bootstrap-token -> addon. Every phase honours
``--skip-phases`` / ``skipPhases``. The node's kubelet (started by capstan's unit, restarted here as
kubeadm does) runs the static pods; this command waits for the kubelet's healthz, then for the
apiserver's /readyz and the other components' health endpoints, each with a deadline.
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

from capstan.lab.standins.kubeadm import (
    certs,
    clusterops,
    kubeconfig,
    manifests,
    objects,
    pkiutil,
    rest,
)
from capstan.lab.standins.kubeadm import kubeletfiles as kf
from capstan.lab.standins.kubeadm import preflight as pf
from capstan.lab.standins.kubeadm import uploadcerts as uc
from capstan.lab.standins.kubeadm.base import (
    ADMIN_CONF,
    MANIFESTS_DIR,
    SUPER_ADMIN_CONF,
    KubeadmError,
    Version,
    path,
    say,
)
from capstan.lab.standins.kubeadm.cli import check_mixed, listed, skipped
from capstan.lab.standins.kubeadm.config import (
    Documents,
    NodeSetup,
    cluster_yaml,
    default_cluster,
    default_init,
    load_documents,
    only_kinds,
)
from capstan.lab.standins.kubeadm.rest import Api, RestError
from capstan.lab.standins.kubeadm.validate import cluster_errors, init_errors, raise_if

INIT_KINDS = {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"}
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_token() -> str:
    return (
        "".join(secrets.choice(_ALPHABET) for _ in range(6))
        + "."
        + "".join(secrets.choice(_ALPHABET) for _ in range(16))
    )


def timeout(init_or_join: dict[str, Any], key: str, default: str) -> float:
    """A deadline (monotonic) from ``timeouts.<key>`` (a Go duration)."""
    text = str((init_or_join.get("timeouts") or {}).get(key) or default)
    return time.monotonic() + objects.parse_ttl(text).total_seconds()


def load(args: argparse.Namespace) -> tuple[dict[str, Any], NodeSetup, Documents]:
    """Read, default and validate the init configuration; refuse what real kubeadm refuses."""
    check_mixed(args)
    docs = load_documents(args.config) if args.config else Documents("flags")
    only_kinds(docs, INIT_KINDS)
    init = default_init(docs.get("InitConfiguration"))
    cluster = default_cluster(docs.get("ClusterConfiguration"))
    for flag, key in (
        ("kubernetes_version", "kubernetesVersion"),
        ("control_plane_endpoint", "controlPlaneEndpoint"),
    ):
        if getattr(args, flag, None):
            cluster[key] = getattr(args, flag)
    if getattr(args, "pod_network_cidr", None):
        cluster["networking"]["podSubnet"] = args.pod_network_cidr
    if getattr(args, "node_name", None):
        init["nodeRegistration"]["name"] = args.node_name
    if getattr(args, "certificate_key", None):
        init["certificateKey"] = args.certificate_key
    raise_if(cluster_errors(cluster) + init_errors(init))
    cluster["kubernetesVersion"] = str(Version.parse(cluster["kubernetesVersion"]))
    endpoint = init["localAPIEndpoint"]
    node = NodeSetup(
        cluster, init["nodeRegistration"]["name"], endpoint["advertiseAddress"], endpoint["bindPort"]
    )
    return init, node, docs


def run_preflight(init: dict[str, Any], node: NodeSetup, binary: Version, ignored: list[str]) -> None:
    say("[preflight] Running pre-flight checks")
    target = Version.parse(node.cluster["kubernetesVersion"])
    failures = pf.kubernetes_version(target, binary)
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        failures += pf.file_available(f"{MANIFESTS_DIR}/{component}.yaml")
    failures += pf.cri(init["nodeRegistration"]["criSocket"])
    ext = node.cluster["etcd"]["external"]
    failures += pf.external_etcd(
        ext["endpoints"], ext.get("caFile", ""), ext.get("certFile", ""), ext.get("keyFile", "")
    )
    failures += pf.machine((node.bind_port, 10257, 10259), target)
    pf.report(failures, ignored)


def admin_api() -> Api:
    return rest.from_kubeconfig(str(path(ADMIN_CONF)))


def wait_control_plane(node: NodeSetup, kubelet: dict[str, Any], deadline: float, phase: str) -> None:
    healthz = (
        f"http://{kubelet.get('healthzBindAddress', '127.0.0.1')}:{kubelet.get('healthzPort', 10248)}/healthz"
    )
    say(f"[kubelet-check] Waiting for a healthy kubelet at {healthz}")
    clusterops.wait_http_ok(healthz, deadline, "kubelet", phase)
    say("[control-plane-check] Waiting for healthy control plane components")
    checks = [
        ("kube-apiserver", f"{node.local_url}/readyz"),
        ("kube-controller-manager", f"https://127.0.0.1:{_port(node, 'controllerManager', 10257)}/healthz"),
        ("kube-scheduler", f"https://127.0.0.1:{_port(node, 'scheduler', 10259)}/livez"),
    ]
    for name, url in checks:
        say(f"[control-plane-check] Checking {name} at {url}")
        clusterops.wait_https_ok(url, deadline, name, phase)
        say(f"[control-plane-check] {name} is healthy")


def _port(node: NodeSetup, component: str, default: int) -> int:
    for arg in (node.cluster.get(component) or {}).get("extraArgs") or []:
        if arg.get("name") == "secure-port":
            return int(arg.get("value"))
    return default


def token_objects(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        objects.bootstrap_token_secret(
            t["token"], str(t.get("description", "")), str(t["ttl"]), t["usages"], t["groups"]
        )
        for t in tokens
    ]


def publish_cluster_info(api: Api, node: NodeSetup) -> None:
    """cluster-info in kube-public, created if missing and unsigned: the controller-manager's
    bootstrapsigner adds one ``jws-kubeconfig-<id>`` per signing token, as on a real cluster."""
    ca_pem = path(f"{node.pki_dir}/ca.crt").read_bytes()
    cm = objects.configmap(
        "cluster-info", "kube-public", {"kubeconfig": kubeconfig.cluster_info(node.endpoint_url, ca_pem)}
    )
    try:
        api.post("/api/v1/namespaces/kube-public/configmaps", cm)
    except RestError as exc:
        if exc.status != 409:
            raise KubeadmError(
                f"error creating the cluster-info ConfigMap: {exc}", "bootstrap-token"
            ) from None


def join_command(node: NodeSetup, token: str, control_plane_key: str | None) -> str:
    endpoint = node.endpoint_url.removeprefix("https://")
    ca_hash = pkiutil.spki_hash(pkiutil.load_cert(path(f"{node.pki_dir}/ca.crt").read_bytes()))
    cmd = f"kubeadm join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash {ca_hash}"
    if control_plane_key is not None:
        cmd += f" \\\n\t--control-plane --certificate-key {control_plane_key}"
    return cmd


def upload_certs(api: Api, node: NodeSetup, key: str) -> None:
    """kubeadm-certs, owned by a short-lived (2h) bootstrap token as real kubeadm does."""
    owner_token = new_token()
    secret = objects.bootstrap_token_secret(
        owner_token, "Proxy for managing TTL for the kubeadm-certs secret", "1h0m0s", [], []
    )
    created = clusterops.apply(api, secret)
    uid = (created.get("metadata") or {}).get("uid")
    owner = (
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "name": secret["metadata"]["name"],
            "uid": uid,
            "blockOwnerDeletion": True,
            "controller": True,
        }
        if uid
        else None
    )
    clusterops.apply(api, uc.secret_body(node, key, owner))
    clusterops.apply_all(api, objects.kubeadm_certs_rbac(), "upload-certs")
    say('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')


def run(args: argparse.Namespace, binary: Version) -> int:
    init, node, docs = load(args)
    skip = set(listed(args.skip_phases)) | set(init.get("skipPhases") or [])
    ignored = listed(args.ignore_preflight_errors) + list(
        init["nodeRegistration"].get("ignorePreflightErrors") or []
    )
    say(f"[init] Using Kubernetes version: {node.version}")
    if not skipped("preflight", skip):
        run_preflight(init, node, binary, ignored)
    if not skipped("certs", skip):
        certs.ensure_certs(node)
    if not skipped("kubeconfig", skip):
        certs.ensure_kubeconfigs(node, init=True)
    if not skipped("control-plane", skip):
        manifests.write_manifests(node)
    kubelet = kf.default_kubelet(
        docs.kubelet, node.service_ip(10), node.cluster["networking"]["dnsDomain"], node.pki_dir
    )
    if not skipped("kubelet-start", skip):
        kf.write_flags_env(init["nodeRegistration"], kubelet)
        kf.write_kubelet_config(kubelet)
        kf.restart_kubelet()
    deadline = timeout(init, "controlPlaneComponentHealthCheck", "4m0s")
    if not skipped("wait-control-plane", skip):
        wait_control_plane(node, kubelet, deadline, "wait-control-plane")
    api = admin_api()
    clusterops.retry(
        lambda: api.get("/readyz"), timeout(init, "kubernetesAPICall", "1m0s"), "the API", "upload-config"
    )
    if path(SUPER_ADMIN_CONF).exists():
        clusterops.apply_all(
            rest.from_kubeconfig(str(path(SUPER_ADMIN_CONF))),
            [objects.cluster_admins_binding()],
            "kubeconfig/admin",
        )
    if not skipped("upload-config", skip):
        say(
            '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the '
            '"kube-system" Namespace'
        )
        clusterops.apply_all(
            api,
            objects.upload_config_objects(cluster_yaml(node.cluster), kf.kubelet_yaml(kubelet)),
            "upload-config",
        )
    cert_key: str | None = None
    if args.upload_certs and not skipped("upload-certs", skip):
        cert_key = str(init.get("certificateKey") or uc.new_certificate_key())
        upload_certs(api, node, cert_key)
        if not args.skip_certificate_key_print:
            say(f"[upload-certs] Using certificate key:\n{cert_key}")
    if not skipped("mark-control-plane", skip):
        clusterops.mark_control_plane(api, node.name, init["nodeRegistration"].get("taints") or [], deadline)
    tokens = init["bootstrapTokens"]
    for tok in tokens:
        tok.setdefault("token", new_token())
    if not skipped("bootstrap-token", skip):
        say("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles")
        clusterops.apply_all(api, token_objects(tokens) + objects.bootstrap_rbac(), "bootstrap-token")
        publish_cluster_info(api, node)
    install_addons(api, node, docs, skip)
    _print_success(node, tokens[0]["token"], cert_key, bool(args.skip_token_print))
    return 0


def install_addons(api: Api, node: NodeSetup, docs: Documents, skip: set[str]) -> None:
    cluster = node.cluster
    repo = cluster.get("imageRepository", "registry.k8s.io")
    if not skipped("addon/coredns", skip) and not (cluster.get("dns") or {}).get("disabled"):
        image = f"{repo}/coredns/coredns:{(cluster.get('dns') or {}).get('imageTag', 'v1.12.1')}"
        clusterops.apply_all(
            api,
            objects.coredns_objects(image, node.service_ip(10), cluster["networking"]["dnsDomain"]),
            "addon/coredns",
        )
        say("[addons] Applied essential addon: CoreDNS")
    if not skipped("addon/kube-proxy", skip) and not (cluster.get("proxy") or {}).get("disabled"):
        proxy = dict(
            docs.proxy or {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"}
        )
        if cluster["networking"].get("podSubnet"):
            proxy.setdefault("clusterCIDR", cluster["networking"]["podSubnet"])
        objs = objects.kube_proxy_objects(
            proxy, objects.proxy_kubeconfig(node.endpoint_url), f"{repo}/kube-proxy:{node.version}"
        )
        clusterops.apply_all(api, objs, "addon/kube-proxy")
        say("[addons] Applied essential addon: kube-proxy")


def _print_success(node: NodeSetup, token: str, cert_key: str | None, skip_token: bool) -> None:
    shown = "<value withheld>" if skip_token else token
    say("\nYour Kubernetes control-plane has initialized successfully!\n")
    say("To start using your cluster, you need to run the following as a regular user:\n")
    say(
        "  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n"
        "  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n"
    )
    if cert_key is not None:
        say(
            "You can now join any number of control-plane nodes running the following command on each "
            "as root:\n"
        )
        say("  " + join_command(node, shown, cert_key) + "\n")
    say("Then you can join any number of worker nodes by running the following on each as root:\n")
    say(join_command(node, shown, None))


def upload_certs_phase(args: argparse.Namespace) -> int:
    """``kubeadm init phase upload-certs --upload-certs [--certificate-key K] [--config F]``."""
    if not args.upload_certs:
        say("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    api = admin_api()
    if args.config:
        check_mixed(args)
        init, node, _ = load(args)
        key = str(init.get("certificateKey") or uc.new_certificate_key())
    else:
        cluster = clusterops.read_cluster_config(api, "upload-certs")
        node = NodeSetup(default_cluster(cluster), "", "127.0.0.1", 6443)
        key = args.certificate_key or uc.new_certificate_key()
    upload_certs(api, node, key)
    if not args.skip_certificate_key_print:
        say(f"[upload-certs] Using certificate key:\n{key}")
    return 0
