"""kube-apiserver stand-in: flags as kubeadm's static pod manifest passes them, then serve.

Why it refuses so much: a real kube-apiserver does not start without its serving certificate, client
CA, etcd servers and etcd client certificate, service-account issuer and signing key; a stand-in that
started anyway would let a wrong manifest look healthy. Flags it does not model are logged and
ignored, so a newer kubeadm's extra flags do not stop it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import ssl
import sys
import threading
from types import FrameType

import yaml

from ..common import flags as fl
from . import audit, encryption
from .api import App
from .bootstrap import bootstrap_until_done
from .etcd import EtcdStorage, client_context
from .registry import Registry
from .server import APIServer, server_context

log = logging.getLogger("kube-apiserver")

_STRINGS = (
    "advertise-address", "audit-log-path", "audit-policy-file", "admission-control-config-file",
    "client-ca-file", "enable-admission-plugins", "disable-admission-plugins", "encryption-provider-config",
    "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-servers", "kubelet-client-certificate",
    "kubelet-client-key", "kubelet-preferred-address-types", "proxy-client-cert-file",
    "proxy-client-key-file",
    "requestheader-allowed-names", "requestheader-client-ca-file", "requestheader-extra-headers-prefix",
    "requestheader-group-headers", "requestheader-username-headers", "service-account-issuer",
    "service-account-key-file", "service-account-signing-key-file", "service-cluster-ip-range",
    "service-node-port-range", "tls-cert-file", "tls-private-key-file", "tls-cipher-suites",
    "tls-min-version",
    "feature-gates", "runtime-config", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize",
    "event-ttl", "endpoint-reconciler-type", "apiserver-count", "v", "storage-backend", "api-audiences",
    "default-not-ready-toleration-seconds", "default-unreachable-toleration-seconds", "oidc-issuer-url",
    "oidc-client-id", "request-timeout", "max-requests-inflight", "max-mutating-requests-inflight",
)  # fmt: skip
_BOOLS = (
    "allow-privileged",
    "profiling",
    "enable-aggregator-routing",
    "service-account-lookup",
    "version",
    "help",
)
FLAGS = (
    *(fl.Flag(n) for n in _STRINGS),
    *(fl.Flag(n, boolean=True) for n in _BOOLS),
    fl.Flag("anonymous-auth", "true", boolean=True),
    fl.Flag("enable-bootstrap-token-auth", "false", boolean=True),
    fl.Flag("bind-address", "0.0.0.0"),
    fl.Flag("secure-port", "6443"),
    fl.Flag("authorization-mode", "AlwaysAllow"),
    fl.Flag("etcd-prefix", "/registry"),
)
_MODES = {"AlwaysAllow", "AlwaysDeny", "Node", "RBAC"}


class ConfigError(Exception):
    """The flags do not describe a server that could start."""


def _readable(f: fl.Flags, name: str) -> str:
    path = f.get_str(name)
    if not path:
        raise ConfigError(f"--{name} is required")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"--{name}={path}: file does not exist or is not readable")
    return path


def _validate(f: fl.Flags) -> None:
    for name in ("tls-cert-file", "tls-private-key-file", "client-ca-file"):
        _readable(f, name)
    urls = f.get_list("etcd-servers")
    if not urls:
        raise ConfigError("--etcd-servers must be specified")
    if any(u.startswith("https://") for u in urls):
        for name in ("etcd-cafile", "etcd-certfile", "etcd-keyfile"):
            _readable(f, name)
    if not f.get_str("service-account-issuer"):
        raise ConfigError("service-account-issuer is a required flag")
    _readable(f, "service-account-signing-key-file")
    modes = set(f.get_list("authorization-mode"))
    if not modes or modes - _MODES:
        raise ConfigError(
            f"--authorization-mode={f.get_str('authorization-mode')}: only {sorted(_MODES)} are supported"
        )
    for name in ("bind-address", "advertise-address"):
        if f.get_str(name):
            try:
                ipaddress.ip_address(f.get_str(name))
            except ValueError:
                raise ConfigError(f"--{name}={f.get_str(name)}: not an IP address") from None
    port = f.get_int("secure-port")
    if not 0 < port < 65536:
        raise ConfigError(f"--secure-port={port}: must be between 1 and 65535")
    if f.get_str("admission-control-config-file"):
        path = _readable(f, "admission-control-config-file")
        try:
            with open(path) as fh:
                doc = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--admission-control-config-file={path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "AdmissionConfiguration":
            raise ConfigError(f"--admission-control-config-file={path}: kind must be AdmissionConfiguration")


def _service_range(f: fl.Flags) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    raw = (f.get_list("service-cluster-ip-range") or ["10.0.0.0/24"])[0]
    try:
        return ipaddress.ip_network(raw)
    except ValueError:
        raise ConfigError(f"--service-cluster-ip-range={raw}: not a CIDR") from None


def build(f: fl.Flags, version: str) -> tuple[APIServer, Registry, str, int]:
    """Everything but the serving loop; ConfigError for anything that would stop a real server."""
    _validate(f)
    try:
        tls = server_context(
            f.get_str("tls-cert-file"), f.get_str("tls-private-key-file"), f.get_str("client-ca-file")
        )
        urls = f.get_list("etcd-servers")
        etcd_tls: ssl.SSLContext | None = None
        if any(u.startswith("https://") for u in urls):
            etcd_tls = client_context(
                f.get_str("etcd-cafile"), f.get_str("etcd-certfile"), f.get_str("etcd-keyfile")
            )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the TLS material: {exc}") from None
    try:
        storage = EtcdStorage(urls, etcd_tls)
        enc = (
            encryption.load(f.get_str("encryption-provider-config"))
            if f.get_str("encryption-provider-config")
            else None
        )
        log_ = (
            audit.AuditLog(f.get_str("audit-log-path"), f.get_str("audit-policy-file"))
            if f.get_str("audit-log-path")
            else None
        )
    except (ValueError, encryption.EncryptionConfigError, audit.AuditConfigError) as exc:
        raise ConfigError(str(exc)) from None
    reg = Registry(
        storage,
        f.get_str("etcd-prefix"),
        enc,
        _service_range(f),
        frozenset(f.get_list("disable-admission-plugins")),
    )
    bind, port = f.get_str("bind-address"), f.get_int("secure-port")
    advertise = f.get_str("advertise-address") or ("127.0.0.1" if bind in ("0.0.0.0", "::") else bind)
    app = App(
        reg,
        version=version,
        address=f"{advertise}:{port}",
        authorization_mode=f.get_str("authorization-mode"),
        anonymous_auth=f.get_bool("anonymous-auth"),
        bootstrap_tokens=f.get_bool("enable-bootstrap-token-auth"),
        audit=log_,
    )
    try:
        server = APIServer((bind, port), app, tls)
    except OSError as exc:
        raise ConfigError(f"failed to listen on {bind}:{port}: {exc}") from None
    return server, reg, advertise, port


def main(argv: list[str], version: str) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(levelname).1s%(asctime)s %(process)d %(name)s] %(message)s",
    )
    try:
        f = fl.parse(argv, FLAGS)
        if f.get_bool("version"):
            print(f"Kubernetes v{version}")
            return 0
        if f.get_bool("help"):
            print("kube-apiserver (capstan lab stand-in) flags: " + " ".join(f"--{x.name}" for x in FLAGS))
            return 0
        for arg in f.unknown:
            log.warning("flag %s is not modelled by the stand-in and is ignored", arg.split("=", 1)[0])
        server, reg, advertise, port = build(f, version)
    except (fl.FlagError, ConfigError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=bootstrap_until_done, args=(reg, advertise, port, stop), daemon=True).start()
    serving = threading.Thread(target=server.serve_forever, name="https", daemon=True)
    serving.start()
    log.info("kube-apiserver stand-in v%s serving on https://%s:%d", version, *server.server_address[:2])
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0
