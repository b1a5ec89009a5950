"""External etcd on the etcd hosts: the member's environment file, its systemd unit, and etcdctl's env.

Each member serves clients on its own IP and on loopback (so etcdctl and a co-located apiserver work
without knowing the host's address) and advertises its access IP, which is what other hosts can reach.
TLS is on everywhere with client certificates required on both ports; the files come from capstan's
PKI layout under ``/etc/ssl/etcd``: ``member.*`` serves clients, ``peer.*`` talks to other members,
``etcdctl.*`` is the local admin client.

``etcd_env`` is public on its own because membership changes need other values than a fresh cluster:
adding a member renders ``initial_state="existing"`` with the members after ``member add``, and a
restore renders the restored member set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from capstan.errors import RenderError
from capstan.render._env import render_text
from capstan.render.types import RenderedFile, text_file
from capstan.spec.models import Cluster, Host

ETCD_ENV_PATH = "/etc/etcd.env"
ETCDCTL_ENV_PATH = "/etc/etcdctl.env"
ETCD_UNIT_PATH = "/etc/systemd/system/etcd.service"
TLS_DIR = "/etc/ssl/etcd"
CLIENT_PORT = 2379
PEER_PORT = 2380


def etcd_endpoints(cluster: Cluster) -> list[str]:
    """Client URLs of every member, as the apiservers use them."""
    return [f"https://{h.peer_ip}:{CLIENT_PORT}" for h in cluster.etcd_hosts]


def initial_cluster(members: Sequence[Host]) -> str:
    """``name=https://peer-ip:2380,...`` in the order given."""
    return ",".join(f"{h.etcd_name}=https://{h.peer_ip}:{PEER_PORT}" for h in members)


def etcd_env(
    cluster: Cluster,
    host: Host | str,
    initial_state: Literal["new", "existing"] = "new",
    members: Sequence[Host] | None = None,
) -> RenderedFile:
    """``/etc/etcd.env`` for ``host``; ``members`` defaults to every etcd host of the spec.

    ``members`` must include ``host`` itself: etcd refuses to start when its own name is missing from
    ``ETCD_INITIAL_CLUSTER``, so that mistake is reported here instead of on the host.
    """
    node = cluster.host(host) if isinstance(host, str) else host
    if not node.has("etcd"):
        raise RenderError(f"etcd env: host {node.name} does not have the etcd role")
    if initial_state not in ("new", "existing"):
        raise RenderError(f"etcd env: initial state {initial_state!r} is not 'new' or 'existing'")
    chosen = list(cluster.etcd_hosts if members is None else members)
    if node.etcd_name not in {m.etcd_name for m in chosen}:
        raise RenderError(f"etcd env: member {node.etcd_name} ({node.name}) is not in the member list")
    etcd = cluster.spec.etcd
    text = render_text(
        "etcd/etcd.env.j2",
        name=node.etcd_name,
        data_dir=etcd.data_dir,
        bind_ip=node.bind_ip,
        peer_ip=node.peer_ip,
        initial_cluster=initial_cluster(chosen),
        initial_state=initial_state,
        token=f"{cluster.name}-etcd",
        tls_dir=TLS_DIR,
        quota_backend_bytes=etcd.quota_backend_bytes,
        auto_compaction_retention=etcd.auto_compaction_retention,
        snapshot_count=etcd.snapshot_count,
        heartbeat_interval=etcd.heartbeat_interval_ms,
        election_timeout=etcd.election_timeout_ms,
    )
    return text_file(ETCD_ENV_PATH, text)


def etcd_files(cluster: Cluster, host: Host) -> list[RenderedFile]:
    """Everything an etcd member needs besides its certificates and the binary."""
    return [
        etcd_env(cluster, host),
        text_file(ETCD_UNIT_PATH, render_text("etcd/etcd.service.j2")),
        text_file(ETCDCTL_ENV_PATH, render_text("etcd/etcdctl.env.j2", tls_dir=TLS_DIR)),
    ]
