"""``kubeadm upgrade plan|apply|node`` with kubeadm's version policy.

Mandatory refusals (no flag overrides them): another major version, a minor downgrade, skipping a minor
(cluster v1.34 -> v1.36), a target below the oldest control plane this kubeadm supports. Refusals
``--force`` (``apply.forceUpgrade``) overrides: a target newer than this kubeadm binary, or a kubeadm
of a newer minor than the target. ``apply`` rewrites this node's manifests for the new
version, waits until the apiserver reports it, renews certificates (``certificateRenewal``, default
on, as real kubeadm) and stores the new version in kubeadm-config; ``node`` brings another control
plane (manifests) or a worker (kubelet config only) to the version kubeadm-config names.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

import yaml

from capstan.lab.standins.kubeadm import certscmd, clusterops, kubeconfig, manifests, objects, pkiutil, rest
from capstan.lab.standins.kubeadm import kubeletfiles as kf
from capstan.lab.standins.kubeadm.base import (
    ADMIN_CONF,
    KUBE_DIR,
    KUBELET_CONF,
    MANIFESTS_DIR,
    KubeadmError,
    Version,
    path,
    say,
)
from capstan.lab.standins.kubeadm.cli import check_mixed
from capstan.lab.standins.kubeadm.config import NodeSetup, cluster_yaml, hostname, load_documents, only_kinds
from capstan.lab.standins.kubeadm.rest import Api, RestError

Doc = dict[str, Any]
PHASE = "upgrade/version"


def version_policy(cluster: Version, target: Version, binary: Version) -> tuple[list[str], list[str]]:
    """(mandatory, skippable) refusals of upgrading a ``cluster`` to ``target`` with this kubeadm."""
    mandatory: list[str] = []
    skippable: list[str] = []
    if target.major != cluster.major:
        mandatory.append(
            f"Kubernetes version upgrade across major versions is not supported ({cluster} -> {target})"
        )
    elif target < cluster and target.minor < cluster.minor:
        mandatory.append(
            f'Specified version to downgrade to "{target}" is too low; kubeadm can downgrade only patch '
            f'versions (you have "{cluster}")'
        )
    elif target.minor > cluster.minor + 1:
        mandatory.append(
            f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade only 1 minor '
            "version at a time"
        )
    if target.minor_key() < (binary.major, binary.minor - 1):
        mandatory.append(
            f'Specified version to upgrade to "{target}" is equal to or lower than the minimum supported '
            f'version "v{binary.major}.{binary.minor - 1}.0". Please specify a higher version to upgrade to'
        )
    if target > binary:
        skippable.append(
            f'Specified version to upgrade to "{target}" is higher than the kubeadm version "{binary}". '
            "Upgrade kubeadm first using the tool you used to install kubeadm"
        )
    elif binary.minor_key() > target.minor_key() and not mandatory:
        skippable.append(
            f'Kubeadm version "{binary}" can only be used to upgrade to Kubernetes version '
            f'"v{binary.major}.{binary.minor}"'
        )
    return mandatory, skippable


def enforce(cluster: Version, target: Version, binary: Version, force: bool) -> None:
    mandatory, skippable = version_policy(cluster, target, binary)
    if mandatory or (skippable and not force):
        lines = [f"\t- {m}" for m in mandatory + ([] if force else skippable)]
        hint = "" if mandatory else "\nYou can also try to override these with --force"
        raise KubeadmError(
            "[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n"
            + "\n".join(lines)
            + hint,
            PHASE,
        )
    for s in skippable:
        say(
            "[upgrade/version] Found 1 potential version compatibility errors but skipping since the "
            "--force "
            f"flag is set: {s}"
        )


def _client(kubeconfig_file: str | None) -> Api:
    return rest.from_kubeconfig(kubeconfig_file or str(path(ADMIN_CONF)))


def _this_node() -> tuple[str, str, int]:
    """(node name, advertise address, bind port) of this control plane, from what kubeadm wrote."""
    name = hostname()
    if path(KUBELET_CONF).exists():
        cert = kubeconfig.client_cert_pem(path(KUBELET_CONF).read_bytes())
        if cert:
            cn = pkiutil.subject_of(pkiutil.load_cert(cert))[0]
            name = cn.removeprefix("system:node:") or name
    pod = yaml.safe_load(path(f"{MANIFESTS_DIR}/kube-apiserver.yaml").read_text())
    annotation = (pod.get("metadata", {}).get("annotations") or {}).get(
        "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint", ""
    )
    host, _, port = str(annotation).rpartition(":")
    return name, host.strip("[]"), int(port or 6443)


def _cluster_version(cluster: Doc) -> Version:
    return Version.parse(str(cluster.get("kubernetesVersion", "")), "kubernetesVersion")


def plan(args: argparse.Namespace, binary: Version) -> int:
    api = _client(args.kubeconfig)
    say(
        '[upgrade/config] Reading configuration from the "kubeadm-config" ConfigMap in namespace '
        '"kube-system"...'
    )
    cluster = clusterops.read_cluster_config(api, "upgrade/config")
    current = _cluster_version(cluster)
    target = Version.parse(args.version) if args.version else binary
    say(f"[upgrade/versions] Cluster version: {current}\n[upgrade/versions] kubeadm version: {binary}")
    if target <= current:
        say("Awesome, you're up-to-date! Enjoy!")
        return 0
    mandatory, skippable = version_policy(current, target, binary)
    for problem in mandatory + skippable:
        say(f"[upgrade/versions] WARNING: {problem}")
    nodes = api.get("/api/v1/nodes").get("items") or []
    say(
        "\nComponents that must be upgraded manually after you have upgraded the control plane with "
        "'kubeadm upgrade apply':\nCOMPONENT   NODE      CURRENT   TARGET"
    )
    for n in nodes:
        info = (n.get("status") or {}).get("nodeInfo") or {}
        say(f"kubelet     {n['metadata']['name']:<9} {info.get('kubeletVersion', '?'):<9} {target}")
    say("\nUpgrade to the latest stable version:\n\nCOMPONENT                 NODE      CURRENT   TARGET")
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        say(f"{component:<25} -         {current!s:<9} {target}")
    say(
        "\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade "
        f"apply {target}\n"
    )
    return 0


def _confirm() -> None:
    print("[upgrade] Are you sure you want to proceed? [y/N]: ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise KubeadmError(
            "won't proceed; the user didn't answer (Y|y) in order to continue", "upgrade/confirm"
        )


def _backup_manifests() -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S")
    backup = path(f"{KUBE_DIR}/tmp/kubeadm-backup-manifests-{stamp}")
    backup.mkdir(parents=True, exist_ok=True)
    for manifest in path(MANIFESTS_DIR).glob("*.yaml"):
        shutil.copy2(manifest, backup / manifest.name)
    say(f'[upgrade/staticpods] Moving old manifests to "{backup.relative_to(path("/"))}"')


def _wait_version(node: NodeSetup, deadline: float) -> None:
    """Until this node's apiserver answers /version with the new gitVersion (the kubelet restarted it)."""
    api = rest.from_kubeconfig(str(path(ADMIN_CONF)))
    local = rest.KubeClient(node.local_url, api.context, timeout=5)
    last = ""
    while time.monotonic() < deadline:
        try:
            last = str(local.get("/version").get("gitVersion", ""))
            if last == node.version:
                return
        except RestError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise KubeadmError(
        f"the kube-apiserver static Pod did not come back at {node.version} in time (last: {last})",
        "upgrade/staticpods",
    )


def upgrade_control_plane(cluster: Doc, renew: bool, deadline: float) -> NodeSetup:
    name, advertise, port = _this_node()
    node = NodeSetup(cluster, name, advertise, port)
    if renew:
        certscmd.renew("all", node.pki_dir)
    _backup_manifests()
    manifests.write_manifests(node)
    _wait_version(node, deadline)
    return node


def _upgrade_options(args: argparse.Namespace, section: str) -> Doc:
    if not args.config:
        return {}
    docs = load_documents(args.config)
    only_kinds(docs, {"UpgradeConfiguration"})
    upgrade = docs.get("UpgradeConfiguration")
    if upgrade is None:
        raise KubeadmError(
            f"{args.config}: no UpgradeConfiguration kind was found in the YAML file (kubeadm upgrade "
            "takes no Init or ClusterConfiguration; edit the kubeadm-config ConfigMap instead)"
        )
    return dict(upgrade.get(section) or {})


def apply(args: argparse.Namespace, binary: Version) -> int:
    check_mixed(args, positional=("version",))
    options = _upgrade_options(args, "apply")
    wanted = args.version or options.get("kubernetesVersion")
    if not wanted:
        raise KubeadmError("missing one or more required arguments. Required arguments: [version]")
    target = Version.parse(str(wanted))
    if not path(f"{MANIFESTS_DIR}/kube-apiserver.yaml").exists():
        raise KubeadmError(
            "this node is not a control plane: no kube-apiserver static Pod manifest", "preflight"
        )
    api = _client(args.kubeconfig)
    cluster = clusterops.read_cluster_config(api, "upgrade/config")
    current = _cluster_version(cluster)
    say(f'[upgrade/version] You have chosen to change the cluster version to "{target}"')
    say(f"[upgrade/versions] Cluster version: {current}\n[upgrade/versions] kubeadm version: {binary}")
    enforce(current, target, binary, bool(args.force or options.get("forceUpgrade")))
    if not (args.yes or args.force or options.get("forceUpgrade")):
        _confirm()
    cluster["kubernetesVersion"] = str(target)
    renew = args.certificate_renewal != "false" and options.get("certificateRenewal", True) is not False
    deadline = time.monotonic() + 300
    node = upgrade_control_plane(cluster, renew, deadline)
    say('[upgrade/upload-config] Storing the configuration used in ConfigMap "kubeadm-config"')
    clusterops.apply(
        api,
        objects.configmap("kubeadm-config", "kube-system", {"ClusterConfiguration": cluster_yaml(cluster)}),
    )
    _upgrade_kube_proxy(api, node)
    say(f'\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to "{target}".\n')
    say("[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.")
    return 0


def _upgrade_kube_proxy(api: Api, node: NodeSetup) -> None:
    ds_path = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy"
    try:
        ds = api.get(ds_path)
    except RestError:
        return
    for container in ds["spec"]["template"]["spec"]["containers"]:
        if container.get("name") == "kube-proxy":
            container["image"] = (
                f"{node.cluster.get('imageRepository', 'registry.k8s.io')}/kube-proxy:{node.version}"
            )
    api.put(ds_path, ds)
    say("[upgrade/addons] Applied essential addon: kube-proxy")


def node(args: argparse.Namespace, binary: Version) -> int:
    check_mixed(args)
    options = _upgrade_options(args, "node")
    control_plane = path(f"{MANIFESTS_DIR}/kube-apiserver.yaml").exists()
    api = (
        _client(args.kubeconfig)
        if control_plane
        else rest.from_kubeconfig(args.kubeconfig or str(path(KUBELET_CONF)))
    )
    say('[upgrade] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...')
    cluster = clusterops.read_cluster_config(api, "upgrade/config")
    target = _cluster_version(cluster)
    if target > binary and not options.get("forceUpgrade"):
        raise KubeadmError(
            f'the cluster is at "{target}", higher than this kubeadm "{binary}": upgrade kubeadm first',
            "preflight",
        )
    if control_plane:
        say(f'[upgrade] Upgrading your Static Pod-hosted control plane instance to version "{target}"...')
        renew = args.certificate_renewal != "false" and options.get("certificateRenewal", True) is not False
        upgrade_control_plane(cluster, renew, time.monotonic() + 300)
    else:
        say("[upgrade] Skipping phase. Not a control plane node.")
    kf.write_kubelet_config(clusterops.read_kubelet_config(api, "kubelet-config"))
    say("[upgrade] The configuration for this node was successfully upgraded!")
    say("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
    return 0
