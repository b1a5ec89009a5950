"""How nodes reach the apiservers: a node-local balancer (haproxy or nginx) or a keepalived VIP.

``local-lb``: every node (control planes included) runs a TCP balancer on 127.0.0.1:<localLbPort> with
every control plane as a backend, so one endpoint serves the whole cluster. It has its own port so it can
run beside an apiserver bound to 0.0.0.0:<apiserverPort>, and so a joining control plane, whose own
apiserver is not up yet, reaches the API through it (kubeadm talks to ``controlPlaneEndpoint`` after
discovery). The balancer runs from capstan's own unit,
``kube-apiserver-lb.service``, with its config in ``/etc/kube-lb``: the distribution's haproxy or
nginx package brings its own unit and config file, which may serve something else on that host or be
rewritten by a package upgrade; keeping ours separate means neither can take down the node's way to the
API. haproxy health-checks ``/readyz`` over TLS; nginx (open-source) only has passive checks.

``vip``: keepalived on the control planes, with the distribution's keepalived.service and its standard
config path. The first control plane has the highest priority; a control plane whose apiserver stops
answering ``/livez`` drops out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from capstan.errors import RenderError
from capstan.render._checks import check_interface
from capstan.render._env import render_text
from capstan.render.types import RenderedFile, text_file
from capstan.spec.models import Cluster, Host

LB_UNIT = "kube-apiserver-lb.service"
LB_DIR = "/etc/kube-lb"
KEEPALIVED_PATH = "/etc/keepalived/keepalived.conf"
_LB_CONFIG_NAME = {"haproxy": "haproxy.cfg", "nginx": "nginx.conf"}


@dataclass(frozen=True)
class Backend:
    """One apiserver behind the node-local balancer."""

    name: str
    address: str
    port: int


def lb_backends(cluster: Cluster) -> list[Backend]:
    """Every control plane at its access IP and the apiserver port, in spec order."""
    port = cluster.spec.kubernetes.apiserver_port
    return [Backend(h.name, h.peer_ip, port) for h in cluster.control_planes]


def needs_local_lb(cluster: Cluster, host: Host) -> bool:
    """Every Kubernetes node in local-lb mode (etcd-only hosts run no kubelet and need none)."""
    if cluster.spec.control_plane_endpoint.mode != "local-lb":
        return False
    return host.has("control-plane") or host.has("worker")


def local_lb_files(cluster: Cluster) -> list[RenderedFile]:
    """Config and unit of the node-local balancer (the same on every node that runs one)."""
    kind = cluster.spec.control_plane_endpoint.local_lb
    name = _LB_CONFIG_NAME[kind]
    config = f"{LB_DIR}/{name}"
    text = render_text(
        f"lb/{name}.j2", port=cluster.spec.control_plane_endpoint.local_lb_port, backends=lb_backends(cluster)
    )
    return [
        text_file(config, text),
        text_file(f"/etc/systemd/system/{LB_UNIT}", render_text(f"lb/{kind}.service.j2", config=config)),
    ]


def keepalived_priority(index: int) -> int:
    """150 for the first control plane, 10 less for each next one, never below 1."""
    return max(1, 150 - 10 * index)


def keepalived_file(cluster: Cluster, host: Host) -> RenderedFile:
    """keepalived.conf for one control plane in vip mode."""
    cpe = cluster.spec.control_plane_endpoint
    check_interface(cpe.vip.interface, "spec.controlPlaneEndpoint.vip.interface")
    try:
        vip = str(ipaddress.IPv4Address(cpe.address or ""))
    except ValueError:
        raise RenderError(
            f"spec.controlPlaneEndpoint.address: a VIP must be an IPv4 address, not {cpe.address!r}"
        ) from None
    cps = cluster.control_planes
    text = render_text(
        "lb/keepalived.conf.j2",
        name=host.name,
        vip=vip,
        apiserver_port=cluster.spec.kubernetes.apiserver_port,
        interface=cpe.vip.interface,
        router_id=cpe.vip.router_id,
        priority=keepalived_priority(cps.index(host)),
        src_ip=host.bind_ip,
        peers=[h.peer_ip for h in cps if h is not host],
    )
    return text_file(KEEPALIVED_PATH, text)
