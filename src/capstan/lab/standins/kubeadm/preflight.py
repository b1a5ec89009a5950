"""Preflight checks with real kubeadm's names, so ``--ignore-preflight-errors`` means the same thing.

Checks that look at the machine itself (root, ports, the installed kubelet's version) run only on a
lab host (``CAPSTAN_STANDIN_ROOT`` unset); the file checks, the container runtime socket and the
external etcd check run everywhere, since they only read the stand-in's root or dial a socket.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from capstan.lab.standins import is_real_root
from capstan.lab.standins.kubeadm.base import PreflightError, Version, path, say, warn

Failure = tuple[str, str]


def check_name_for(kind: str, host_file: str) -> str:
    """``FileAvailable--etc-kubernetes-kubelet.conf`` from ``/etc/kubernetes/kubelet.conf``."""
    return f"{kind}-{host_file.replace('/', '-')}"


def file_available(host_file: str) -> list[Failure]:
    if path(host_file).exists():
        return [(check_name_for("FileAvailable", host_file), f"{host_file} already exists")]
    return []


def dir_available(host_dir: str) -> list[Failure]:
    target = path(host_dir)
    if target.is_dir() and any(target.iterdir()):
        return [(check_name_for("DirAvailable", host_dir), f"{host_dir} is not empty")]
    return []


def cri(socket_url: str) -> list[Failure]:
    """The runtime is up when its CRI socket accepts a connection (containerd's, in the lab)."""
    sock_path = str(path(urlsplit(socket_url).path or socket_url))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(sock_path)
    except OSError as exc:
        return [("CRI", f"container runtime is not running: dial unix {sock_path}: {exc.strerror or exc}")]
    return []


def kubernetes_version(target: Version, kubeadm: Version) -> list[Failure]:
    if target.minor_key() > kubeadm.minor_key():
        return [
            (
                "KubernetesVersion",
                f"Kubernetes version is greater than kubeadm version. Please consider to "
                f"upgrade kubeadm. Kubernetes version: {target.plain}. Kubeadm version: "
                f"{kubeadm.major}.{kubeadm.minor}.x",
            )
        ]
    if (target.major, target.minor + 1) < kubeadm.minor_key():
        return [
            (
                "KubernetesVersion",
                f"this version of kubeadm only supports deploying clusters with the "
                f"control plane version >= {kubeadm.major}.{kubeadm.minor - 1}.0. Current version: {target}",
            )
        ]
    return []


def external_etcd(endpoints: Iterable[str], ca: str, cert: str, key: str) -> list[Failure]:
    """Each endpoint must answer ``/version`` over TLS with the configured client certificate."""
    for host_file in (ca, cert, key):
        if host_file and not path(host_file).exists():
            return [("ExternalEtcdClientCertificates", f"{host_file} doesn't exist")]
    ctx = ssl.create_default_context(cafile=str(path(ca))) if ca else ssl.create_default_context()
    if cert and key:
        ctx.load_cert_chain(str(path(cert)), str(path(key)))
    failures: list[Failure] = []
    for endpoint in endpoints:
        url = endpoint.rstrip("/") + "/version"
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                version = json.loads(resp.read()).get("etcdserver", "")
        except (OSError, ValueError) as exc:
            failures.append(("ExternalEtcdVersion", f"Get {url}: {exc}"))
            continue
        if not re.match(r"^3\.", str(version)):
            failures.append(
                (
                    "ExternalEtcdVersion",
                    f"this version of kubeadm only supports external etcd "
                    f"version >= 3.5.0. Current version: {version}",
                )
            )
    return failures


def _machine_checks(ports: Iterable[int], cp_version: Version | None) -> list[Failure]:
    failures: list[Failure] = []
    if os.geteuid() != 0:
        failures.append(("IsPrivilegedUser", "user is not running as root"))
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                failures.append((f"Port-{port}", f"Port {port} is in use"))
    kubelet = next((p for p in ("/usr/local/bin/kubelet", "/usr/bin/kubelet") if Path(p).exists()), None)
    if kubelet is None:
        failures.append(("FileExisting-kubelet", "kubelet not found in system path"))
    elif cp_version is not None:
        out = subprocess.run([kubelet, "--version"], capture_output=True, text=True, timeout=30, check=False)
        found = re.search(r"v\d+\.\d+\.\d+", out.stdout)
        if found is None:
            failures.append(("KubeletVersion", f"couldn't get kubelet version: {out.stdout or out.stderr}"))
        elif Version.parse(found.group(0)).minor_key() > cp_version.minor_key():
            failures.append(
                (
                    "KubeletVersion",
                    f"the kubelet version is higher than the control plane version. "
                    f"This is not a supported version skew and may lead to a malfunctional cluster. "
                    f'Kubelet version: "{found.group(0)}" Control plane version: "{cp_version}"',
                )
            )
    return failures


def machine(ports: Iterable[int], cp_version: Version | None) -> list[Failure]:
    return _machine_checks(ports, cp_version) if is_real_root() else []


def report(failures: list[Failure], ignored: Iterable[str]) -> None:
    """Print ignored failures as warnings; raise for the rest (kubeadm's ``[ERROR Name]`` list)."""
    skip = {i.strip().lower() for i in ignored if i.strip()}
    fatal = []
    for name, reason in failures:
        if "all" in skip or name.lower() in skip:
            warn(f"\t[WARNING {name}]: {reason}")
        else:
            fatal.append((name, reason))
    if fatal:
        raise PreflightError(fatal)
    say("[preflight] All checks passed" if not failures else "[preflight] Checks passed with warnings")
