"""What reset-cluster removes from one host, and the pure plan that removes what is still there.

The targets are derived from the same constants the create phases install with (``installs_for``, the
runtime, etcd and balancer units, the render's paths), per role, so a file create learns to install is
one a reset learns to remove. Planning is facts in, ``Op`` list out: a host with nothing left yields
only converged ops, so a second reset (or a reset of a clean host) changes nothing.

Order on the host: ``kubeadm reset -f`` first where kubeadm and its state exist (it stops the static
pods and removes its own files, which capstan must not second-guess); then the services are stopped and
disabled; then every file and directory goes (mounts below a directory are unmounted first: pods leave
tmpfs volumes under ``/var/lib/kubelet``); a removed unit file ends with ``daemon-reload``.

Kept on purpose: OS packages (and the distribution's keepalived unit, which is only stopped and
disabled), the etcd account, and etcd backups (``spec.etcd.backup.dir``): a reset must never destroy
the snapshot someone needs to rebuild from. Like Kubespray's reset, capstan's own sysctl and
modules-load files do go. capstan adds no iptables/nft rules itself; kube-proxy's and the CNI's live in
the host's kernel tables and are not touched here.
"""

from __future__ import annotations

from dataclasses import dataclass

from capstan.facts import FactsQuery, HostFacts
from capstan.ops import Command, Op, script
from capstan.render.etcd import ETCD_ENV_PATH, ETCD_UNIT_PATH, ETCDCTL_ENV_PATH, TLS_DIR
from capstan.render.lb import KEEPALIVED_PATH, LB_DIR, LB_UNIT
from capstan.render.runtime import CONTAINERD_SOCKET, CRIO_SOCKET
from capstan.spec.models import Cluster, Host
from capstan.tasks.create._kubeadm import KUBEADM, KUBELET_DROPIN, KUBELET_UNIT
from capstan.tasks.create.apilb import KEEPALIVED_UNIT
from capstan.tasks.create.artifacts import CNI_BIN_DIR, installs_for
from capstan.tasks.create.runtime import CRICTL_CONFIG, RUNTIMES, UNIT_DIR

KUBEADM_RESET_TIMEOUT = 300.0
SYSCTL_FILE = "/etc/sysctl.d/99-capstan.conf"
MODULES_FILE = "/etc/modules-load.d/capstan.conf"
CAPSTAN_STATE = "/var/lib/capstan"
NODE_CONFIG = ("/etc/kubernetes", "/etc/cni", CRICTL_CONFIG)
NODE_DATA = ("/var/lib/kubelet", "/var/lib/kube-proxy", "/var/lib/cni", "/opt/cni")
RUNTIME_PATHS: dict[str, tuple[str, ...]] = {
    "containerd": ("/etc/containerd", "/var/lib/containerd"),
    "cri-o": (
        "/etc/crio/crio.conf.d/10-capstan.conf",
        "/etc/containers/registries.conf.d/10-capstan-mirrors.conf",
        "/var/lib/containers",
        "/usr/libexec/crio",
    ),
}
RUNTIME_SOCKETS = {"containerd": CONTAINERD_SOCKET, "cri-o": CRIO_SOCKET}
ETCD_CONFIG = (ETCD_ENV_PATH, ETCDCTL_ENV_PATH, TLS_DIR)

_REMOVE = r"""set -eu
p=$1
# Unmount what lies below p first (deepest first): rm -rf would fail on, or descend into, a mount.
if [ -r /proc/self/mountinfo ]; then
  awk -v p="$p" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
fi
rm -rf -- "$p"
"""
_STOP = r"""set -u
u=$1
systemctl stop "$u" 2>/dev/null || true
systemctl disable "$u" 2>/dev/null || true
systemctl reset-failed "$u" 2>/dev/null || true
! systemctl is-active --quiet "$u"
"""


@dataclass(frozen=True)
class ResetTargets:
    """Everything capstan may have put on one host for its roles (whether or not it is there now)."""

    host: str
    units: tuple[str, ...]
    """Services to stop and disable, in this order (consumers before what they consume)."""
    unit_files: tuple[str, ...]
    paths: tuple[str, ...]
    """Files and directories to remove (binaries, config, data, capstan's state)."""
    kubeadm: bool
    cri_socket: str | None

    @property
    def all_paths(self) -> tuple[str, ...]:
        return (*self.unit_files, *self.paths)


def reset_targets(cluster: Cluster, host: Host) -> ResetTargets:
    """Pure: the units and paths of ``host``'s roles (nodes, etcd members, balancer hosts)."""
    spec = cluster.spec
    node = host in cluster.nodes
    units: list[str] = []
    unit_files: list[str] = []
    paths: list[str] = []
    runtime = spec.container_runtime.name
    if node:
        units.append("kubelet.service")
        unit_files += [KUBELET_UNIT, KUBELET_DROPIN.rsplit("/", 1)[0]]
    cpe = spec.control_plane_endpoint
    if cpe.mode == "local-lb" and node:
        units.append(LB_UNIT)
        unit_files.append(f"{UNIT_DIR}/{LB_UNIT}")
        paths.append(LB_DIR)
    elif cpe.mode == "vip" and host in cluster.control_planes:
        units.append(KEEPALIVED_UNIT)  # the package's unit: stopped and disabled, not removed
        paths.append(KEEPALIVED_PATH)
    if host.has("etcd"):
        units.append("etcd.service")
        unit_files.append(ETCD_UNIT_PATH)
        paths += [*ETCD_CONFIG, spec.etcd.data_dir]
    if node:
        rt = RUNTIMES[runtime]
        units.append(rt.unit)
        unit_files.append(f"{UNIT_DIR}/{rt.unit}")
        paths += [*NODE_CONFIG, *NODE_DATA, *RUNTIME_PATHS[runtime]]
    binaries = [i.dest for i in installs_for(cluster, host) if not i.dest.startswith(CNI_BIN_DIR + "/")]
    paths += binaries
    paths += [SYSCTL_FILE, MODULES_FILE, CAPSTAN_STATE]  # the stamps and applied records are inside
    return ResetTargets(
        host=host.name,
        units=tuple(dict.fromkeys(units)),
        unit_files=tuple(dict.fromkeys(unit_files)),
        paths=tuple(dict.fromkeys(paths)),
        kubeadm=node,
        cri_socket=f"unix://{RUNTIME_SOCKETS[runtime]}" if node else None,
    )


def reset_query(targets: ResetTargets) -> FactsQuery:
    return FactsQuery(
        units=targets.units,
        files=(*targets.all_paths, *([KUBEADM] if targets.kubeadm else [])),
        binaries=(),
    )


def _covered(path: str, removed: list[str]) -> bool:
    """Whether ``path`` lies inside a directory already planned for removal."""
    return any(path.startswith(d.rstrip("/") + "/") for d in removed)


def reset_plan(facts: HostFacts, targets: ResetTargets) -> list[Op]:
    """Pure: the ops that leave ``facts``' host without anything of ``targets`` (converged when clean)."""
    ops: list[Op] = []
    kube_state = any(facts.file(p) is not None for p in ("/etc/kubernetes", "/var/lib/kubelet"))
    if targets.kubeadm:
        kubeadm = facts.file(KUBEADM)
        if kubeadm is not None and kubeadm.is_file and kube_state:
            argv = [KUBEADM, "reset", "-f"]
            if targets.cri_socket:
                argv += ["--cri-socket", targets.cri_socket]
            ops.append(Op("kubeadm reset", (Command(tuple(argv), timeout=KUBEADM_RESET_TIMEOUT),)))
        else:
            ops.append(Op("kubeadm reset", (), "nothing for kubeadm to reset"))
    systemd = facts.has_tool("systemctl")
    for unit in targets.units:
        state = facts.unit(unit)
        # A disabled, stopped unit is left alone: it may be an OS package's own (e.g. the distribution's
        # etcd.service), which stays with the package; capstan's unit files are removed below.
        running = state.active_state in ("active", "activating", "reloading", "failed")
        if systemd and (running or state.enabled_state in ("enabled", "enabled-runtime")):
            ops.append(Op(f"service {unit} stopped and disabled", (script(_STOP, unit),)))
        else:
            ops.append(Op(f"service {unit} stopped and disabled", (), "absent"))
    removed: list[str] = []
    unit_removed = False
    for path in targets.all_paths:
        if facts.file(path) is None or _covered(path, removed):
            ops.append(Op(f"remove {path}", (), "absent"))
            continue
        removed.append(path)
        unit_removed = unit_removed or path in targets.unit_files
        ops.append(Op(f"remove {path}", (script(_REMOVE, path),)))
    if unit_removed and systemd:
        ops.append(Op("systemctl daemon-reload", (Command(("systemctl", "daemon-reload")),)))
    return ops
