"""x509 helpers of the kubeadm stand-in: load, verify, issue, and the CA public-key pin.

Only long-standing ``cryptography`` APIs are used: hosts run Debian's python3-cryptography 38, where
``not_valid_after_utc`` and ``verify_directly_issued_by`` do not exist yet.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return key_pem(self.key)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def load_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("unsupported private key type (want RSA or ECDSA)")
    return key


def not_after(cert: x509.Certificate) -> datetime:
    aware = getattr(cert, "not_valid_after_utc", None)
    if isinstance(aware, datetime):
        return aware
    naive: datetime = cert.not_valid_after
    return naive.replace(tzinfo=UTC)


def new_key(algorithm: str) -> PrivateKey:
    if algorithm.startswith("ECDSA"):
        return ec.generate_private_key(ec.SECP384R1() if algorithm == "ECDSA-P384" else ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm.split("-")[1]))


def spki_hash(cert: x509.Certificate) -> str:
    """kubeadm's CA pin: ``sha256:<hex>`` of the DER SubjectPublicKeyInfo of the CA certificate."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca``'s key made ``cert``'s signature (and the issuer name matches)."""
    if cert.issuer != ca.subject or cert.signature_hash_algorithm is None:
        return False
    public = ca.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(
                cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
            )
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = {str(n) for n in ext.get_values_for_type(x509.DNSName)}
    return names | {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def subject_of(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else "", tuple(str(o.value) for o in orgs))


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _general_names(sans: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for san in sans:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            out.append(x509.DNSName(san))
    return out


def make_ca(cn: str, algorithm: str, days: int) -> Issued:
    key = new_key(algorithm)
    now = datetime.now(UTC) - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    sans: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    algorithm: str = "RSA-2048",
    days: int = 365,
) -> Issued:
    """A leaf signed by ``ca`` with kubeadm's key usages (digitalSignature, keyEncipherment)."""
    key = new_key(algorithm)
    now = datetime.now(UTC) - BACKDATE
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(min(now + timedelta(days=days), not_after(ca.cert)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def reissue(ca: Issued, old: x509.Certificate, algorithm: str, days: int) -> Issued:
    """Same subject, SANs and usages as ``old``, a fresh key and validity (``kubeadm certs renew``)."""
    cn, orgs = subject_of(old)
    try:
        eku = set(old.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        eku = set()
    return issue(
        ca,
        cn,
        orgs=orgs,
        sans=tuple(sorted(sans_of(old))),
        server=ExtendedKeyUsageOID.SERVER_AUTH in eku,
        client=ExtendedKeyUsageOID.CLIENT_AUTH in eku,
        algorithm=algorithm,
        days=days,
    )


def duration_days(text: str, default: int) -> int:
    """Go duration (``8760h0m0s``) in whole days, at least 1."""
    hours = 0.0
    number = ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
            continue
        hours += float(number or 0) * {"h": 1.0, "m": 1 / 60, "s": 1 / 3600}.get(ch, 0.0)
        number = ""
    return max(1, int(hours // 24)) if hours else default
