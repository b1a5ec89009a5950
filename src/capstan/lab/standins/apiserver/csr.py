"""CertificateSigningRequests: the kubelet TLS bootstrap half the controller-manager does.

What the real csrapproving and csrsigning controllers do for kubeadm clusters: a kubelet client CSR
(signer ``kubernetes.io/kube-apiserver-client-kubelet``) asked by a bootstrap token or by the node
itself, for ``O=system:nodes, CN=system:node:<name>`` with client-auth usages, is approved
automatically (SIMPLIFICATION: without the SubjectAccessReview for ``certificatesigningrequests/
nodeclient`` that kubeadm's RBAC binding grants); any approved CSR of a kubernetes.io signer is signed
with --cluster-signing-cert-file/--cluster-signing-key-file for at most --cluster-signing-duration.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..common.client import KubeClient

log = logging.getLogger("kube-controller-manager")
Obj = dict[str, Any]
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNERS = (KUBELET_CLIENT, "kubernetes.io/kubelet-serving", "kubernetes.io/kube-apiserver-client")
_USAGES = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH}


def _condition(csr: Obj, kind: str) -> bool:
    return any(c.get("type") == kind for c in (csr.get("status") or {}).get("conditions") or [])


def _parse(csr: Obj) -> x509.CertificateSigningRequest | None:
    try:
        pem = base64.b64decode((csr.get("spec") or {}).get("request", ""))
        return x509.load_pem_x509_csr(pem)
    except ValueError:
        return None


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def is_node_client(csr: Obj) -> bool:
    """A kubelet client CSR that kubeadm's bindings let the cluster approve on its own."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT:
        return False
    req = _parse(csr)
    if req is None:
        return False
    cns = _attr(req.subject, NameOID.COMMON_NAME)
    if _attr(req.subject, NameOID.ORGANIZATION_NAME) != ["system:nodes"] or len(cns) != 1:
        return False
    if not cns[0].startswith("system:node:"):
        return False
    if set(spec.get("usages") or []) - {"digital signature", "key encipherment", "client auth"}:
        return False
    groups = set(spec.get("groups") or [])
    return "system:bootstrappers" in groups or spec.get("username") == cns[0]


class Signer:
    def __init__(self, cert_file: str, key_file: str, max_duration: float) -> None:
        with open(cert_file, "rb") as fh:
            self.ca = x509.load_pem_x509_certificate(fh.read())
        with open(key_file, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"{key_file}: only RSA and EC signing keys are supported")
        self.key = key
        self.max_duration = max_duration

    def sign(self, csr: Obj) -> bytes | None:
        req = _parse(csr)
        if req is None:
            return None
        spec = csr.get("spec") or {}
        seconds = min(float(spec.get("expirationSeconds") or self.max_duration), self.max_duration)
        now = datetime.now(UTC) - timedelta(minutes=5)
        usages = [_USAGES[u] for u in spec.get("usages") or [] if u in _USAGES]
        builder = (
            x509.CertificateBuilder()
            .subject_name(req.subject)
            .issuer_name(self.ca.subject)
            .public_key(req.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(seconds=seconds))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
            )
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        try:
            sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            if spec.get("signerName") == "kubernetes.io/kubelet-serving":
                builder = builder.add_extension(sans.value, critical=False)
        except x509.ExtensionNotFound:
            pass
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)


def sync(api: KubeClient, signer: Signer | None) -> None:
    for csr in api.items("/apis/certificates.k8s.io/v1/certificatesigningrequests"):
        name = csr["metadata"]["name"]
        path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
        if (
            _condition(csr, "Denied")
            or _condition(csr, "Failed")
            or (csr.get("status") or {}).get("certificate")
        ):
            continue
        if not _condition(csr, "Approved"):
            if not is_node_client(csr):
                continue
            cond = {
                "type": "Approved",
                "status": "True",
                "reason": "AutoApproved",
                "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
            }
            st = csr.setdefault("status", {})
            st["conditions"] = [*(st.get("conditions") or []), cond]
            csr = api.put(path + "/approval", csr)
            log.info("approved CSR %s", name)
        if signer is None or (csr.get("spec") or {}).get("signerName") not in SIGNERS:
            continue
        pem = signer.sign(csr)
        if pem is None:
            continue
        csr.setdefault("status", {})["certificate"] = base64.b64encode(pem).decode()
        api.put(path + "/status", csr)
        log.info("signed CSR %s", name)
