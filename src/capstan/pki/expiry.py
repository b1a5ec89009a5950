"""When does each certificate expire: for ``capstan certs check`` and for deciding on a renewal run.

Works on either an in-memory ``ClusterPKI`` (rows named by logical name) or on files fetched from a host
(rows named by path), so the same report serves "what would we ship" and "what is on the machine now",
including clusters capstan did not build. Kubeconfigs are looked into for their embedded client
certificate, because that certificate expiring is what actually locks an administrator out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from capstan.errors import PKIError
from capstan.pki.certkey import is_ca
from capstan.pki.cluster import ClusterPKI
from capstan.pki.generate import utc
from capstan.pki.kubeconfig import kubeconfig_client_cert_pem

PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class ExpiryRow:
    """One certificate; ``days_left`` is whole days, negative once expired."""

    path: str
    subject: str
    not_after: datetime
    days_left: int
    is_ca: bool


def _certs_in(path: str, data: bytes) -> list[x509.Certificate]:
    """Certificates carried by one file: PEM bundles, or the client cert of a kubeconfig; else none."""
    pem = data if PEM_CERT_MARKER in data else kubeconfig_client_cert_pem(data)
    if pem is None or PEM_CERT_MARKER not in pem:
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PKIError(f"{path}: contains an unreadable certificate ({exc})") from None


def _row(path: str, cert: x509.Certificate, now: datetime) -> ExpiryRow:
    not_after = cert.not_valid_after_utc
    return ExpiryRow(
        path=path,
        subject=cert.subject.rfc4514_string(),
        not_after=not_after,
        days_left=int((not_after - now).total_seconds() // 86400),
        is_ca=is_ca(cert),
    )


def expiry_report(source: ClusterPKI | Mapping[str, bytes], now: datetime | None = None) -> list[ExpiryRow]:
    """Every certificate in ``source``, soonest expiry first (ties by path)."""
    when = utc(now)
    rows: list[ExpiryRow] = []
    if isinstance(source, ClusterPKI):
        for name, ck in source.certificates().items():
            rows.append(_row(name, ck.cert, when))
    else:
        for path, data in source.items():
            rows.extend(_row(path, cert, when) for cert in _certs_in(path, data))
    return sorted(rows, key=lambda r: (r.not_after, r.path))
