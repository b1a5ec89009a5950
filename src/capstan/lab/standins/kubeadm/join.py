"""``kubeadm join``: a worker or another control plane, from a JoinConfiguration or from flags.

preflight (incl. token discovery) -> control-plane-prepare (download-certs, certs, kubeconfig,
control-plane) -> kubelet-start -> control-plane-join (mark-control-plane) -> wait-control-plane.

Preflight is real kubeadm's: ``/etc/kubernetes/kubelet.conf``, ``bootstrap-kubelet.conf`` and (for a
worker) ``pki/ca.crt`` must not exist, ``/etc/kubernetes/manifests`` must be empty. A node where
capstan placed kubelet.conf and ca.crt beforehand therefore needs those checks in
``nodeRegistration.ignorePreflightErrors``, exactly as with the real binary. A Ready Node of the same
name already in the cluster is refused as real kubeadm refuses it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from capstan.lab.standins.kubeadm import certs, clusterops, discovery, kubeconfig, manifests, rest
from capstan.lab.standins.kubeadm import kubeletfiles as kf
from capstan.lab.standins.kubeadm import preflight as pf
from capstan.lab.standins.kubeadm import uploadcerts as uc
from capstan.lab.standins.kubeadm.base import (
    BOOTSTRAP_KUBELET_CONF,
    KUBELET_CONF,
    MANIFESTS_DIR,
    KubeadmError,
    Version,
    path,
    say,
    write_file,
)
from capstan.lab.standins.kubeadm.cli import check_mixed, listed, skipped
from capstan.lab.standins.kubeadm.config import (
    KUBEADM_API,
    NodeSetup,
    default_join,
    load_documents,
    only_kinds,
)
from capstan.lab.standins.kubeadm.init import timeout, wait_control_plane
from capstan.lab.standins.kubeadm.rest import Api, RestError
from capstan.lab.standins.kubeadm.validate import join_errors, raise_if

Doc = dict[str, Any]


def from_flags(args: argparse.Namespace) -> Doc:
    token = args.discovery_token or args.token or ""
    bootstrap: Doc = {
        "token": token,
        "apiServerEndpoint": args.endpoint or "",
        "caCertHashes": listed(args.discovery_token_ca_cert_hash),
    }
    if args.discovery_token_unsafe_skip_ca_verification:
        bootstrap["unsafeSkipCAVerification"] = True
    doc: Doc = {
        "apiVersion": KUBEADM_API,
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": bootstrap,
            "tlsBootstrapToken": args.tls_bootstrap_token or args.token or "",
        },
    }
    nreg: Doc = {}
    if args.node_name:
        nreg["name"] = args.node_name
    if args.cri_socket:
        nreg["criSocket"] = args.cri_socket
    doc["nodeRegistration"] = nreg
    if args.control_plane:
        endpoint: Doc = {}
        if args.apiserver_advertise_address:
            endpoint["advertiseAddress"] = args.apiserver_advertise_address
        if args.apiserver_bind_port:
            endpoint["bindPort"] = args.apiserver_bind_port
        doc["controlPlane"] = {"localAPIEndpoint": endpoint, "certificateKey": args.certificate_key or ""}
    return doc


def load(args: argparse.Namespace) -> Doc:
    check_mixed(args, positional=("endpoint",))
    if args.config:
        docs = load_documents(args.config)
        only_kinds(docs, {"JoinConfiguration"})
        join = docs.get("JoinConfiguration")
        if join is None:
            raise KubeadmError(f"{args.config}: no JoinConfiguration kind was found in the YAML file")
    else:
        join = from_flags(args)
    join = default_join(join)
    raise_if(join_errors(join))
    return join


def discover(join: Doc) -> tuple[discovery.Discovered, Api]:
    """cluster-info through the untrusted endpoint, then a client that trusts the pinned CA."""
    token = join["discovery"]["bootstrapToken"]
    endpoint = f"https://{token['apiServerEndpoint']}"
    say(f"[preflight] Discovering cluster-info from {endpoint} (token-based discovery)")
    deadline = timeout(join, "discovery", "5m0s")
    insecure = rest.insecure(endpoint)
    found = discovery.discover(
        lambda: clusterops.retry(
            lambda: insecure.get(discovery.CLUSTER_INFO), deadline, "cluster-info", "preflight"
        ),
        str(token["token"]),
        list(token.get("caCertHashes") or []),
        bool(token.get("unsafeSkipCAVerification")),
        wait_until=deadline,
    )
    say(
        "[preflight] Cluster info signature and contents are valid and the CA is pinned; will use API Server "
        f'"{endpoint}"'
    )
    return found, rest.with_ca(endpoint, found.ca_pem, str(join["discovery"]["tlsBootstrapToken"]))


def general_preflight(join: Doc, ignored: list[str]) -> None:
    say("[preflight] Running pre-flight checks")
    failures = pf.file_available(KUBELET_CONF) + pf.file_available(BOOTSTRAP_KUBELET_CONF)
    if join.get("controlPlane") is None:
        failures += pf.file_available(str(join["caCertPath"]))
    failures += pf.dir_available(MANIFESTS_DIR)
    failures += pf.cri(join["nodeRegistration"]["criSocket"])
    failures += pf.machine((), None)
    pf.report(failures, ignored)


def prepare_control_plane(
    join: Doc, node: NodeSetup, api: Api, binary: Version, ignored: list[str], skip: set[str]
) -> None:
    if not node.cluster.get("controlPlaneEndpoint"):
        raise KubeadmError(
            "unable to add a new control plane instance to a cluster that doesn't have a stable "
            "controlPlaneEndpoint address",
            "preflight",
        )
    key = str(join["controlPlane"].get("certificateKey") or "")
    if not key:
        missing = [f for f in uc.files_to_transfer(node).values() if not path(f).exists()]
        if missing:
            raise KubeadmError(
                "one or more conditions for hosting a new control plane instance is not satisfied. "
                f"[failure loading certificates: {', '.join(missing)} do not exist] Please ensure "
                "that the shared certificates are present or use --certificate-key",
                "preflight",
            )
    say("[preflight] Running pre-flight checks before initializing the new control plane instance")
    failures = pf.kubernetes_version(Version.parse(node.cluster["kubernetesVersion"]), binary)
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        failures += pf.file_available(f"{MANIFESTS_DIR}/{component}.yaml")
    if not key:
        ext = node.cluster["etcd"]["external"]
        failures += pf.external_etcd(
            ext["endpoints"], ext.get("caFile", ""), ext.get("certFile", ""), ext.get("keyFile", "")
        )
    failures += pf.machine((node.bind_port, 10257, 10259), None)
    pf.report(failures, ignored)
    if key and not skipped("control-plane-prepare/download-certs", skip):
        say(
            f'[download-certs] Downloading the certificates in Secret "{uc.SECRET}" in the '
            '"kube-system" Namespace'
        )
        try:
            secret = api.get(uc.SECRET_PATH)
        except RestError as exc:
            raise KubeadmError(f"error downloading the secret: {exc}", uc.PHASE) from None
        uc.write_downloaded(node, secret, key)
    if not skipped("control-plane-prepare/certs", skip):
        certs.ensure_certs(node)
    if not skipped("control-plane-prepare/kubeconfig", skip):
        certs.ensure_kubeconfigs(node, init=False)
    if not skipped("control-plane-prepare/control-plane", skip):
        manifests.write_manifests(node)


def kubelet_start(join: Doc, found: discovery.Discovered, api: Api, cluster: Doc) -> Doc:
    nreg = join["nodeRegistration"]
    token = str(join["discovery"]["tlsBootstrapToken"])
    write_file(
        BOOTSTRAP_KUBELET_CONF,
        kubeconfig.render_token(
            str(cluster.get("clusterName", "kubernetes")),
            found.server,
            found.ca_pem,
            "tls-bootstrap-token-user",
            token,
        ),
        0o600,
    )
    try:
        existing: Doc | None = api.get(clusterops.node_path(nreg["name"]))
    except RestError as exc:
        if exc.status != 404:
            raise KubeadmError(f"cannot get Node {nreg['name']}: {exc}", "kubelet-start") from None
        existing = None
    if existing is not None and clusterops.node_ready(existing):
        raise KubeadmError(
            f'a Node with name "{nreg["name"]}" and status "Ready" already exists in the cluster. '
            "You must delete the existing Node or change the name of this new joining Node",
            "kubelet-start",
        )
    kubelet = clusterops.read_kubelet_config(api, "kubelet-start")
    kf.write_kubelet_config(kubelet)
    kf.write_flags_env(nreg, kubelet)
    kf.restart_kubelet()
    say("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    deadline = timeout(join, "tlsBootstrap", "5m0s")
    while not path(KUBELET_CONF).exists():
        if time.monotonic() >= deadline:
            raise KubeadmError(
                "timed out waiting for the kubelet to perform the TLS Bootstrap", "kubelet-start"
            )
        time.sleep(0.5)
    path(BOOTSTRAP_KUBELET_CONF).unlink(missing_ok=True)
    return kubelet


def run(args: argparse.Namespace, binary: Version) -> int:
    join = load(args)
    skip = set(listed(args.skip_phases)) | set(join.get("skipPhases") or [])
    ignored = listed(args.ignore_preflight_errors) + list(
        join["nodeRegistration"].get("ignorePreflightErrors") or []
    )
    if not skipped("preflight", skip):
        general_preflight(join, ignored)
    found, api = discover(join)
    cluster = clusterops.read_cluster_config(api, "preflight")
    control_plane = join.get("controlPlane") is not None
    node: NodeSetup | None = None
    if control_plane:
        ep = join["controlPlane"]["localAPIEndpoint"]
        node = NodeSetup(
            cluster, join["nodeRegistration"]["name"], ep["advertiseAddress"], int(ep["bindPort"])
        )
        prepare_control_plane(join, node, api, binary, ignored, skip)
    kubelet: Doc = {}
    if not skipped("kubelet-start", skip):
        kubelet = kubelet_start(join, found, api, cluster)
    if node is not None:
        deadline = timeout(join, "controlPlaneComponentHealthCheck", "4m0s")
        if not skipped("wait-control-plane", skip):
            wait_control_plane(node, kubelet, deadline, "wait-control-plane")
        if not skipped("control-plane-join/mark-control-plane", skip):
            admin = rest.from_kubeconfig(str(path("/etc/kubernetes/admin.conf")))
            clusterops.mark_control_plane(
                admin, node.name, join["nodeRegistration"].get("taints") or [], deadline
            )
        say("\nThis node has joined the cluster and a new control plane instance was created:\n")
        say(
            "* Certificate signing request was sent to apiserver and approval was received.\n"
            "* The Kubelet was informed of the new secure connection details.\n"
            "* Control plane label and taint were applied to the new node.\n"
            "* The Kubernetes control plane instances scaled up.\n"
        )
        say(
            "To start administering your cluster from this node, you need to run the following as a "
            "regular user:\n"
        )
        say("\tmkdir -p $HOME/.kube\n\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n")
        return 0
    say(
        "\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and "
        "a response "
        "was received.\n* The Kubelet was informed of the new secure connection details.\n\n"
        "Run 'kubectl get nodes' on the control-plane to see this node join the cluster."
    )
    return 0
