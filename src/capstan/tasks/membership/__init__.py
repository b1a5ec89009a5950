"""Membership changes shared by the lifecycle flows that grow or shrink a cluster.

``etcd_servers``: the ``etcd-servers`` host phase (every apiserver's ``--etcd-servers`` follows the
spec's etcd hosts); ``etcd_add``: the ``etcd-add`` host phase (new etcd members, one at a time).
Importing this package registers both phase implementations.
"""

from capstan.tasks.membership import etcd_add, etcd_servers

__all__ = ["etcd_add", "etcd_servers"]
