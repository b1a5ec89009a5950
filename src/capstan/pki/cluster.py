"""The issued PKI of a cluster, and the exact files each host receives from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from capstan.errors import PKIError
from capstan.pki.certkey import CertKey, PrivateKey
from capstan.pki.inputs import PKIInputs
from capstan.pki.kubeconfig import render_kubeconfig
from capstan.pki.layout import FileSlot, HostFile, file_mode, host_slots
from capstan.pki.specs import CA_KUBERNETES, LeafSpec, leaf_specs


@dataclass(frozen=True)
class ClusterPKI:
    """CAs, the service-account key and every leaf, by logical name (see ``specs.py``).

    ``reasons`` says, for each name issued by the ``generate`` call that built this object, why it was
    (re)issued ("missing", "expires 2026-05-01 ...", "SANs lack ..."): the text for a plan or a log line.
    It never contains key material.
    """

    inputs: PKIInputs
    cas: dict[str, CertKey]
    leaves: dict[str, CertKey]
    sa_key: PrivateKey = field(repr=False)
    reasons: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> CertKey:
        found = self.cas.get(name) or self.leaves.get(name)
        if found is None:
            raise PKIError(f"pki: no certificate named {name!r}")
        return found

    def certificates(self) -> dict[str, CertKey]:
        """Every certificate, CAs first, by logical name."""
        return {**self.cas, **self.leaves}

    def spec(self, name: str) -> LeafSpec:
        specs = leaf_specs(self.inputs)
        if name not in specs:
            raise PKIError(f"pki: no leaf certificate named {name!r}")
        return specs[name]

    def sa_key_pem(self) -> bytes:
        return self.sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sa_pub_pem(self) -> bytes:
        return self.sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def kubeconfig(self, name: str) -> str:
        """The kubeconfig YAML for a ``kubeconfig/...`` logical name (e.g. ``kubeconfig/admin@cp1``)."""
        spec = self.spec(name)
        if spec.kubeconfig_server is None:
            raise PKIError(f"pki: {name} is not a kubeconfig credential")
        return render_kubeconfig(
            cluster_name=self.inputs.cluster_name,
            server=spec.kubeconfig_server,
            ca_pem=self.get(spec.issuer).cert_pem(),
            user=spec.kubeconfig_user,
            cred=self.get(name),
        )


def _content(pki: ClusterPKI, slot: FileSlot) -> bytes:
    if slot.part == "cert":
        return pki.get(slot.name).cert_pem()
    if slot.part == "key":
        return pki.get(slot.name).key_pem()
    if slot.part == "kubeconfig":
        return pki.kubeconfig(slot.name).encode()
    if slot.part == "sa-key":
        return pki.sa_key_pem()
    return pki.sa_pub_pem()


def files_for_host(pki: ClusterPKI, node_name: str) -> dict[str, HostFile]:
    """The exact PKI files ``node_name`` receives, by absolute path; nothing another host owns.

    Private keys and kubeconfigs (which embed one) are 0600 and ``secret``; certificates and the
    service-account public key are 0644.
    """
    files: dict[str, HostFile] = {}
    for slot in host_slots(pki.inputs, node_name):
        mode = file_mode(slot.part)
        files[slot.path] = HostFile(_content(pki, slot), mode, secret=mode == 0o600)
    return files


def cluster_ca_pem(pki: ClusterPKI) -> bytes:
    """The cluster CA certificate, e.g. for a kubeadm discovery hash or a user's kubeconfig."""
    return pki.get(CA_KUBERNETES).cert_pem()
