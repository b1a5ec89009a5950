"""Everything one host needs, by absolute path: the entry point the ops layer calls per host.

What a host gets follows from its roles and the endpoint mode (see the package doc for the list). The
result is a plain dict in a stable order, so two renders of the same spec and secrets compare equal
and the ops layer can diff it against what a host has, file by file.
"""

from __future__ import annotations

from capstan.errors import RenderError
from capstan.render import apiserver, etcd, kubeadm, lb, runtime, system
from capstan.render.types import RenderedFile, Secrets, text_file
from capstan.spec.models import Cluster
from capstan.versions import effective_pins


def render_host(
    cluster: Cluster,
    host_name: str,
    secrets: Secrets,
    *,
    ca_cert_hash: str | None = None,
    oidc_ca_pem: str | None = None,
) -> dict[str, RenderedFile]:
    """Every file ``host_name`` needs, keyed by absolute path.

    ``ca_cert_hash`` (``sha256:<hex>``, see :func:`capstan.render.ca_cert_hash`) is required for hosts
    that join (every node but the first control plane). ``oidc_ca_pem`` is required when the spec sets
    ``security.oidc.caFile`` (the API server's authentication config embeds it).
    """
    try:
        host = cluster.host(host_name)
    except KeyError:
        raise RenderError(f"render: no host named {host_name!r} in spec.hosts") from None
    pins = effective_pins(cluster.spec.kubernetes.version)
    files: list[RenderedFile] = system.system_files(cluster)
    if host.has("etcd"):
        files += etcd.etcd_files(cluster, host)
    if host in cluster.nodes:
        files += runtime.node_files(cluster, pins)
        if lb.needs_local_lb(cluster, host):
            files += lb.local_lb_files(cluster)
        if host.has("control-plane"):
            if cluster.spec.control_plane_endpoint.mode == "vip":
                files.append(lb.keepalived_file(cluster, host))
            files += apiserver.control_plane_config_files(cluster, secrets, oidc_ca_pem)
        if host is cluster.control_planes[0]:
            text = kubeadm.init_config_yaml(cluster, host, secrets)
        else:
            text = kubeadm.join_config_yaml(cluster, host, secrets, ca_cert_hash)
        files.append(text_file(kubeadm.KUBEADM_CONFIG_PATH, text, secret=True))
    result: dict[str, RenderedFile] = {}
    for f in files:
        if f.path in result:
            raise RenderError(f"render: {host_name} got two files at {f.path} (a capstan bug)")
        result[f.path] = f
    return result
