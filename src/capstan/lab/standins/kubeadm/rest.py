"""API clients for kubeadm and the kubelet, on top of the shared ``common.client.KubeClient``.

Beyond a kubeconfig, token discovery needs two more kinds of client: one that does not trust the
server yet (reading cluster-info before the CA is pinned) and one that trusts the discovered CA and
authenticates with the bootstrap token. Callers depend on the small :class:`Api` protocol so unit
tests can pass an in-memory fake.
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol

from capstan.lab.standins.common.client import ApiError, KubeClient
from capstan.lab.standins.common.kubeconfig import KubeconfigError
from capstan.lab.standins.kubeadm.base import KubeadmError

JSON = dict[str, Any]
RestError = ApiError
"""Every API failure: ``status`` is the HTTP code, 0 when the server could not be reached."""

__all__ = ["JSON", "Api", "KubeClient", "RestError", "from_kubeconfig", "insecure", "with_ca"]


class Api(Protocol):
    """What kubeadm and the kubelet need from an API client."""

    def get(self, path: str, /) -> Any: ...

    def post(self, path: str, body: Any, /) -> Any: ...

    def put(self, path: str, body: Any, /) -> Any: ...

    def patch(self, path: str, body: Any, /) -> Any: ...

    def delete(self, path: str, /) -> Any: ...


API_CALL_RETRY_SECONDS = 60.0
"""How long one of kubeadm's API calls rides out an unreachable or restarting API server."""


def insecure(server: str, timeout: float = 10.0) -> KubeClient:
    """No CA and no credentials: only for reading cluster-info before the CA is pinned."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return KubeClient(server, ctx, timeout=timeout)


def with_ca(server: str, ca_pem: bytes, token: str = "", timeout: float = 10.0) -> KubeClient:
    """Trusts only ``ca_pem``; authenticates with a bearer ``token`` when given."""
    return KubeClient(
        server,
        ssl.create_default_context(cadata=ca_pem.decode("ascii")),
        token or None,
        timeout,
        API_CALL_RETRY_SECONDS,
    )


def from_kubeconfig(
    path: str,
    timeout: float = 10.0,
    retry_seconds: float = API_CALL_RETRY_SECONDS,
    keep_alive: bool = False,
) -> KubeClient:
    """A client for kubeadm's calls; the kubelet's loops pass ``retry_seconds=0`` (they poll anyway)
    and ``keep_alive=True`` (they call every few seconds for as long as the node lives)."""
    try:
        return KubeClient.from_kubeconfig(path, timeout, retry_seconds, keep_alive)
    except (KubeconfigError, OSError, ValueError) as exc:
        raise KubeadmError(f"cannot use the kubeconfig {path}: {exc}") from None
