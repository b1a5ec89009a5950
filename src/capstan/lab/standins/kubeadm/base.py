"""Errors, versions and on-host paths shared by every kubeadm stand-in command.

A refusal is a :class:`KubeadmError` carrying the phase it happened in; ``main`` prints it the way
real kubeadm does (``error execution phase <phase>: <reason>``) and exits 1, so whatever parses
kubeadm's output (capstan's flows, an operator) sees the familiar shape.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from capstan.lab.standins import host_path

KUBE_DIR = "/etc/kubernetes"
PKI_DIR = f"{KUBE_DIR}/pki"
MANIFESTS_DIR = f"{KUBE_DIR}/manifests"
KUBELET_DIR = "/var/lib/kubelet"
KUBELET_CONFIG = f"{KUBELET_DIR}/config.yaml"
KUBELET_FLAGS_ENV = f"{KUBELET_DIR}/kubeadm-flags.env"
KUBELET_CONF = f"{KUBE_DIR}/kubelet.conf"
BOOTSTRAP_KUBELET_CONF = f"{KUBE_DIR}/bootstrap-kubelet.conf"
ADMIN_CONF = f"{KUBE_DIR}/admin.conf"
SUPER_ADMIN_CONF = f"{KUBE_DIR}/super-admin.conf"
CONTROLLER_MANAGER_CONF = f"{KUBE_DIR}/controller-manager.conf"
SCHEDULER_CONF = f"{KUBE_DIR}/scheduler.conf"
DEFAULT_CRI_SOCKET = "unix:///run/containerd/containerd.sock"
DEFAULT_SERVICE_SUBNET = "10.96.0.0/12"
DEFAULT_DNS_DOMAIN = "cluster.local"
DEFAULT_BIND_PORT = 6443
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class KubeadmError(Exception):
    """A refusal: printed as ``error execution phase <phase>: <reason>`` (or just the reason)."""

    def __init__(self, reason: str, phase: str = "") -> None:
        self.reason = reason
        self.phase = phase
        super().__init__(f"error execution phase {phase}: {reason}" if phase else reason)


class PreflightError(KubeadmError):
    """Failed preflight checks, listed one per line like real kubeadm's ``[ERROR Name]: reason``."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        lines = "".join(f"\n\t[ERROR {name}]: {reason}" for name, reason in failures)
        super().__init__(
            f"[preflight] Some fatal errors occurred:{lines}\n[preflight] If you know what you are doing, "
            "you can make a check non-fatal with `--ignore-preflight-errors=...`",
            "preflight",
        )
        self.names = [name for name, _ in failures]


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str, field: str = "version") -> Version:
        match = _VERSION.fullmatch(str(text).strip())
        if match is None:
            raise KubeadmError(f'{field}: Invalid value: "{text}": not a Kubernetes version like v1.36.4')
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)))

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    @property
    def plain(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)


def path(p: str) -> Path:
    """A host path under the configurable root (``CAPSTAN_STANDIN_ROOT``, ``/`` on hosts)."""
    return host_path(p)


def say(line: str) -> None:
    print(line, flush=True)


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def write_file(host_file: str, data: str | bytes, mode: int = 0o644) -> None:
    """Write a host file atomically with ``mode`` (readers never see half a manifest)."""
    target = path(host_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.chmod(mode)
    tmp.replace(target)
