"""Kubelet TLS bootstrap: from ``bootstrap-kubelet.conf`` (a bootstrap token) to ``kubelet.conf``.

As the real kubelet: a new ECDSA P-256 key, a CSR for ``CN=system:node:<name>, O=system:nodes`` with
signer ``kubernetes.io/kube-apiserver-client-kubelet`` posted with the bootstrap token, then wait for
the controller-manager to approve and sign it. The certificate and key go to
``/var/lib/kubelet/pki/kubelet-client-current.pem`` and ``kubelet.conf`` points at that file. Used when
``kubeadm join`` runs on a node where nobody placed kubelet.conf beforehand.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from capstan.lab.standins import host_path
from capstan.lab.standins.kubeadm import rest
from capstan.lab.standins.kubeadm.rest import Api, RestError

log = logging.getLogger("kubelet")
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CERT_FILE = "/var/lib/kubelet/pki/kubelet-client-current.pem"
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


class BootstrapError(Exception):
    """The CSR was denied, failed, or not signed before the deadline."""


def csr_for(node_name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
        ]
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, request.public_bytes(serialization.Encoding.PEM)


def request_certificate(api: Api, node_name: str, deadline: float) -> bytes:
    """Post a CSR and wait for its certificate; returns PEM of certificate then key."""
    key, request = csr_for(node_name)
    name = "node-csr-" + hashlib.sha256(request).hexdigest()[:20]
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(request).decode(),
            "signerName": SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }
    api.post(CSR_PATH, body)
    log.info("posted CSR %s for system:node:%s; waiting for it to be approved and signed", name, node_name)
    while time.monotonic() < deadline:
        try:
            csr: Any = api.get(f"{CSR_PATH}/{name}")
        except RestError as exc:
            log.warning("cannot read CSR %s: %s", name, exc)
            csr = {}
        status = csr.get("status") or {} if isinstance(csr, dict) else {}
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Denied", "Failed"):
                raise BootstrapError(f"CSR {name} was {cond['type'].lower()}: {cond.get('message', '')}")
        if status.get("certificate"):
            key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return base64.b64decode(status["certificate"]) + key_pem
        time.sleep(1.0)
    raise BootstrapError(f"CSR {name} was not signed in time (is the controller-manager running?)")


def bootstrap(bootstrap_kubeconfig: str, kubeconfig: str, node_name: str, timeout: float = 300.0) -> None:
    """Write ``kubeconfig`` from a signed client certificate obtained with the bootstrap kubeconfig."""
    source = host_path(bootstrap_kubeconfig)
    api = rest.from_kubeconfig(str(source))
    pem = request_certificate(api, node_name, time.monotonic() + timeout)
    cert_file = host_path(CERT_FILE)
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(pem)
    cert_file.chmod(0o600)
    doc = yaml.safe_load(source.read_text())
    cluster = dict(doc["clusters"][0])
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster["cluster"]}],
        "contexts": [
            {
                "name": "default-context",
                "context": {"cluster": "default-cluster", "namespace": "default", "user": "default-auth"},
            }
        ],
        "current-context": "default-context",
        "preferences": {},
        "users": [
            {"name": "default-auth", "user": {"client-certificate": CERT_FILE, "client-key": CERT_FILE}}
        ],
    }
    target = host_path(kubeconfig)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(yaml.safe_dump(out, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(target)
    log.info("TLS bootstrap done: wrote %s", kubeconfig)
