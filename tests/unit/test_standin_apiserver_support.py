"""Shared helpers for the API stand-in tests: a throwaway PKI and an in-process HTTPS API server.

The server is the real TLS front end and request layer on ``MemoryStorage`` (etcd is exercised in
``test_standin_apiserver_etcd.py``). Imported by the other ``test_standin_apiserver*`` modules.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capstan.lab.standins.apiserver.api import App
from capstan.lab.standins.apiserver.bootstrap import bootstrap
from capstan.lab.standins.apiserver.registry import Registry
from capstan.lab.standins.apiserver.server import APIServer, server_context
from capstan.lab.standins.apiserver.storage import MemoryStorage
from capstan.lab.standins.common.client import KubeClient
from capstan.lab.standins.common.kubeconfig import load_cert_chain
from capstan.lab.standins.common.pki import Pem, issue, make_ca


@dataclass
class Pki:
    dir: Path
    ca: Pem
    other_ca: Pem

    def write(self, name: str, pem: Pem) -> tuple[str, str]:
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert.write_bytes(pem.cert)
        key.write_bytes(pem.key)
        return str(cert), str(key)

    def client(self, cn: str, *orgs: str, other: bool = False) -> Pem:
        return issue(self.other_ca if other else self.ca, cn, orgs=orgs)


def make_pki(tmp: Path) -> Pki:
    pki = Pki(tmp, make_ca("kubernetes"), make_ca("someone-else"))
    (tmp / "ca.crt").write_bytes(pki.ca.cert)
    (tmp / "ca.key").write_bytes(pki.ca.key)
    pki.write("apiserver", issue(pki.ca, "kube-apiserver", sans=("127.0.0.1", "localhost"), server=True))
    return pki


class Api:
    """An in-process API server on 127.0.0.1 with ``MemoryStorage``."""

    def __init__(self, pki: Pki, **app_kw: Any) -> None:
        self.pki = pki
        self.storage = MemoryStorage()
        self.registry = Registry(self.storage)
        bootstrap(self.registry, "127.0.0.1", 6443)
        self.app = App(self.registry, version="1.36.4", **app_kw)
        ctx = server_context(
            str(pki.dir / "apiserver.crt"), str(pki.dir / "apiserver.key"), str(pki.dir / "ca.crt")
        )
        self.server = APIServer(("127.0.0.1", 0), self.app, ctx)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def context(self, cred: Pem | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pki.ca.cert.decode())
        if cred is not None:
            load_cert_chain(ctx, cred.cert, cred.key)
        return ctx

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        cred: Pem | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(cred), timeout=10)
        hdrs = dict(headers or {})
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = content_type
        try:
            conn.request(method, path, body=payload, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode()

    def client(self, cred: Pem) -> KubeClient:
        return KubeClient(f"https://127.0.0.1:{self.port}", self.context(cred))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def node_obj(name: str, ready: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastHeartbeatTime": "now"}
            ],
            "addresses": [{"type": "InternalIP", "address": "10.250.0.11"}],
            "nodeInfo": {"kubeletVersion": "v1.36.4"},
        },
    }


def pod_obj(name: str, labels: dict[str, str] | None = None, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def running(api: Api, cred: Pem, ns: str, name: str, ready: bool = True) -> None:
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    code, body = api.call(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{name}/status",
        {"status": status},
        cred,
        content_type="application/merge-patch+json",
    )
    assert code == 200, body


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def token_secret(token_id: str, secret: str, **extra: str) -> dict[str, Any]:
    """A bootstrap-token Secret as kubeadm creates it."""
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true", **extra}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{token_id}"},
        "data": {k: b64(v) for k, v in data.items()},
    }
