"""Adapters from the cluster spec to the inputs of the pure layers (PKI, rendering).

The PKI and render layers take small dataclasses rather than the spec, so they can be tested alone and
so a change in the spec's shape is absorbed here, in one place.
"""

from __future__ import annotations

from capstan.pki.inputs import NodeIdentity, PKIInputs
from capstan.spec.models import Cluster


def pki_inputs(cluster: Cluster) -> PKIInputs:
    s = cluster.spec
    host, port = cluster.endpoint
    nodes = tuple(
        NodeIdentity(name=h.name, ip=h.bind_ip, access_ip=h.peer_ip, roles=frozenset(h.roles))
        for h in cluster.hosts
    )
    # The etcd-backed CNI datastore is not used (calico runs in KDD mode), so no extra etcd clients.
    return PKIInputs(
        cluster_name=cluster.name,
        cluster_domain=s.kubernetes.cluster_domain,
        service_cidr=str(s.kubernetes.service_cidr),
        nodes=nodes,
        endpoint_host=host,
        endpoint_port=port,
        apiserver_extra_sans=tuple(s.pki.apiserver_extra_sans),
        key_algorithm=s.pki.key_algorithm,
        leaf_validity_days=s.pki.leaf_validity_days,
        ca_validity_days=s.pki.ca_validity_days,
        apiserver_bind_port=s.kubernetes.apiserver_port,
    )
