"""The command lines capstan builds, run by this machine's real etcd and etcdctl (on loopback only).

A single-member etcd gets keys, a snapshot is taken, ``status_argv`` is parsed by
``parse_snapshot_status``, ``restore_argv`` restores it with a new token into a new data dir, and an
etcd started on that dir serves every key. Skipped when etcd is not installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_etcd_backup_transfer import LocalShell  # the same directory (pytest's rootdir import mode)

from capstan.tasks.etcd.model import SnapshotError, parse_snapshot_status, restore_argv, status_argv
from capstan.tasks.etcd.remote import snapshot_status

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None or shutil.which("etcdctl") is None, reason="needs etcd and etcdctl"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Etcd:
    def __init__(self, data_dir: Path, name: str = "m1") -> None:
        self.client, self.peer = free_port(), free_port()
        self.name, self.data_dir = name, data_dir

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer}"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["etcdctl", f"--endpoints=http://127.0.0.1:{self.client}", "--dial-timeout=2s", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        argv = [
            "etcd",
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls=http://127.0.0.1:{self.client}",
            f"--advertise-client-urls=http://127.0.0.1:{self.client}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
        ]
        proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.ctl("endpoint", "health", check=False).returncode != 0:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "etcd did not become healthy"
            time.sleep(0.2)
        return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.terminate()
        p.wait(timeout=20)


def test_status_and_restore_command_lines_work_with_real_etcd(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    first = Etcd(tmp_path / "data")
    procs.append(first.start(tmp_path / "first.log"))
    for i in range(50):
        first.ctl("put", f"/k/{i:03d}", f"v{i}")
    snap = tmp_path / "snapshot.db"
    first.ctl("snapshot", "save", str(snap))

    status = parse_snapshot_status(
        subprocess.run(status_argv("etcdctl", str(snap)), capture_output=True, text=True, check=True).stdout,
        str(snap),
    )
    assert status.revision >= 51 and status.total_keys >= 50

    again = Etcd(tmp_path / "restored")
    argv = restore_argv(
        "etcdctl",
        str(snap),
        name=again.name,
        initial_cluster=f"{again.name}={again.peer_url}",
        token="t-etcd-restore-x",
        peer=again.peer_url,
        data_dir=str(again.data_dir),
    )
    subprocess.run(argv, capture_output=True, check=True, timeout=60)
    procs.append(again.start(tmp_path / "again.log"))
    out = json.loads(again.ctl("get", "/k/", "--prefix", "--keys-only", "-w", "json").stdout)
    assert out["count"] == 50
    header = json.loads(again.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"]
    assert (
        header["cluster_id"]
        != json.loads(first.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"][
            "cluster_id"
        ]
    )  # the new token made a new cluster


def test_status_of_a_truncated_snapshot_is_refused(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    one = Etcd(tmp_path / "data")
    procs.append(one.start(tmp_path / "one.log"))
    one.ctl("put", "/a", "b")
    snap = tmp_path / "snapshot.db"
    one.ctl("snapshot", "save", str(snap))
    cut = tmp_path / "cut.db"
    cut.write_bytes(snap.read_bytes()[:4096])
    with pytest.raises(SnapshotError, match=r"^local: .*cut\.db: snapshot status failed"):
        snapshot_status(LocalShell(), "etcdctl", str(cut))
    with pytest.raises(SnapshotError, match=r"^local: .*absent\.db: snapshot status failed: stat "):
        snapshot_status(LocalShell(), "etcdctl", str(tmp_path / "absent.db"))
    assert snapshot_status(LocalShell(), "etcdctl", str(snap)).total_keys >= 1
