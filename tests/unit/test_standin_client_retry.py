"""The stand-ins' API client rides out a dropped connection only when asked to (kubeadm's calls).

A loopback TCP relay in front of the in-process API server drops the first connection it accepts
(what a client sees while haproxy's backend restarts) and relays every later one. With
``retry_seconds`` the call succeeds on the second connection; without, it fails with status 0 at
once; a real error answer (404) is never retried.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_standin_apiserver_support import Api, Pki, make_pki

from capstan.lab.standins.common.client import ApiError, KubeClient


class DropFirst:
    """Accepts on 127.0.0.1; closes the first ``drops`` connections, relays the rest to ``port``."""

    def __init__(self, port: int, drops: int = 1) -> None:
        self.target = port
        self.drops = drops
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops:
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    server = Api(make_pki(tmp_path))
    yield server
    server.close()


def client(api: Api, pki: Pki, port: int, retry: float) -> KubeClient:
    admin = pki.client("kubernetes-admin", "system:masters")
    return KubeClient(f"https://127.0.0.1:{port}", api.context(admin), timeout=5, retry_seconds=retry)


def test_a_dropped_connection_is_retried_within_the_budget(api: Api) -> None:
    relay = DropFirst(api.port)
    try:
        found = client(api, api.pki, relay.port, retry=30).get("/api/v1/namespaces/kube-system")
    finally:
        relay.close()
    assert found["metadata"]["name"] == "kube-system"
    assert relay.accepted == 2


def test_without_a_budget_a_dropped_connection_fails_at_once_with_status_0(api: Api) -> None:
    relay = DropFirst(api.port)
    try:
        with pytest.raises(ApiError) as failed:
            client(api, api.pki, relay.port, retry=0).get("/api/v1/namespaces/kube-system")
    finally:
        relay.close()
    assert failed.value.status == 0 and relay.accepted == 1


def test_an_error_answer_is_not_retried(api: Api) -> None:
    relay = DropFirst(api.port, drops=0)
    try:
        with pytest.raises(ApiError) as failed:
            client(api, api.pki, relay.port, retry=30).get("/api/v1/namespaces/nowhere")
    finally:
        relay.close()
    assert failed.value.status == 404 and relay.accepted == 1


class Cuttable(DropFirst):
    """A relay that can cut every connection it carries (a server restart, seen from the client)."""

    def __init__(self, port: int) -> None:
        self.carried: list[socket.socket] = []
        super().__init__(port, drops=0)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:  # type: ignore[override]
        self.carried.append(src)
        DropFirst._pump(src, dst)

    def cut(self) -> None:
        for s in self.carried:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def keeping(api: Api, port: int) -> KubeClient:
    admin = api.pki.client("kubernetes-admin", "system:masters")
    return KubeClient(f"https://127.0.0.1:{port}", api.context(admin), timeout=5, keep_alive=True)


def test_keep_alive_reuses_one_connection_and_the_default_does_not(api: Api) -> None:
    relay = DropFirst(api.port, drops=0)
    try:
        kept = keeping(api, relay.port)
        for _ in range(5):
            assert kept.get("/api/v1/namespaces/kube-system")["metadata"]["name"] == "kube-system"
        assert relay.accepted == 1
        fresh = client(api, api.pki, relay.port, retry=0)
        for _ in range(3):
            fresh.get("/api/v1/namespaces/kube-system")
        assert relay.accepted == 1 + 3
    finally:
        relay.close()


def test_a_kept_connection_cut_meanwhile_is_replaced_without_an_error(api: Api) -> None:
    relay = Cuttable(api.port)
    try:
        kept = keeping(api, relay.port)
        kept.get("/api/v1/namespaces/kube-system")
        relay.cut()  # the kept connection is dead now; the client does not know yet
        made = kept.post("/api/v1/namespaces", {"metadata": {"name": "after-the-cut"}})
        assert made["metadata"]["name"] == "after-the-cut"
        assert relay.accepted == 2
        assert kept.get("/api/v1/namespaces/after-the-cut")["metadata"]["name"] == "after-the-cut"
        assert relay.accepted == 2  # the new connection is kept in turn
    finally:
        relay.close()
