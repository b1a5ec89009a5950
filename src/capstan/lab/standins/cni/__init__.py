"""Stand-ins for the CNI release files the lab mirror serves (calico.yaml, kube-flannel.yml, cilium).

Same structure as upstream (our own minimal YAML, not upstream's text): the Namespace where upstream
has one, ServiceAccounts, ClusterRoles and bindings, the ConfigMap and the DaemonSet, with exactly the
keys and env vars capstan's edits act on (calico-node's ``CALICO_IPV4POOL_*`` env and calico-config's
``veth_mtu``/``cni_network_config``; kube-flannel-cfg's ``net-conf.json``/``cni-conf.json``;
cilium-config's cluster-pool, routing, tunnel and MTU keys), so a wrong edit fails as it would on the
real file. No pod of these DaemonSets runs in the lab; the kubelet stand-in writes the CNI config
from the ConfigMap on their behalf (see ``kubelet.network``).

cilium publishes no plain manifest: upstream's file at the pinned URL is a Helm chart (.tgz). The
stand-in at that path is the YAML a ``helm template`` of the chart would give (one stream of objects);
whatever consumes it must treat it as rendered YAML.
"""

from __future__ import annotations

import yaml

from capstan.lab.standins.cni import calico, cilium, flannel

BUILDERS = {"calico": calico.objects, "flannel": flannel.objects, "cilium": cilium.objects}


def manifest(plugin: str, version: str) -> bytes:
    """The release file of ``plugin`` at ``version`` (``calico``, ``flannel`` or ``cilium``)."""
    if plugin not in BUILDERS:
        raise KeyError(f"no CNI stand-in for {plugin!r}; known: {', '.join(BUILDERS)}")
    version = version.removeprefix("v")
    header = f"# capstan lab stand-in for the {plugin} v{version} release manifest (not the upstream file)\n"
    return (header + yaml.safe_dump_all(BUILDERS[plugin](version), sort_keys=False)).encode()
