"""Storage in the real etcd, through etcd 3.4's JSON gRPC gateway (``/v3/kv/*``) over mutual TLS.

Why the gateway: it is served on the client port etcd already listens on, speaks plain HTTPS/JSON
(keys and values base64, int64 as strings) and so needs nothing beyond ``http.client``. Every write
is a transaction comparing the key's create or mod revision, which is how the real apiserver gets
optimistic concurrency out of etcd. Endpoints are tried in order; the last one that answered is
tried first next time, so a dead member costs one connection failure, not one per request.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from .storage import KV, KeyExists, RevisionMismatch, StorageError, Unavailable


def _b64(s: str | bytes) -> str:
    raw = s.encode() if isinstance(s, str) else s
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: str) -> str:
    """The etcd range_end that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return _b64(b"\0")
    raw[-1] += 1
    return _b64(bytes(raw))


def _kv(item: dict[str, Any]) -> KV:
    return KV(
        key=base64.b64decode(item["key"]).decode(),
        value=base64.b64decode(item.get("value", "")),
        mod_revision=int(item.get("mod_revision", 0)),
        create_revision=int(item.get("create_revision", 0)),
    )


class _Endpoint:
    def __init__(self, url: str, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--etcd-servers: {url!r} is not an http(s) URL")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 2379
        self.tls = parts.scheme == "https"
        self.context = context

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def client_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    """An SSL context that trusts the etcd CA and presents the apiserver's etcd client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


class EtcdStorage:
    """The ``Storage`` interface on a list of etcd client URLs."""

    def __init__(self, urls: list[str], context: ssl.SSLContext | None, timeout: float = 5.0) -> None:
        if not urls:
            raise ValueError("--etcd-servers: no URL given")
        self._endpoints = [_Endpoint(u, context) for u in urls]
        self._timeout = timeout
        self._preferred = 0
        self._local = threading.local()

    def _conns(self) -> dict[str, http.client.HTTPConnection]:
        conns: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = {}
            self._local.conns = conns
        return conns

    def _post(self, ep: _Endpoint, path: str, body: bytes) -> tuple[int, bytes]:
        conns = self._conns()
        for attempt in (0, 1):
            conn = conns.get(ep.url)
            if conn is None:
                conn = conns[ep.url] = ep.connect(self._timeout)
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                del conns[ep.url]
                if attempt:  # a kept-alive connection may have been closed by etcd: retry once, fresh
                    raise
            except Exception:
                conn.close()
                del conns[ep.url]
                raise
        raise AssertionError("unreachable")

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        errors: list[str] = []
        n = len(self._endpoints)
        for i in range(n):
            idx = (self._preferred + i) % n
            ep = self._endpoints[idx]
            try:
                status, raw = self._post(ep, path, body)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{ep.url}: {exc}")
                continue
            if status == 200:
                self._preferred = idx
                result: dict[str, Any] = json.loads(raw)
                return result
            text = raw.decode(errors="replace")[:300]
            if status >= 500 or status == 503:
                errors.append(f"{ep.url}: HTTP {status} {text}")
                continue
            raise StorageError(f"etcd {ep.url} refused {path}: HTTP {status} {text}")
        raise Unavailable("no etcd endpoint answered: " + "; ".join(errors))

    def get(self, key: str) -> KV | None:
        res = self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = res.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[list[KV], int]:
        res = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return [_kv(i) for i in res.get("kvs") or []], int(res["header"]["revision"])

    def stamp(self, prefix: str) -> tuple[int, int, int]:
        """Keys only, newest first, one returned: etcd still counts them all (``count``)."""
        res = self._call(
            "/v3/kv/range",
            {
                "key": _b64(prefix),
                "range_end": _prefix_end(prefix),
                "keys_only": True,
                "sort_order": "DESCEND",
                "sort_target": "MOD",
                "limit": 1,
            },
        )
        kvs = res.get("kvs") or []
        newest = int(kvs[0].get("mod_revision", 0)) if kvs else 0
        return int(res.get("count", 0)), newest, int(res["header"]["revision"])

    def _txn(self, compare: dict[str, Any], success: dict[str, Any]) -> dict[str, Any]:
        return self._call("/v3/kv/txn", {"compare": [compare], "success": [success], "failure": []})

    def create(self, key: str, value: bytes) -> int:
        cmp = {"target": "CREATE", "key": _b64(key), "create_revision": "0", "result": "EQUAL"}
        res = self._txn(cmp, {"request_put": {"key": _b64(key), "value": _b64(value)}})
        if not res.get("succeeded"):
            raise KeyExists(key)
        return int(res["header"]["revision"])

    def update(self, key: str, value: bytes, mod_revision: int) -> int:
        cmp = {"target": "MOD", "key": _b64(key), "mod_revision": str(mod_revision), "result": "EQUAL"}
        res = self._txn(cmp, {"request_put": {"key": _b64(key), "value": _b64(value)}})
        if not res.get("succeeded"):
            raise RevisionMismatch(key)
        return int(res["header"]["revision"])

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        if mod_revision is None:
            res = self._call("/v3/kv/deleterange", {"key": _b64(key)})
            return int(res.get("deleted", 0)) > 0
        cmp = {"target": "MOD", "key": _b64(key), "mod_revision": str(mod_revision), "result": "EQUAL"}
        res = self._txn(cmp, {"request_delete_range": {"key": _b64(key)}})
        if not res.get("succeeded"):
            raise RevisionMismatch(key)
        return True

    def healthy(self) -> bool:
        """A read of a key that never exists: answers only when a member serves linearizable reads."""
        try:
            self._call("/v3/kv/range", {"key": _b64("/health-probe-of-the-apiserver-stand-in")})
        except StorageError:
            return False
        return True
