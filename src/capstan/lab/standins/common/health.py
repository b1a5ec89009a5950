"""The health endpoints of component stand-ins (/healthz, /livez, /readyz), over HTTPS or HTTP.

Why HTTPS with a self-signed certificate: the real kube-controller-manager (10257) and kube-scheduler
(10259) serve their health checks that way when given no certificate, and kubeadm's static pod
liveness probes use ``scheme: HTTPS`` against them. The health paths need no authentication, as with
the real components' default --authorization-always-allow-paths.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .kubeconfig import load_cert_chain
from .pki import self_signed

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in HEALTH_PATHS or path.startswith(tuple(p + "/" for p in HEALTH_PATHS)):
            ok = self.server.check()
            code, body = (200, b"ok") if ok else (500, b"unhealthy")
        else:
            code, body = 404, b"404 page not found"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], check: Callable[[], bool], context: ssl.SSLContext | None
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.check = check
        self.context = context
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            self.shutdown_request(tls)


def serving_context(cert_file: str = "", key_file: str = "", name: str = "localhost") -> ssl.SSLContext:
    """The given certificate, or a fresh self-signed one for ``name`` (as the real components do)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    else:
        pem = self_signed(name, ("localhost", "127.0.0.1"))
        load_cert_chain(ctx, pem.cert, pem.key)
    return ctx


def serve_health(
    bind: str, port: int, check: Callable[[], bool] | None = None, context: ssl.SSLContext | None = None
) -> HealthServer:
    """Start serving in a daemon thread; ``check`` decides 200 "ok" or 500. OSError if it cannot bind."""
    server = HealthServer((bind, port), check or (lambda: True), context)
    threading.Thread(target=server.serve_forever, name=f"health-{port}", daemon=True).start()
    return server
