"""scale-cluster's pieces: which hosts are new (pure), membership read from the cluster, the join token
and the readiness wait; importing this package registers the latter two phases."""

from capstan.tasks.scale import ready, token

__all__ = ["ready", "token"]
