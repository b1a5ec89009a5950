"""A tiny typed Kubernetes API client for the stand-ins (controller-manager, scheduler, kubelet).

JSON over ``http.client`` with the kubeconfig's TLS settings; one connection per call by default (a
fresh connection makes an API server restart or a failover through haproxy a non-event). Every
non-2xx answer raises ``ApiError`` with the status code and the decoded body; a connection failure
raises ``ApiError`` with status 0.

``keep_alive=True`` (the controller-manager and scheduler, which poll their own node's API server
every second or two) reuses connections: a TLS handshake per call was most of an idle lab API
server's CPU. A call on a reused connection that the server has closed meanwhile (a restart, its
idle timeout) is sent again once on a fresh connection.

``retry_seconds`` > 0 makes a call ride out a server that is restarting or briefly unreachable
(no answer, or 503), polling every half second until that budget is spent: kubeadm does the same
around its API calls (``KubernetesAPICallTimeout``), and the lab's upgrades restart API servers
behind haproxy while kubeadm is still talking to them. A create retried after a lost answer may
meet 409; the callers that create (kubeadm's create-or-update) already treat 409 as "exists".
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from .kubeconfig import Kubeconfig
from .kubeconfig import load as load_kubeconfig

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
RETRY_STATUSES = frozenset({0, 503})
"""No answer at all, or Service Unavailable: the server is (re)starting or lost its backend."""


class ApiError(Exception):
    """A non-2xx answer (``status`` > 0) or no answer at all (``status`` == 0)."""

    def __init__(self, status: int, body: Any, where: str = "") -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        super().__init__(f"{where}: HTTP {status} {self.reason}: {message}".strip(": "))


class KubeClient:
    def __init__(
        self,
        server: str,
        context: ssl.SSLContext,
        token: str | None = None,
        timeout: float = 10.0,
        retry_seconds: float = 0.0,
        keep_alive: bool = False,
    ) -> None:
        parts = urlsplit(server)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"API server URL must be https://host[:port], not {server!r}")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.base = parts.path.rstrip("/")
        self.context = context
        self.token = token
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.keep_alive = keep_alive
        self._idle: list[http.client.HTTPSConnection] = []
        self._idle_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(
        cls, path: str, timeout: float = 10.0, retry_seconds: float = 0.0, keep_alive: bool = False
    ) -> KubeClient:
        return cls.from_config(load_kubeconfig(path), timeout, retry_seconds, keep_alive)

    @classmethod
    def from_config(
        cls, config: Kubeconfig, timeout: float = 10.0, retry_seconds: float = 0.0, keep_alive: bool = False
    ) -> KubeClient:
        return cls(config.server, config.ssl_context(), config.token, timeout, retry_seconds, keep_alive)

    def _connection(self) -> tuple[http.client.HTTPSConnection, bool]:
        """A kept connection (and True) if one is idle, else a new one."""
        with self._idle_lock:
            if self._idle:
                return self._idle.pop(), True
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=self.timeout, context=self.context
        ), False

    def _exchange(
        self, method: str, url: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; on a kept connection the server closed meanwhile, once more on a new one."""
        while True:
            conn, reused = self._connection()
            try:
                conn.request(method, url, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except TimeoutError:
                conn.close()  # the server may have acted on it: not sent again
                raise
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused:
                    continue
                raise
            if self.keep_alive and not resp.will_close:
                with self._idle_lock:
                    self._idle.append(conn)
            else:
                conn.close()
            return resp.status, raw

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        """One call (retried per ``retry_seconds``); the decoded JSON (or text) body of a 2xx answer."""
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                return self._once(method, path, body, content_type, params)
            except ApiError as exc:
                if exc.status not in RETRY_STATUSES or time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)

    def _once(
        self, method: str, path: str, body: Any, content_type: str, params: dict[str, str] | None
    ) -> Any:
        url = self.base + path + (("?" + urlencode(params)) if params else "")
        headers = {"Accept": "application/json"}
        payload: bytes | None = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        where = f"{method} {path}"
        try:
            code, raw = self._exchange(method, url, payload, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(0, str(exc), where) from None
        try:
            decoded: Any = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if not 200 <= code < 300:
            raise ApiError(code, decoded, where)
        return decoded

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, obj: Any, params: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, obj, params=params)

    def put(self, path: str, obj: Any) -> Any:
        return self.request("PUT", path, obj)

    def patch(
        self, path: str, obj: Any, content_type: str = MERGE_PATCH, params: dict[str, str] | None = None
    ) -> Any:
        return self.request("PATCH", path, obj, content_type, params)

    def delete(self, path: str, options: Obj | None = None) -> Any:
        return self.request("DELETE", path, options)

    def items(self, path: str, params: dict[str, str] | None = None) -> list[Obj]:
        """The ``items`` of a list call."""
        found = self.get(path, params) or {}
        return list(found.get("items") or [])
