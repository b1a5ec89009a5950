"""Cluster PKI as pure x509: CAs, leaves, kubeconfigs and the files each host receives.

No I/O happens here: callers fetch existing files from hosts, pass their bytes to ``generate`` and push
what ``files_for_host`` returns. Keeping the library pure is what lets a plan say exactly which
certificates a run will (re)issue before anything touches a machine.
"""

from __future__ import annotations

from capstan.pki.certkey import CertKey, PrivateKey
from capstan.pki.cluster import ClusterPKI, cluster_ca_pem, files_for_host
from capstan.pki.expiry import ExpiryRow, expiry_report
from capstan.pki.generate import generate, stale_reason
from capstan.pki.inputs import KeyAlgorithm, NodeIdentity, PKIInputs
from capstan.pki.layout import CA_FILES, ETCD_DIR, KUBE_DIR, PKI_DIR, SA_FILES, HostFile, host_slots
from capstan.pki.specs import (
    CA_ETCD,
    CA_FRONT_PROXY,
    CA_KUBERNETES,
    SERVICE_ACCOUNT,
    LeafSpec,
    leaf_specs,
)

__all__ = [
    "CA_ETCD",
    "CA_FILES",
    "CA_FRONT_PROXY",
    "CA_KUBERNETES",
    "ETCD_DIR",
    "KUBE_DIR",
    "PKI_DIR",
    "SA_FILES",
    "SERVICE_ACCOUNT",
    "CertKey",
    "ClusterPKI",
    "ExpiryRow",
    "HostFile",
    "KeyAlgorithm",
    "LeafSpec",
    "NodeIdentity",
    "PKIInputs",
    "PrivateKey",
    "cluster_ca_pem",
    "expiry_report",
    "files_for_host",
    "generate",
    "host_slots",
    "leaf_specs",
    "stale_reason",
]
