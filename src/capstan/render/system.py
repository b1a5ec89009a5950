"""OS preparation every host gets: kernel parameters and kernel modules, as files and as data.

The values are Kubespray's node preparation (see the reference notes): forwarding and bridge netfilter
for pod traffic, panic-and-reboot instead of a wedged node, memory overcommit as the kubelet expects,
enough inotify watches for many pods, and the NodePort range reserved so no local service grabs a port
from it. They are exposed as Python data too because the ops layer converges them live (``sysctl -w``,
``modprobe``) as well as writing the files that make them survive a reboot.
"""

from __future__ import annotations

from capstan.ops.kernel import SYSCTL_FILE
from capstan.ops.osprep import OSPREP_SYSCTLS
from capstan.render._env import render_text
from capstan.render.types import RenderedFile, text_file
from capstan.spec.models import Cluster

SYSCTL_PATH = SYSCTL_FILE
MODULES_PATH = "/etc/modules-load.d/capstan.conf"

# One table for both the rendered file and the OS-preparation op that converges it (the Kubespray set).
SYSCTLS: dict[str, str] = OSPREP_SYSCTLS
"""Kernel parameters for every host; ``net.bridge.*`` exist only once ``br_netfilter`` is loaded."""

_BASE_MODULES = ("br_netfilter", "overlay")
_IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")


def modules_for(cluster: Cluster) -> list[str]:
    """Kernel modules to load at boot: bridge netfilter and overlayfs, plus what kube-proxy's mode needs."""
    mode = cluster.spec.kubernetes.proxy_mode
    modules = list(_BASE_MODULES)
    if mode == "ipvs":
        modules.extend(_IPVS_MODULES)
    elif mode == "nftables":
        modules.append("nf_tables")
    return modules


def system_files(cluster: Cluster) -> list[RenderedFile]:
    """The sysctl and modules-load files (the same on every host of the cluster)."""
    return [
        text_file(SYSCTL_PATH, render_text("system/sysctl.conf.j2", sysctls=SYSCTLS)),
        text_file(MODULES_PATH, render_text("system/modules.conf.j2", modules=modules_for(cluster))),
    ]
