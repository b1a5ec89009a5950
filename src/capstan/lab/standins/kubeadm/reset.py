"""``kubeadm reset`` and ``kubeadm token create|list``.

reset does what real kubeadm does and no more: stop the kubelet, remove the static pods' containers
(here: the recorded stand-in processes), delete the contents of /etc/kubernetes/manifests,
/var/lib/kubelet and the certificates directory, and delete the kubeconfig files -- whoever wrote them
(capstan must place its PKI again before the node rejoins, as with the real binary). Like the real one
it does not delete the Node object: removing a node from the cluster is ``kubectl delete node``.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
from pathlib import Path

from capstan.lab.standins.kubeadm import clusterops, kubeconfig, objects, pkiutil, rest
from capstan.lab.standins.kubeadm import kubeletfiles as kf
from capstan.lab.standins.kubeadm.base import (
    ADMIN_CONF,
    BOOTSTRAP_KUBELET_CONF,
    CONTROLLER_MANAGER_CONF,
    KUBELET_CONF,
    KUBELET_DIR,
    MANIFESTS_DIR,
    PKI_DIR,
    SCHEDULER_CONF,
    SUPER_ADMIN_CONF,
    KubeadmError,
    path,
    say,
)
from capstan.lab.standins.kubeadm.cli import check_mixed
from capstan.lab.standins.kubeadm.config import load_documents, only_kinds
from capstan.lab.standins.kubeadm.init import new_token
from capstan.lab.standins.kubeadm.rest import RestError
from capstan.lab.standins.kubeadm.validate import TOKEN
from capstan.lab.standins.kubelet import runtime

KUBECONFIGS = (
    ADMIN_CONF,
    SUPER_ADMIN_CONF,
    KUBELET_CONF,
    BOOTSTRAP_KUBELET_CONF,
    CONTROLLER_MANAGER_CONF,
    SCHEDULER_CONF,
)


def _clear(host_dir: str) -> None:
    target = path(host_dir)
    if not target.is_dir():
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def reset(args: argparse.Namespace) -> int:
    check_mixed(args)
    options: dict[str, object] = {}
    if args.config:
        docs = load_documents(args.config)
        only_kinds(docs, {"ResetConfiguration"})
        options = docs.get("ResetConfiguration") or {}
    if not (args.force or options.get("force")):
        print("[reset] Are you sure you want to proceed? [y/N]: ", end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise KubeadmError("aborted reset operation", "preflight")
    say("[preflight] Running pre-flight checks")
    say("[reset] Stopping the kubelet service")
    kf.stop_kubelet()
    say("[reset] Removing all kubernetes-managed containers")
    for pod in runtime.kill_all():
        say(f"[reset] Stopped static Pod {pod}")
    cert_dir = str(options.get("certificatesDir") or PKI_DIR)
    dirs = [MANIFESTS_DIR, KUBELET_DIR, cert_dir]
    say(f"[reset] Deleting contents of directories: [{' '.join(dirs)}]")
    for host_dir in dirs:
        _clear(host_dir)
    say(f"[reset] Deleting files: [{' '.join(KUBECONFIGS)}]")
    for host_file in KUBECONFIGS:
        path(host_file).unlink(missing_ok=True)
    say(
        "\nThe reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d\n\n"
        "The reset process does not reset or clean up iptables rules or IPVS tables.\n\n"
        "The reset process does not clean your kubeconfig files and you must remove them manually.\n"
        "Please, check the contents of the $HOME/.kube/config file."
    )
    return 0


def token_create(args: argparse.Namespace) -> int:
    """A new bootstrap token: only its Secret (the controller-manager's bootstrapsigner signs cluster-info
    for it); optionally the whole join command."""
    kc = args.kubeconfig or str(path(ADMIN_CONF))
    api = rest.from_kubeconfig(kc)
    token = args.token or new_token()
    if not TOKEN.match(token):
        raise KubeadmError(f'the bootstrap token "{token}" was not of the form "{TOKEN.pattern}"')
    groups = [g for g in (args.groups or objects.DEFAULT_NODE_TOKEN_GROUP).split(",") if g]
    usages = [u for u in (args.usages or "signing,authentication").split(",") if u]
    secret = objects.bootstrap_token_secret(
        token, args.description or "", args.ttl or "24h0m0s", usages, groups
    )
    try:
        api.post("/api/v1/namespaces/kube-system/secrets", secret)
    except RestError as exc:
        raise KubeadmError(
            f"failed to create or update bootstrap token with name bootstrap-token-"
            f"{token.split('.')[0]}: {exc}"
        ) from None
    if not args.print_join_command:
        say(token)
        return 0
    server, ca_pem = kubeconfig.server_and_ca(Path(kc).read_bytes())
    cluster = clusterops.read_cluster_config(api, "token")
    endpoint = str(cluster.get("controlPlaneEndpoint") or server.removeprefix("https://"))
    ca_hash = pkiutil.spki_hash(pkiutil.load_cert(ca_pem))
    line = f"kubeadm join {endpoint} --token {token} --discovery-token-ca-cert-hash {ca_hash}"
    if args.certificate_key:
        line += f" --control-plane --certificate-key {args.certificate_key}"
    say(line)
    return 0


def token_list(args: argparse.Namespace) -> int:
    api = rest.from_kubeconfig(args.kubeconfig or str(path(ADMIN_CONF)))
    items = api.get("/api/v1/namespaces/kube-system/secrets").get("items") or []
    say(f"{'TOKEN':<24}{'TTL':<6}{'EXPIRES':<22}{'USAGES':<26}DESCRIPTION")
    for item in items:
        if item.get("type") != "bootstrap.kubernetes.io/token":
            continue
        data = {k: _decode(v) for k, v in (item.get("data") or {}).items()}
        usages = ",".join(
            k.removeprefix("usage-bootstrap-")
            for k, v in data.items()
            if k.startswith("usage-bootstrap-") and v == "true"
        )
        tok = f"{data.get('token-id', '')}.{data.get('token-secret', '')}"
        say(
            f"{tok:<24}{'':<6}{data.get('expiration', '<forever>'):<22}{usages:<26}"
            f"{data.get('description', '')}"
        )
    return 0


def _decode(value: object) -> str:
    return base64.b64decode(str(value)).decode(errors="replace")
