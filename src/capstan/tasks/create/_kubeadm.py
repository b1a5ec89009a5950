"""kubeadm's part of the create flow, in pure code: which files a node gets, the guards, the commands.

``kubeadm init`` and ``kubeadm join`` are not idempotent, so each runs only when facts say it has not
happened on that node (the architecture's "idempotent or guarded"). The facts are what kubeadm leaves
behind (the static pod manifests, the kubelet's config.yaml) plus what the API says (the Node, the
kubeadm-config ConfigMap). Deciding is pure so unit tests cover every combination.

Half-done runs. ``kubeadm reset`` deletes ``/etc/kubernetes/pki``, which on the first control plane holds
the cluster CA (the cluster is capstan's source of truth), so capstan never resets a node by itself:

- first control plane, manifests written but the API never becomes ready: fail, saying what to look
  at; a reset there would destroy the CA.
- first control plane, API ready but init's later phases missing (no Node or no kubeadm-config): init
  died after starting the control plane; re-running it with preflight skipped completes it (every later
  phase of kubeadm init creates-or-updates, and existing certificates and kubeconfigs are kept).
- joining node with leftovers but not registered: fail, naming ``kubeadm reset`` on that node followed by
  another run (that run's PKI phase puts the node's certificates back before it joins again).

Preflight checks ignored, by name: capstan places the kubelet's kubeconfig (with a client certificate
it issued, so no TLS bootstrap or CSR approval is needed) and, on workers, the cluster CA before the
join; kubeadm's join preflight refuses both files as "already exists". Nothing else is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from capstan.render import RenderedFile

KUBEADM = "/usr/local/bin/kubeadm"
KUBEADM_CONFIG = "/etc/kubernetes/kubeadm-config.yaml"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
KUBELET_DROPIN = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
KUBEADM_TIMEOUT = 600.0

JOIN_IGNORED_PREFLIGHT = ("FileAvailable--etc-kubernetes-kubelet.conf",)
"""capstan placed kubelet.conf (kubelet client certificate issued by capstan's PKI phase)."""
WORKER_IGNORED_PREFLIGHT = (*JOIN_IGNORED_PREFLIGHT, "FileAvailable--etc-kubernetes-pki-ca.crt")
"""...and, on workers, the cluster CA certificate (a control-plane join does not check it)."""

InitAction = Literal["init", "finish", "done", "broken"]
JoinAction = Literal["join", "done", "wait", "broken"]


def kube_files(files: Mapping[str, RenderedFile]) -> dict[str, RenderedFile]:
    """The rendered files the kubeadm phases own: the kubelet's units and everything in /etc/kubernetes.

    (/etc/kubernetes holds kubeadm's config and, on control planes, the API server's encryption, audit,
    admission and authentication configs; PKI material is the PKI phase's and is not rendered.)
    """
    return {
        path: f
        for path, f in files.items()
        if path in (KUBELET_UNIT, KUBELET_DROPIN) or path.startswith("/etc/kubernetes/")
    }


@dataclass(frozen=True)
class NodeState:
    """What the guards look at, for one node. API answers are None when the API was not asked."""

    manifests: bool
    kubelet_config: bool
    api_ready: bool | None = None
    registered: bool | None = None
    cluster_config: bool | None = None


def init_action(state: NodeState) -> InitAction:
    """What to do on the first control plane.

    Without manifests nothing of init happened: run it. With manifests the caller has waited for the API
    (``api_ready``): not ready means a half-done init capstan must not reset (``broken``); ready with the
    Node and the kubeadm-config ConfigMap means done; ready without them means init died after starting
    the control plane (``finish``).
    """
    if not state.manifests:
        return "init"
    if not state.api_ready:
        return "broken"
    if state.registered and state.cluster_config:
        return "done"
    return "finish"


def join_action(state: NodeState, control_plane: bool) -> JoinAction:
    """What to do on a joining node.

    Registered (and, for a control plane, its own apiserver ready) means done. No kubeadm leftovers
    means join. Leftovers without registration: ``wait`` when the API has not been asked yet (a kubelet
    that is restarting registers within seconds), ``broken`` once it has been asked after waiting.
    """
    leftovers = state.kubelet_config or (control_plane and state.manifests)
    if state.registered and (not control_plane or state.api_ready):
        return "done"
    if not leftovers:
        return "join"
    if state.registered is None:
        return "wait"
    return "broken"


def init_argv(finish: bool = False) -> list[str]:
    """``kubeadm init`` from capstan's config; the token never reaches the output (it is in the file)."""
    argv = [KUBEADM, "init", "--config", KUBEADM_CONFIG, "--skip-token-print"]
    if finish:
        argv.append("--skip-phases=preflight")
    return argv


def join_argv(control_plane: bool) -> list[str]:
    """``kubeadm join`` from capstan's JoinConfiguration (its controlPlane section makes a CP join)."""
    ignored = JOIN_IGNORED_PREFLIGHT if control_plane else WORKER_IGNORED_PREFLIGHT
    return [KUBEADM, "join", "--config", KUBEADM_CONFIG, f"--ignore-preflight-errors={','.join(ignored)}"]


def broken_init_message(host: str, server: str, detail: str) -> str:
    return (
        f"{host}: {APISERVER_MANIFEST} exists but the API at {server} is not ready ({detail}): a previous "
        "kubeadm init did not finish. Look at `journalctl -u kubelet` on it; capstan does not run "
        "`kubeadm reset` there because it would delete the cluster CA in /etc/kubernetes/pki"
    )


def broken_join_message(host: str, detail: str) -> str:
    return (
        f"{host}: a previous kubeadm join left files behind but the node is not part of the cluster "
        f"({detail}); run `kubeadm reset -f` on {host}, then run create again"
    )
