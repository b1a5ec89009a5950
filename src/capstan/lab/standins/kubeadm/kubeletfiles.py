"""The kubelet-start phase's files: ``/var/lib/kubelet/config.yaml`` and ``kubeadm-flags.env``.

kubeadm fills the KubeletConfiguration fields it owns when the document leaves them out (static pod
path, cluster DNS and domain, client CA, webhook authn/authz, cgroup driver, healthz) and keeps every
field the user set. The same document (without instance-specific fields) is uploaded as the
``kubelet-config`` ConfigMap, from which joining nodes write their own ``config.yaml``.
"""

from __future__ import annotations

import copy
import shlex
import subprocess
from typing import Any

import yaml

from capstan.lab.standins import is_real_root
from capstan.lab.standins.kubeadm.base import (
    KUBELET_CONFIG,
    KUBELET_FLAGS_ENV,
    MANIFESTS_DIR,
    say,
    warn,
    write_file,
)
from capstan.lab.standins.kubeadm.config import KUBELET_API, hostname

Doc = dict[str, Any]


def default_kubelet(doc: Doc | None, dns_ip: str, domain: str, pki_dir: str) -> Doc:
    out = copy.deepcopy(doc or {"apiVersion": KUBELET_API, "kind": "KubeletConfiguration"})
    out.setdefault("staticPodPath", MANIFESTS_DIR)
    out.setdefault("clusterDNS", [dns_ip])
    out.setdefault("clusterDomain", domain)
    out.setdefault("cgroupDriver", "systemd")
    out.setdefault("rotateCertificates", True)
    out.setdefault("healthzBindAddress", "127.0.0.1")
    out.setdefault("healthzPort", 10248)
    authn = out.setdefault("authentication", {})
    authn.setdefault("anonymous", {"enabled": False})
    authn.setdefault("webhook", {"enabled": True, "cacheTTL": "0s"})
    authn.setdefault("x509", {"clientCAFile": f"{pki_dir}/ca.crt"})
    out.setdefault("authorization", {"mode": "Webhook"})
    return out


def kubelet_yaml(doc: Doc) -> str:
    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)


def write_kubelet_config(doc: Doc) -> None:
    write_file(KUBELET_CONFIG, kubelet_yaml(doc))
    say(f'[kubelet-start] Writing kubelet configuration to file "{KUBELET_CONFIG}"')


def flags_env(node_registration: Doc, kubelet: Doc) -> str:
    """``KUBELET_KUBEADM_ARGS``: the runtime endpoint (unless in the config), the name, the extra args."""
    flags: list[tuple[str, str]] = []
    if not kubelet.get("containerRuntimeEndpoint"):
        flags.append(("container-runtime-endpoint", str(node_registration["criSocket"])))
    name = str(node_registration["name"])
    if name != hostname():
        flags.append(("hostname-override", name))
    extra = [
        (str(a["name"]), str(a.get("value", ""))) for a in node_registration.get("kubeletExtraArgs") or []
    ]
    names = {n for n, _ in extra}
    args = [f"--{n}={v}" for n, v in [*(f for f in flags if f[0] not in names), *extra]]
    return f'KUBELET_KUBEADM_ARGS="{" ".join(shlex.quote(a) for a in args)}"\n'


def write_flags_env(node_registration: Doc, kubelet: Doc) -> None:
    write_file(KUBELET_FLAGS_ENV, flags_env(node_registration, kubelet))
    say(f'[kubelet-start] Writing kubelet environment file with flags to file "{KUBELET_FLAGS_ENV}"')


def restart_kubelet() -> None:
    """Like kubeadm: (re)start the kubelet unit if systemctl is there; only a warning when it fails."""
    if not is_real_root():
        return
    say("[kubelet-start] Starting the kubelet")
    try:
        done = subprocess.run(["systemctl", "restart", "kubelet"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        warn(f"[kubelet-start] WARNING: unable to start the kubelet service: {exc}")
        return
    if done.returncode != 0:
        warn(f"[kubelet-start] WARNING: unable to start the kubelet service: {done.stderr.strip()[-300:]}")


def stop_kubelet() -> None:
    if is_real_root():
        subprocess.run(["systemctl", "stop", "kubelet"], capture_output=True, timeout=60, check=False)
