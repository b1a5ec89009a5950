"""Talking to a cluster's API as its admin: lightkube clients built from a kubeconfig document.

The admin kubeconfig is read from the first control plane (the cluster is the source of truth) and
lives only in memory: it is never written to logs, task parameters or results. ``ApiAccess`` keeps it
out of ``repr``. The server address is explicit because the kubeconfig's own server is the in-cluster
endpoint (127.0.0.1 on each node in local-lb mode), which means nothing on the orchestrator.

TLS is verified against the cluster CA embedded in the kubeconfig; the apiserver's certificate carries
every control plane's addresses, so ``https://<control plane ip>:6443`` verifies as it is. The
environment's proxy settings are ignored (``trust_env=False``): an API on a private address is never
reached through a proxy.

lightkube hands the embedded client key to ``ssl`` through a private temporary file (mode 0600,
deleted when the client is closed); ``ssl`` has no in-memory API for keys.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
import yaml
from lightkube import ApiError, Client
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig, SingleConfig

from capstan.errors import CapstanError

DEFAULT_TIMEOUT = 10.0
READ_RETRY_SECONDS = 60.0
"""How long a read rides out an API that does not answer: as kubeadm's API call timeout, long enough
for an etcd leader election after a member died or an apiserver restart behind the load balancer."""
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")


class KubeError(CapstanError):
    """The cluster's API refused or did not answer what capstan needed from it."""


def parse_kubeconfig(raw: bytes, where: str) -> dict[str, Any]:
    """A kubeconfig document with one cluster and one user, or a KubeError naming ``where``."""
    try:
        doc = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml if built
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict) or not doc.get("clusters") or not doc.get("users"):
        raise KubeError(f"{where}: not a kubeconfig with a cluster and a user")
    return doc


@dataclass(frozen=True)
class ApiAccess:
    """Admin credentials (a kubeconfig document, secret) and the API server URL to use them against."""

    kubeconfig: Mapping[str, Any] = field(repr=False)
    server: str

    def at(self, server: str) -> ApiAccess:
        """The same credentials against another apiserver (e.g. one control plane's own address)."""
        return ApiAccess(self.kubeconfig, server)

    def _config(self) -> SingleConfig:
        doc = copy.deepcopy(dict(self.kubeconfig))
        for entry in doc.get("clusters") or []:
            entry.setdefault("cluster", {})["server"] = self.server
        config = KubeConfig.from_dict(doc).get()
        if config is None:  # pragma: no cover - parse_kubeconfig checked the document
            raise KubeError(f"{self.server}: the admin kubeconfig has no usable context")
        return config

    @contextmanager
    def client(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Client]:
        """A lightkube client for typed reads and server-side apply (closed on exit)."""
        client = Client(
            config=self._config(),
            timeout=httpx2.Timeout(timeout),
            trust_env=False,
            field_manager=FIELD_MANAGER,
        )
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def http(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[httpx2.Client]:
        """A plain HTTPS client with the same TLS and credentials, for /readyz and /version."""
        params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout), trust_env=False)
        http = client_adapter.Client(self._config(), params)
        try:
            yield http
        finally:
            http.close()


FIELD_MANAGER = "capstan"
"""The server-side apply field manager of everything capstan applies."""


def transient(exc: BaseException) -> bool:
    """Whether a failed API call may succeed if repeated: no answer at all (connect or read timeout,
    connection reset) or the server's "not now" (429, 5xx). A 4xx such as 404 or 403 is an answer."""
    if isinstance(exc, ApiError):
        return exc.status.code in TRANSIENT_STATUS
    return isinstance(exc, httpx2.TransportError)


def read(
    access: ApiAccess,
    fn: Callable[[Client], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    budget: float = READ_RETRY_SECONDS,
) -> T:
    """``fn(client)`` for a read, repeated (fresh client, growing pause) while it fails transiently and
    ``budget`` seconds have not passed; any other failure, or the last transient one, is raised as is.

    Why: a flow that reads the cluster right after a control plane or etcd member died (remove-node
    --unreachable, an upgrade after a power cut) meets a few seconds of 503s or timeouts while etcd
    elects a leader; failing the whole flow on the first of them would be wrong. Only reads: a write
    that timed out may have happened, so its caller decides."""
    deadline = time.monotonic() + budget
    pause = 0.5
    while True:
        try:
            with access.client(timeout=timeout) as client:
                return fn(client)
        except (httpx2.HTTPError, ApiError) as exc:
            if not transient(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)  # back-off between attempts, not synchronisation
        pause = min(pause * 2, 5.0)
