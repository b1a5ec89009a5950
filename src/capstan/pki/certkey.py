"""Keys, certificates and the two ways to make a certificate: self-signed CA or CA-signed leaf.

Everything here is pure: no files, no clock (``now`` is always passed in) so that tests can move time
forward and so that a dry run produces the same decisions as a real one.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from capstan.errors import PKIError
from capstan.pki.inputs import KeyAlgorithm, is_ip

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# Clocks on the hosts may lag the machine running capstan; a certificate that is "not yet valid" for a
# few seconds breaks the first handshake of a fresh cluster, so validity starts a little in the past.
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key; the unit that is issued, reused or re-issued."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """PKCS#8, unencrypted: every Kubernetes and etcd component reads it, whatever the key type."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, lower-case hex: stable identity for "was this re-issued?"."""
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def is_ca(self) -> bool:
        return is_ca(self.cert)


@dataclass(frozen=True)
class Subject:
    """Who a certificate names (CN/O) and which names and addresses it is valid for."""

    common_name: str
    organizations: tuple[str, ...] = ()
    sans: tuple[str, ...] = ()

    def name(self) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attrs)


def new_key(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def public_der(key: PrivateKey | PublicKey) -> bytes:
    """The SubjectPublicKeyInfo of a key, used to compare a certificate with a private key."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public_der(key)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def san_entries(values: tuple[str, ...]) -> list[x509.GeneralName]:
    """DNS or IP SAN entries in the given order, duplicates dropped; each value is classified by form."""
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for value in values:
        if value in seen:
            continue
        seen.add(value)
        if is_ip(value):
            out.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            out.append(x509.DNSName(value))
    return out


def cert_sans(cert: x509.Certificate) -> set[str]:
    """A certificate's SANs as plain strings (IPs normalised by ``ipaddress``), empty if it has none."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(ext.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return names


def normalise_san(value: str) -> str:
    return str(ipaddress.ip_address(value)) if is_ip(value) else value


def cert_usages(cert: x509.Certificate) -> set[str]:
    """Extended key usages by short name ("server"/"client"), the only two capstan ever asks for."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "server", ExtendedKeyUsageOID.CLIENT_AUTH: "client"}
    return {names[oid] for oid in ext if oid in names}


def subject_parts(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(CN, sorted O values) of a certificate; a missing CN reads as the empty string."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    cn = str(cns[0].value) if cns else ""
    return cn, tuple(sorted(str(o.value) for o in orgs))


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_usage(*, ca: bool, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        # RSA key exchange (TLS 1.2 RSA kx) encrypts with the leaf key; ECDSA keys never do.
        key_encipherment=rsa_key and not ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def make_ca(common_name: str, algorithm: KeyAlgorithm, now: datetime, days: int) -> CertKey:
    key = new_key(algorithm)
    name = Subject(common_name).name()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True, rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return CertKey(_sign(builder, key), key)


def _authority_key_id(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Prefer the CA's own SKI (so chains built by other tools match); CAs made elsewhere may lack it."""
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public = ca.public_key()
        if not isinstance(public, PublicKey):
            raise PKIError(f"CA {ca.subject.rfc4514_string()} has an unsupported key type") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_leaf(
    subject: Subject,
    *,
    ca: CertKey,
    server: bool,
    client: bool,
    algorithm: KeyAlgorithm,
    now: datetime,
    days: int,
) -> CertKey:
    """Issue a leaf; its lifetime is clipped to the CA's so that no certificate outlives its issuer."""
    key = new_key(algorithm)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    not_after = min(now + timedelta(days=days), ca.not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.name())
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca.cert), critical=False)
    )
    if subject.sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(san_entries(subject.sans)), critical=False
        )
    return CertKey(_sign(builder, ca.key), key)


@functools.lru_cache(maxsize=32)
def _parse_key(data: bytes) -> object:
    """Parsed once per process and key: loading an RSA key checks it (some 40 ms for the 2048-bit
    service-account key here), and every host's PKI is generated from the same CA and SA keys. Key
    objects are immutable; a parse error is raised each time, never cached."""
    return serialization.load_pem_private_key(data, password=None)


def load_cert(data: bytes, where: str) -> x509.Certificate:
    """The first PEM certificate in ``data``; ``where`` (a file path or logical name) goes in the error."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PKIError(f"{where}: not a PEM certificate ({exc})") from None


def load_key(data: bytes, where: str) -> PrivateKey:
    """A PEM private key in any of the encodings kubeadm, openssl or capstan write (PKCS#1/#8, SEC1)."""
    try:
        key = _parse_key(data)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, PrivateKey):
        raise PKIError(f"{where}: unsupported key type {type(key).__name__} (want RSA or ECDSA)")
    return key
