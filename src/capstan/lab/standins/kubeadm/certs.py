"""The certs and kubeconfig phases: use what capstan placed, create only what is missing.

As real kubeadm: an existing CA is used as is; an existing leaf must be signed by its CA (and the
apiserver certificate must cover every name clients use) or the phase fails; a missing leaf is issued
from the CA key, and a missing CA key with a missing leaf is an error (external CA mode). Existing
kubeconfigs are kept when they trust the cluster CA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from capstan.lab.standins.kubeadm import kubeconfig, pkiutil
from capstan.lab.standins.kubeadm.base import (
    ADMIN_CONF,
    CONTROLLER_MANAGER_CONF,
    KUBE_DIR,
    KUBELET_CONF,
    SCHEDULER_CONF,
    SUPER_ADMIN_CONF,
    KubeadmError,
    path,
    say,
    warn,
    write_file,
)
from capstan.lab.standins.kubeadm.config import NodeSetup


@dataclass(frozen=True)
class LeafDef:
    name: str
    ca: str
    cn: str
    orgs: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    sans: Callable[[NodeSetup], tuple[str, ...]] = lambda _n: ()


@dataclass(frozen=True)
class KubeconfigDef:
    file: str
    cn: str
    orgs: tuple[str, ...]
    local: bool  # points at this node's apiserver rather than the controlPlaneEndpoint


def apiserver_sans(node: NodeSetup) -> tuple[str, ...]:
    domain = node.cluster["networking"]["dnsDomain"]
    names = [node.name, "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names += [f"kubernetes.default.svc.{domain}", node.service_ip(), node.advertise]
    endpoint = str(node.cluster.get("controlPlaneEndpoint") or "")
    if endpoint:
        names.append(urlsplit("//" + endpoint).hostname or endpoint)
    names += [str(s) for s in (node.cluster.get("apiServer") or {}).get("certSANs") or []]
    return tuple(dict.fromkeys(names))


CAS = {"ca": "kubernetes", "front-proxy-ca": "front-proxy-ca"}
LEAVES = (
    LeafDef("apiserver", "ca", "kube-apiserver", server=True, sans=apiserver_sans),
    LeafDef(
        "apiserver-kubelet-client",
        "ca",
        "kube-apiserver-kubelet-client",
        ("kubeadm:cluster-admins",),
        client=True,
    ),
    LeafDef("front-proxy-client", "front-proxy-ca", "front-proxy-client", client=True),
)


def kubeconfig_defs(node_name: str, init: bool) -> list[KubeconfigDef]:
    defs = [
        KubeconfigDef(ADMIN_CONF, "kubernetes-admin", ("kubeadm:cluster-admins",), False),
        KubeconfigDef(CONTROLLER_MANAGER_CONF, "system:kube-controller-manager", (), True),
        KubeconfigDef(SCHEDULER_CONF, "system:kube-scheduler", (), True),
        KubeconfigDef(KUBELET_CONF, f"system:node:{node_name}", ("system:nodes",), False),
    ]
    if init:
        defs.insert(1, KubeconfigDef(SUPER_ADMIN_CONF, "kubernetes-super-admin", ("system:masters",), False))
    return defs


def _files(node: NodeSetup, base: str) -> tuple[str, str]:
    return f"{node.pki_dir}/{base}.crt", f"{node.pki_dir}/{base}.key"


def load_ca(node: NodeSetup, name: str = "ca", need_key: bool = True) -> pkiutil.Issued | None:
    """The CA from disk; None when its key is absent (external CA) and ``need_key`` is False."""
    crt, key = _files(node, name)
    if not path(crt).exists():
        raise KubeadmError(f"couldn't load the {name} certificate authority from {crt}: file does not exist")
    cert = pkiutil.load_cert(path(crt).read_bytes())
    if not path(key).exists():
        if need_key:
            raise KubeadmError(
                f"couldn't load the {name} certificate authority key from {key}: file does "
                "not exist (external CA mode cannot issue certificates)"
            )
        return None
    return pkiutil.Issued(cert, pkiutil.load_key(path(key).read_bytes()))


def _ensure_ca(node: NodeSetup, name: str) -> None:
    crt, key = _files(node, name)
    if path(crt).exists():
        say(f"[certs] Using existing {name} certificate authority")
        return
    if path(key).exists():
        raise KubeadmError(f"certificate authority {name}: {key} exists but {crt} does not")
    days = pkiutil.duration_days(str(node.cluster.get("caCertificateValidityPeriod", "")), 3650)
    ca = pkiutil.make_ca(CAS[name], node.algorithm, days)
    write_file(crt, ca.cert_pem())
    write_file(key, ca.key_pem(), 0o600)
    say(f'[certs] Generating "{name}" certificate and key')


def _check_existing(node: NodeSetup, leaf: LeafDef, ca_cert: bytes) -> None:
    crt, _ = _files(node, leaf.name)
    cert = pkiutil.load_cert(path(crt).read_bytes())
    if not pkiutil.signed_by(cert, pkiutil.load_cert(ca_cert)):
        raise KubeadmError(f"[certs] certificate {leaf.name} is not signed by corresponding CA", "certs")
    missing = [n for n in leaf.sans(node) if n not in pkiutil.sans_of(cert)]
    if missing:
        raise KubeadmError(
            f"[certs] certificate {leaf.name} is invalid: it is not valid for {', '.join(missing)} "
            f"(existing file {crt})",
            "certs",
        )
    say(f"[certs] Using existing {leaf.name} certificate and key on disk")


def ensure_certs(node: NodeSetup) -> None:
    """The certs phase of init (and of a control-plane join after the shared CAs are in place)."""
    for name in CAS:
        _ensure_ca(node, name)
    say(f'[certs] Using certificateDir folder "{node.pki_dir}"')
    for leaf in LEAVES:
        crt, key = _files(node, leaf.name)
        ca_crt = path(_files(node, leaf.ca)[0]).read_bytes()
        if path(crt).exists() and path(key).exists():
            _check_existing(node, leaf, ca_crt)
            continue
        ca = load_ca(node, leaf.ca)
        assert ca is not None
        days = pkiutil.duration_days(str(node.cluster.get("certificateValidityPeriod", "")), 365)
        issued = pkiutil.issue(
            ca,
            leaf.cn,
            orgs=leaf.orgs,
            sans=leaf.sans(node),
            server=leaf.server,
            client=leaf.client,
            algorithm=node.algorithm,
            days=days,
        )
        write_file(crt, issued.cert_pem())
        write_file(key, issued.key_pem(), 0o600)
        say(f'[certs] Generating "{leaf.name}" certificate and key')
    _ensure_sa(node)


def _ensure_sa(node: NodeSetup) -> None:
    key, pub = f"{node.pki_dir}/sa.key", f"{node.pki_dir}/sa.pub"
    if path(key).exists():
        say('[certs] Using the existing "sa" key')
        return
    private = pkiutil.new_key(node.algorithm)
    write_file(key, pkiutil.key_pem(private), 0o600)
    write_file(
        pub,
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    say('[certs] Generating "sa" key and public key')


def ensure_kubeconfigs(node: NodeSetup, init: bool, control_plane: bool = True) -> None:
    """The kubeconfig phase: keep existing files that trust the CA, write the missing ones."""
    ca_pem = path(f"{node.pki_dir}/ca.crt").read_bytes()
    say(f'[kubeconfig] Using kubeconfig folder "{KUBE_DIR}"')
    for kc in kubeconfig_defs(node.name, init):
        if not control_plane and kc.file != KUBELET_CONF:
            continue
        server = node.local_url if kc.local else node.endpoint_url
        target = path(kc.file)
        if target.exists():
            have_server, have_ca = kubeconfig.server_and_ca(target.read_bytes())
            if not have_ca or pkiutil.load_cert(have_ca) != pkiutil.load_cert(ca_pem):
                raise KubeadmError(
                    f'a kubeconfig file "{kc.file}" exists already but has got the wrong CA cert',
                    "kubeconfig",
                )
            if have_server != server:
                warn(
                    f'[kubeconfig] WARNING: a kubeconfig file "{kc.file}" exists already but has an '
                    f"unexpected API Server URL: expected: {server}, got: {have_server}"
                )
            say(f'[kubeconfig] Using existing kubeconfig file: "{kc.file}"')
            continue
        ca = load_ca(node)
        assert ca is not None
        cred = pkiutil.issue(
            ca,
            kc.cn,
            orgs=kc.orgs,
            client=True,
            algorithm=node.algorithm,
            days=pkiutil.duration_days(str(node.cluster.get("certificateValidityPeriod", "")), 365),
        )
        text = kubeconfig.render(
            str(node.cluster.get("clusterName", "kubernetes")),
            server,
            ca_pem,
            kc.cn,
            cred.cert_pem(),
            cred.key_pem(),
        )
        write_file(kc.file, text, 0o600)
        say(f'[kubeconfig] Writing "{kc.file.rsplit("/", 1)[-1]}" kubeconfig file')
