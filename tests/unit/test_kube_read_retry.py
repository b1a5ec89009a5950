"""``kube.access.read``: a read rides out an API that answers 503 or not at all, and nothing else.

A real HTTP server on loopback plays the API: it answers the first requests with 503 (as an apiserver
whose etcd is electing a leader), then with a NodeList; or always 404; or always 503.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.resources.core_v1 import Node

from capstan.kube.access import ApiAccess, read, transient


class Api:
    """Answers GET /api/v1/nodes with ``fail_status`` for the first ``failures`` requests, then 200."""

    def __init__(self, failures: int, fail_status: int = 503) -> None:
        self.failures = failures
        self.fail_status = fail_status
        self.requests = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests += 1
                if api.requests <= api.failures:
                    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "code": api.fail_status, "message": "etcd is unavailable"}  # fmt: skip
                    self._send(api.fail_status, status)
                    return
                nodes = {"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                         "items": [{"metadata": {"name": "cp1"}}]}  # fmt: skip
                self._send(200, nodes)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def access(self) -> ApiAccess:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": self.url}}],
            "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
        return ApiAccess(doc, self.url)


@pytest.fixture
def make_api() -> Iterator[Any]:
    made: list[Api] = []

    def make(failures: int, fail_status: int = 503) -> Api:
        made.append(Api(failures, fail_status))
        return made[-1]

    yield make
    for api in made:
        api.server.shutdown()
        api.server.server_close()


def names(client: Any) -> list[str]:
    return [n.metadata.name for n in client.list(Node)]


def test_503s_are_ridden_out_until_the_api_answers(make_api: Any) -> None:
    api = make_api(failures=2)
    assert read(api.access(), names, timeout=5.0, budget=30.0) == ["cp1"]
    assert api.requests == 3


def test_a_404_is_an_answer_and_is_not_repeated(make_api: Any) -> None:
    api = make_api(failures=100, fail_status=404)
    with pytest.raises(ApiError) as caught:
        read(api.access(), names, timeout=5.0, budget=30.0)
    assert caught.value.status.code == 404 and not transient(caught.value)
    assert api.requests == 1


def test_the_last_transient_failure_is_raised_when_the_budget_is_spent(make_api: Any) -> None:
    api = make_api(failures=10_000)
    with pytest.raises(ApiError) as caught:
        read(api.access(), names, timeout=5.0, budget=1.0)
    assert caught.value.status.code == 503 and transient(caught.value)
    assert 1 < api.requests < 10  # pauses of 0.5 s and more between attempts, not a busy loop


def test_no_answer_is_transient_and_a_bug_is_not() -> None:
    import httpx2

    assert transient(httpx2.ReadTimeout("read timed out"))
    assert transient(httpx2.ConnectError("connection refused"))
    assert not transient(ValueError("a bug in the caller"))
