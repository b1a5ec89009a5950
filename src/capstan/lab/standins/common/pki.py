"""Small certificate helpers shared by the stand-ins (and their tests).

Why here: a real kube-controller-manager, kube-scheduler and kubelet generate a self-signed serving
certificate when none is configured, and the controller-manager signs kubelet client certificates
with the cluster CA. The stand-ins do the same with ``cryptography`` (Debian's python3-cryptography,
38.x, so only long-standing APIs are used). Tests use ``make_ca``/``issue`` to build throwaway PKIs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key, PEM encoded."""

    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _sans(names: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def make_ca(cn: str, days: int = 365) -> Pem:
    """A self-signed CA (EC P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC) - timedelta(minutes=5)
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
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _build(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    sans: tuple[str, ...],
    server: bool,
    client: bool,
    days: int,
) -> x509.CertificateBuilder:
    now = datetime.now(UTC) - timedelta(minutes=5)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(sans)), critical=False)
    return builder


def issue(
    ca: Pem,
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    sans: tuple[str, ...] = (),
    server: bool = False,
    client: bool = True,
    days: int = 365,
) -> Pem:
    """A leaf certificate signed by ``ca``; subject O= entries become Kubernetes groups."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("only EC and RSA CA keys are supported by the stand-in helpers")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _build(
        _name(cn, orgs),
        ca_cert.subject,
        key.public_key(),
        sans=sans,
        server=server,
        client=client,
        days=days,
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def self_signed(cn: str, sans: tuple[str, ...] = (), days: int = 365) -> Pem:
    """A self-signed serving certificate, as components create when given no --tls-cert-file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn)
    builder = _build(name, name, key.public_key(), sans=sans, server=True, client=False, days=days)
    cert = builder.sign(key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
