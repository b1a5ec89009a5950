"""Membership as the cluster sees it: the API's Node list and etcd's member list.

Both are read through hosts that must be reachable anyway (the first control plane holds the admin
credentials and the CA; an etcd member answers ``member list``), never through the hosts being added or
the existing hosts that need no change.
"""

from __future__ import annotations

import httpx2
from lightkube import ApiError
from lightkube.resources.core_v1 import Node

from capstan.errors import CapstanError, CommandFailed, TransportError
from capstan.kube import KubeError
from capstan.kube.access import read
from capstan.tasks.create import _kube
from capstan.tasks.etcd.model import etcdctl_argv
from capstan.tasks.scale.model import EtcdMember, parse_member_list
from capstan.tasks.session import Session

MEMBER_LIST_TIMEOUT = 30.0


def registered_nodes(session: Session) -> set[str]:
    """The names of every Node the API knows (admin credentials read from the first control plane)."""
    access = _kube.admin_access(session)
    try:
        return read(
            access,
            lambda c: {n.metadata.name for n in c.list(Node) if n.metadata is not None and n.metadata.name},
        )
    except (httpx2.HTTPError, ApiError) as exc:
        raise KubeError(f"API {access.server}: cannot list Nodes: {type(exc).__name__}: {exc}") from None


def etcd_members(session: Session, candidates: list[str]) -> list[EtcdMember]:
    """``member list`` from the first of ``candidates`` (existing members) that answers."""
    tried: list[str] = []
    for name in candidates:
        try:
            res = session.transport(name).run(
                etcdctl_argv("member", "list", "-w", "json"),
                sudo=True,
                check=False,
                timeout=MEMBER_LIST_TIMEOUT,
            )
        except (TransportError, CommandFailed) as exc:
            tried.append(f"{name}: {exc}")
            continue
        if res.exit_code != 0:
            tried.append(f"{name}: etcdctl member list exited {res.exit_code}: {res.stderr.strip()[:200]}")
            continue
        return parse_member_list(res.stdout, name)
    raise CapstanError("cannot read the etcd member list from any etcd host: " + "; ".join(tried))
