"""Build a cluster's PKI, reusing whatever already exists and is still good.

CAs are never replaced implicitly: a CA is the trust root every node and kubeconfig already holds, so a
CA found on the first control plane is reused, and a CA that is half present (certificate without key),
mismatched or expired is an error to be resolved by a person, not papered over with a fresh CA.

Leaves are cheap to replace, so a leaf is kept only when it is provably still right: its key matches,
the current CA signed it, it names the right subject, covers every required SAN and usage, and lives
longer than ``renew_within``. Anything else is re-issued and reported, so a flow can push only those.
A change of ``key_algorithm`` does not by itself re-issue anything; it applies to what is issued next.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization

from capstan.errors import PKIError
from capstan.pki.certkey import (
    CertKey,
    PrivateKey,
    cert_sans,
    cert_usages,
    key_matches,
    load_cert,
    load_key,
    make_ca,
    make_leaf,
    new_key,
    normalise_san,
    public_der,
    signed_by,
    subject_parts,
)
from capstan.pki.certkey import is_ca as cert_is_ca
from capstan.pki.cluster import ClusterPKI
from capstan.pki.inputs import PKIInputs
from capstan.pki.kubeconfig import kubeconfig_credential
from capstan.pki.layout import CA_FILES, SA_FILES, host_slots
from capstan.pki.specs import CA_COMMON_NAMES, SERVICE_ACCOUNT, LeafSpec, leaf_specs

HostFiles = Mapping[str, bytes]


def utc(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime (naive means UTC); the current time when None."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _load_ca(files: HostFiles, name: str, now: datetime) -> CertKey | None:
    crt_path, key_path = CA_FILES[name]
    crt, key = files.get(crt_path), files.get(key_path)
    if crt is None and key is None:
        return None
    if crt is None or key is None:
        missing, present = (crt_path, key_path) if crt is None else (key_path, crt_path)
        raise PKIError(
            f"{missing}: missing while {present} exists; capstan will not replace an existing CA "
            "(restore the file, or remove both to start a new CA)"
        )
    ca = CertKey(load_cert(crt, crt_path), load_key(key, key_path))
    if not key_matches(ca.cert, ca.key):
        raise PKIError(f"{key_path}: private key does not match the certificate in {crt_path}")
    if not cert_is_ca(ca.cert):
        raise PKIError(f"{crt_path}: not a CA certificate (BasicConstraints CA is not true)")
    if ca.not_after <= now:
        raise PKIError(
            f"{crt_path}: CA expired on {ca.not_after:%Y-%m-%d}; rotating a CA is a separate operation"
        )
    return ca


def _load_sa(files: HostFiles) -> PrivateKey | None:
    key_path, pub_path = SA_FILES
    key_pem, pub_pem = files.get(key_path), files.get(pub_path)
    if key_pem is None:
        if pub_pem is not None:
            raise PKIError(f"{key_path}: missing while {pub_path} exists; tokens signed by it would break")
        return None
    key = load_key(key_pem, key_path)
    if pub_pem is not None:
        try:
            pub_der = serialization.load_pem_public_key(pub_pem).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except (ValueError, TypeError) as exc:
            raise PKIError(f"{pub_path}: not a PEM public key ({exc})") from None
        if pub_der != public_der(key):
            raise PKIError(f"{pub_path}: does not match the private key in {key_path}")
    return key


def _existing_leaves(inputs: PKIInputs, hosts: Mapping[str, HostFiles]) -> dict[str, CertKey | str]:
    """Leaves found on the hosts, by logical name; a string is why an existing file cannot be used."""
    found: dict[str, CertKey | str] = {}
    specs = leaf_specs(inputs)
    for node_name, files in hosts.items():
        slots = host_slots(inputs, node_name)
        key_paths = {slot.name: slot.path for slot in slots if slot.part == "key"}
        for slot in slots:
            if slot.name not in specs or slot.path not in files:
                continue
            data = files[slot.path]
            if slot.part == "kubeconfig":
                cred = kubeconfig_credential(data, slot.path)
                found[slot.name] = cred or f"{slot.path} on {node_name} has no embedded client credential"
            elif slot.part == "cert":
                key_path = key_paths[slot.name]
                if key_path not in files:
                    found[slot.name] = f"{key_path} on {node_name} is missing"
                    continue
                try:
                    found[slot.name] = CertKey(
                        load_cert(data, slot.path), load_key(files[key_path], key_path)
                    )
                except PKIError as exc:
                    found[slot.name] = f"unreadable on {node_name}: {exc}"
    return found


def stale_reason(
    ck: CertKey, spec: LeafSpec, ca: CertKey, now: datetime, renew_within: timedelta
) -> str | None:
    """Why an existing leaf must be re-issued, or None when it can be kept as it is."""
    if not key_matches(ck.cert, ck.key):
        return "private key does not match the certificate"
    if ck.cert.issuer != ca.cert.subject or not signed_by(ck.cert, ca.cert):
        return f"not signed by the current {spec.issuer}"
    if cert_is_ca(ck.cert):
        return "is a CA certificate, want a leaf"
    if ck.not_after - now <= renew_within:
        window = f"{renew_within.days} days" if renew_within.days else str(renew_within)
        return f"expires {ck.not_after:%Y-%m-%d} (within {window})"
    if ck.cert.not_valid_before_utc > now + timedelta(minutes=10):
        return f"not valid before {ck.cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
    want_subject = (spec.subject.common_name, tuple(sorted(spec.subject.organizations)))
    have_subject = subject_parts(ck.cert)
    if have_subject != want_subject:
        have, want = have_subject, want_subject
        return f"subject is CN={have[0]} O={list(have[1])}, want CN={want[0]} O={list(want[1])}"
    lacking = [s for s in spec.subject.sans if normalise_san(s) not in cert_sans(ck.cert)]
    if lacking:
        return f"SANs lack {', '.join(lacking)}"
    want_usages = {"server"} if spec.server_auth else set()
    if spec.client_auth:
        want_usages.add("client")
    missing_usages = want_usages - cert_usages(ck.cert)
    if missing_usages:
        return f"extended key usage lacks {', '.join(sorted(u + 'Auth' for u in missing_usages))}"
    return None


def generate(
    inputs: PKIInputs,
    existing: Mapping[str, bytes] | None = None,
    now: datetime | None = None,
    renew_within: timedelta = timedelta(days=30),
    *,
    existing_hosts: Mapping[str, Mapping[str, bytes]] | None = None,
    only: Collection[str] | None = None,
) -> tuple[ClusterPKI, list[str]]:
    """Issue what is missing or stale; return the PKI and the logical names (re)issued, in order.

    ``existing`` maps absolute paths on the first control-plane host (``inputs.first_control_plane()``)
    to their contents; it is the source of the CAs and service-account key. ``existing_hosts`` maps any
    node name to the files fetched from that node, so that per-node leaves elsewhere (etcd member
    certificates, other control planes, kubelet.conf) are kept too; without it those are re-issued.
    ``only`` limits the leaves to those logical names (what one host receives): a create run asks for
    each host's files in turn, and issuing every other host's leaves each time only to drop them cost
    a certificate signature per leaf per host, quadratic in the cluster's size.
    """
    now = utc(now)
    first = inputs.first_control_plane().name
    hosts: dict[str, dict[str, bytes]] = {}
    for node_name, files in (existing_hosts or {}).items():
        if node_name not in inputs.node_names():
            raise PKIError(f"pki: existing files given for {node_name!r}, which is not a node of the cluster")
        hosts[node_name] = dict(files)
    hosts[first] = {**hosts.get(first, {}), **(existing or {})}
    primary = hosts[first]

    issued: list[str] = []
    reasons: dict[str, str] = {}
    cas: dict[str, CertKey] = {}
    for name, common_name in CA_COMMON_NAMES.items():
        ca = _load_ca(primary, name, now)
        if ca is None:
            ca = make_ca(common_name, inputs.key_algorithm, now, inputs.ca_validity_days)
            issued.append(name)
            reasons[name] = "missing"
        cas[name] = ca

    sa_key = _load_sa(primary)
    if sa_key is None:
        # RSA regardless of key_algorithm: RS256 is the one JWT algorithm every token consumer accepts
        # (OIDC discovery clients, cloud workload-identity federation), and the key is generated once.
        sa_key = new_key("rsa-2048")
        issued.append(SERVICE_ACCOUNT)
        reasons[SERVICE_ACCOUNT] = "missing"

    found = _existing_leaves(inputs, hosts)
    leaves: dict[str, CertKey] = {}
    for spec in leaf_specs(inputs).values():
        if only is not None and spec.name not in only:
            continue
        ca = cas[spec.issuer]
        have = found.get(spec.name)
        if isinstance(have, CertKey):
            reason = stale_reason(have, spec, ca, now, renew_within)
            if reason is None:
                leaves[spec.name] = have
                continue
        else:
            reason = have or "missing"
        leaves[spec.name] = make_leaf(
            spec.subject,
            ca=ca,
            server=spec.server_auth,
            client=spec.client_auth,
            algorithm=inputs.key_algorithm,
            now=now,
            days=inputs.leaf_validity_days,
        )
        issued.append(spec.name)
        reasons[spec.name] = reason
    return ClusterPKI(inputs, cas, leaves, sa_key, reasons), issued
