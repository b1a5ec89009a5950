"""kubelet stand-in: a systemd service that registers its Node, heartbeats, and runs the static pods.

Started by capstan's own unit (``--config``, ``--kubeconfig``, ``--bootstrap-kubeconfig`` and
``KUBELET_KUBEADM_ARGS`` from kubeadm-flags.env). Like the real kubelet it exits non-zero while its
config file or kubeconfig is missing, so ``Restart=always`` retries until kubeadm has written them.
It reports ``Ready`` only while the container runtime's CRI socket accepts connections and a CNI
config exists (see ``network``); it serves ``/healthz`` where kubeadm waits for it (127.0.0.1:10248).
On SIGTERM it exits and leaves the static pod processes running, as a real kubelet leaves its
containers; the node then goes NotReady once the controller-manager's grace period passes.

Without kubelet.conf it performs the TLS bootstrap with ``--bootstrap-kubeconfig`` (``bootstrap.py``).
Not modelled: the kubelet's own HTTPS API on :10250 (logs/exec), probes, certificate rotation, and
running any pod other than static ones.
"""

from __future__ import annotations

import http.server
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import yaml

from capstan.lab.standins import host_path
from capstan.lab.standins.common import flags as fl
from capstan.lab.standins.kubeadm import rest
from capstan.lab.standins.kubeadm.base import KubeadmError
from capstan.lab.standins.kubeadm.config import default_advertise_address
from capstan.lab.standins.kubeadm.rest import RestError
from capstan.lab.standins.kubelet import network
from capstan.lab.standins.kubelet.bootstrap import BootstrapError
from capstan.lab.standins.kubelet.bootstrap import bootstrap as tls_bootstrap
from capstan.lab.standins.kubelet.node import NodeAgent, hostname
from capstan.lab.standins.kubelet.pods import PodState, StaticPods

log = logging.getLogger("kubelet")
DEFAULT_CRI = "unix:///run/containerd/containerd.sock"
_STRINGS = (
    "config", "kubeconfig", "bootstrap-kubeconfig", "node-ip", "hostname-override", "node-labels",
    "register-with-taints", "container-runtime-endpoint", "v", "cgroup-driver", "pod-infra-container-image",
    "runtime-request-timeout", "cloud-provider", "provider-id", "root-dir", "cert-dir", "max-pods",
    "node-status-update-frequency", "resolv-conf", "image-service-endpoint",
)  # fmt: skip
FLAGS = (
    *(fl.Flag(n) for n in _STRINGS),
    fl.Flag("version", boolean=True),
    fl.Flag("fail-swap-on", boolean=True),
    fl.Flag("rotate-certificates", boolean=True),
)
NOT_READY_NETWORK = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)


class KubeletError(Exception):
    """The kubelet cannot run with these flags and files (it exits 1; systemd restarts it)."""


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (p for p in text.split(",") if p):
        key, _, value = item.partition("=")
        out[key] = value
    return out


ALLOWED_KUBE_LABELS = (
    "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type", "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch", "kubernetes.io/hostname", "kubernetes.io/os", "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
)  # fmt: skip


def check_node_labels(labels: dict[str, str]) -> None:
    """The kubelet's own rule: it may not set labels in the kubernetes.io / k8s.io namespaces outside an
    allowed set (``node-role.kubernetes.io/*`` included: roles are set by kubeadm or an admin)."""
    bad = []
    for key in labels:
        domain = key.split("/", 1)[0] if "/" in key else ""
        kube = any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
        allowed = key in ALLOWED_KUBE_LABELS or any(
            domain == d or domain.endswith("." + d) for d in ("kubelet.kubernetes.io", "node.kubernetes.io")
        )
        if kube and not allowed:
            bad.append(key)
    if bad:
        raise KubeletError(
            "failed to validate kubelet flags: unknown 'kubernetes.io' or 'k8s.io' labels specified "
            f"with --node-labels: {sorted(bad)}\n--node-labels in the 'kubernetes.io' namespace must begin "
            "with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically "
            f"allowed set ({', '.join(ALLOWED_KUBE_LABELS)})"
        )


def parse_taints(text: str) -> list[dict[str, str]]:
    """``key=value:Effect,key:Effect`` as ``--register-with-taints`` takes them."""
    taints = []
    for item in (t for t in text.split(",") if t):
        head, sep, effect = item.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise KubeletError(f"invalid taint spec: {item}")
        key, _, value = head.partition("=")
        taints.append(
            {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
        )
    return taints


def load_config(file: str) -> dict[str, Any]:
    target = host_path(file)
    try:
        doc = yaml.safe_load(target.read_text())
    except OSError as exc:
        raise KubeletError(
            f"failed to load kubelet config file, path: {file}, error: {exc.strerror}"
        ) from None
    except yaml.YAMLError as exc:
        raise KubeletError(f"failed to load kubelet config file, path: {file}, error: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != "KubeletConfiguration"
        or doc.get("apiVersion") != "kubelet.config.k8s.io/v1beta1"
    ):
        raise KubeletError(
            f"failed to load kubelet config file, path: {file}, error: not a "
            "kubelet.config.k8s.io/v1beta1 KubeletConfiguration"
        )
    return doc


def ensure_kubeconfig(kubeconfig: str, bootstrap_kubeconfig: str, node_name: str) -> None:
    """kubelet.conf, or TLS bootstrap with the bootstrap kubeconfig; else exit like the real kubelet."""
    if host_path(kubeconfig).exists():
        return
    if bootstrap_kubeconfig and host_path(bootstrap_kubeconfig).exists():
        try:
            tls_bootstrap(bootstrap_kubeconfig, kubeconfig, node_name)
        except (BootstrapError, RestError, KubeadmError) as exc:
            raise KubeletError(f"failed to run Kubelet: unable to load bootstrap kubeconfig: {exc}") from None
        return
    raise KubeletError(
        f"unable to load bootstrap kubeconfig: stat {bootstrap_kubeconfig or kubeconfig}: "
        "no such file or directory"
    )


def runtime_version() -> str:
    try:
        out = subprocess.run(
            ["containerd", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "containerd://unknown"
    words = out.stdout.split()
    return f"containerd://{words[2]}" if len(words) >= 3 else "containerd://unknown"


def serve_healthz(address: str, port: int) -> http.server.HTTPServer:
    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?")[0] in ("/healthz", "/healthz/ping", "/healthz/syncloop")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"not found")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer((address, port), Healthz)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server


def readiness(cri_endpoint: str, agent: NodeAgent) -> tuple[bool, str]:
    """(ready, reason): the runtime must answer and the pod network must be configured."""
    cri = network.cri_error(cri_endpoint)
    if cri:
        return False, cri
    if not network.network_ready():
        plugin = network.install_cni_config(agent.api, agent.name)
        if plugin:
            log.info("wrote the CNI config of %s (as its DaemonSet pod would)", plugin)
    return (True, "") if network.network_ready() else (False, NOT_READY_NETWORK)


@dataclass
class Reporting:
    """What a registered node sends, and when: as the real kubelet does with node leases.

    Readiness is looked at every second (``tick``) and a change is posted at once, so a node turns
    Ready as soon as its runtime and pod network are; an unchanged status is posted only every
    ``report_every`` (nodeStatusReportFrequency, 5 min); the Lease is renewed every ``lease_every``
    (nodeStatusUpdateFrequency, 10 s) and is what tells the controller-manager the node is alive.
    Mirror pods get a status only when it changed. A failed post or renewal is tried again a second
    later. Why not post everything every 10 s: thirty idle nodes did that and kept the lab's API
    servers and etcd busy with writes that said nothing new.
    """

    agent: NodeAgent
    lease_every: float = 10.0
    report_every: float = 300.0
    posted: tuple[bool, str] | None = None  # the readiness last posted (None: none yet, or it failed)
    next_report: float = 0.0
    next_lease: float = 0.0

    def tick(self, now: float, ready: tuple[bool, str], states: dict[str, PodState]) -> None:
        if ready != self.posted or now >= self.next_report:
            ok = self.agent.heartbeat(*ready)
            self.posted = ready if ok else None
            self.next_report = now + (self.report_every if ok else 1.0)
        if now >= self.next_lease:
            self.next_lease = now + (self.lease_every if self.agent.renew_lease() else 1.0)
        self.agent.sync_mirrors(states)


def run(f: fl.Flags, version: str, stop: threading.Event) -> int:
    config = load_config(f.get_str("config") or "/var/lib/kubelet/config.yaml")
    kubeconfig = f.get_str("kubeconfig") or "/etc/kubernetes/kubelet.conf"
    cri = f.get_str("container-runtime-endpoint") or str(
        config.get("containerRuntimeEndpoint") or DEFAULT_CRI
    )
    name = (f.get_str("hostname-override") or hostname()).lower()
    labels = _pairs(f.get_str("node-labels"))
    check_node_labels(labels)
    ensure_kubeconfig(kubeconfig, f.get_str("bootstrap-kubeconfig"), name)
    ip = f.get_str("node-ip") or default_advertise_address()
    taints = parse_taints(f.get_str("register-with-taints")) + list(config.get("registerWithTaints") or [])
    healthz = serve_healthz(
        str(config.get("healthzBindAddress", "127.0.0.1")), int(config.get("healthzPort", 10248))
    )
    # One kept connection: a TLS handshake per heartbeat was most of an idle lab's API server load.
    api = rest.from_kubeconfig(str(host_path(kubeconfig)), timeout=5, retry_seconds=0, keep_alive=True)
    agent = NodeAgent(api, name, ip, version, runtime_version(), config)
    pods = StaticPods(str(config.get("staticPodPath") or "/etc/kubernetes/manifests"))
    reporting = Reporting(
        agent,
        lease_every=fl.parse_duration(str(config.get("nodeStatusUpdateFrequency") or "10s")) or 10.0,
        report_every=fl.parse_duration(str(config.get("nodeStatusReportFrequency") or "5m")) or 300.0,
    )
    log.info("kubelet stand-in v%s starting: node %s (%s), runtime %s", version, name, ip, cri)
    next_register = 0.0
    while not stop.is_set():
        states = pods.sync()
        now = time.monotonic()
        if not agent.registered and now >= next_register:
            if config.get("registerNode", True):
                agent.register({**labels}, taints)
            next_register = now + 1.0
        if agent.registered:
            reporting.tick(now, readiness(cri, agent), states)
        stop.wait(1.0)
    pods.detach()
    healthz.shutdown()
    log.info("kubelet stand-in stopped; static pod processes keep running")
    return 0


def main(argv: list[str], version: str) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(levelname).1s%(asctime)s %(process)d %(name)s] %(message)s",
    )
    try:
        f = fl.parse(argv, FLAGS)
        if f.unknown:
            raise fl.FlagError(f"unknown flag: {f.unknown[0].split('=', 1)[0]}")
    except fl.FlagError as exc:
        print(f"E {exc}\nError: failed to parse kubelet flag: {exc}", file=sys.stderr)
        return 1
    if f.get_bool("version"):
        print(f"Kubernetes v{version.removeprefix('v')}")
        return 0
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(f, version, stop)
    except (KubeletError, KubeadmError, fl.FlagError, OSError) as exc:
        log.error("%s", exc)
        print(f"E command failed: {exc}", file=sys.stderr)
        return 1
