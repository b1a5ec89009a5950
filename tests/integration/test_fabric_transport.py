"""FabricTransport against a real OpenSSH server on 127.0.0.1 (started and stopped by the test).

Needs root (sshd refuses to run otherwise and we log in as root) and /usr/sbin/sshd. Traffic stays
on loopback. Nothing here changes the machine beyond temp files: OS preparation runs as a dry run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from capstan.errors import CommandFailed, ConnectError, HostKeyError, TransportTimeout
from capstan.facts import FactsQuery, gather_facts
from capstan.ops import apply, osprep, osprep_query
from capstan.remote import Err, Ok, fan_out, raise_failures
from capstan.remote.base import Argv, Result
from capstan.remote.fabric import Bastion, FabricTransport

SSHD = "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: sshd runs as root and we log in as root"),
    pytest.mark.skipif(not Path(SSHD).exists(), reason="needs /usr/sbin/sshd (apt install openssh-server)"),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text().split()[1]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class Sshd:
    """One sshd -D on 127.0.0.1:port; can be restarted with another host key on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.client_key = root / "id_ed25519"
        _keygen(self.client_key)
        (root / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        self.host_blob = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, host_key_name: str = "host_a") -> None:
        key = self.root / host_key_name
        if not key.exists():
            _keygen(key)
        self.host_blob = key.with_name(key.name + ".pub").read_text().split()[1]
        config = self.root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {key}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile none\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nUseDNS no\nMaxSessions 10\nAllowTcpForwarding yes\nLogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sshd did not start listening")

    def sessions(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener we started)."""
        return _children(self.proc.pid) if self.proc else []

    def session_tree(self) -> list[int]:
        """The per-connection processes and all their descendants."""
        found, todo = [], list(self.sessions())
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(_children(pid))
        return found

    def drop_connections(self) -> None:
        for pid in self.sessions():
            with contextlib.suppress(ProcessLookupError):  # the session may have ended meanwhile
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.drop_connections()
        finally:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = Sshd(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _transport(sshd: Sshd, tmp_path: Path, **kw: object) -> FabricTransport:
    kw.setdefault("key_filename", sshd.client_key)
    kw.setdefault("known_hosts", tmp_path / "known_hosts")
    kw.setdefault("connect_timeout", 5)
    kw.setdefault("channel_timeout", 5)
    return FabricTransport("127.0.0.1", name="node1", port=sshd.port, **kw)  # type: ignore[arg-type]


def test_run_quotes_argv_and_passes_env_and_stdin(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    try:
        assert t.run(["printf", "%s", "a b; echo $(id) 'q'"]).stdout == "a b; echo $(id) 'q'"
        assert t.run('echo "$GREETING"', env={"GREETING": "hello there"}).stdout == "hello there\n"
        blob = bytes(range(256)) * 512
        out = t.run(["sha256sum"], stdin=blob).stdout.split()[0]
        assert out == __import__("hashlib").sha256(blob).hexdigest()
        assert t.run(["cat"], stdin=b"x" * 10).stdout == "x" * 10
    finally:
        t.close()


def test_command_failed_carries_exit_code_and_stderr_tail(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    with pytest.raises(CommandFailed) as info:
        t.run("echo first >&2; echo boom >&2; exit 3")
    assert info.value.exit_code == 3
    assert info.value.host == "node1"
    assert "boom" in str(info.value) and str(info.value).startswith("node1: ")
    assert t.run("exit 4", check=False) == Result(4, "", "")
    t.close()


def test_put_is_atomic_with_mode_and_owner_and_get_reads_back(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    target = tmp_path / "dir" / "file.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    old_inode = target.stat().st_ino
    data = os.urandom(200_000)
    t.put(str(target), data, mode=0o600, owner="nobody", group="nogroup")
    st = target.stat()
    assert target.read_bytes() == data
    assert st.st_mode & 0o7777 == 0o600
    assert st.st_uid == 65534
    assert st.st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"], "no temp file left"
    assert t.get(str(target)) == data
    with pytest.raises(CommandFailed) as info:
        t.get(str(tmp_path / "missing"))
    assert info.value.exit_code != 0
    with pytest.raises(CommandFailed, match="put"):
        t.put(str(tmp_path / "no" / "such" / "dir" / "f"), b"x")
    t.close()


def test_command_timeout_raises_transport_timeout_and_connection_still_works(
    sshd: Sshd, tmp_path: Path
) -> None:
    t = _transport(sshd, tmp_path)
    t.run(["true"])
    started = time.monotonic()
    with pytest.raises(TransportTimeout, match="node1"):
        t.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 15, "the timeout fired instead of waiting for the command"
    assert t.run(["echo", "still here"]).stdout == "still here\n"
    t.close()


def test_closed_port_is_a_quick_connect_error(tmp_path: Path) -> None:
    port = _free_port()
    t = FabricTransport("127.0.0.1", name="ghost", port=port, known_hosts=tmp_path / "kh", connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(ConnectError, match="ghost"):
        t.run(["true"])
    assert time.monotonic() - started < 10


def test_host_key_recorded_on_first_use_then_a_changed_key_is_refused(
    sshd: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known = tmp_path / "known_hosts"
    with caplog.at_level(logging.INFO, logger="capstan.remote"):
        t = _transport(sshd, tmp_path)
        t.run(["true"])
        t.close()
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_blob}" in known.read_text()
    assert any("recorded host key for node1 (ssh-ed25519 SHA256:" in r.getMessage() for r in caplog.records)
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="capstan.remote"):
        again = _transport(sshd, tmp_path)
        again.run(["true"])
    assert not any("recorded host key" in r.getMessage() for r in caplog.records)
    before = known.read_text()

    sshd.stop()
    sshd.start("host_b")
    with pytest.raises(HostKeyError) as info:
        again.run(["true"])  # the old connection is gone; the reconnect meets the new key
    assert info.value.host == "node1" and "host key changed" in str(info.value)
    with pytest.raises(HostKeyError, match="node1"):
        _transport(sshd, tmp_path).run(["true"])
    assert known.read_text() == before, "a changed key must never be added"


def test_broken_connection_is_reopened_once(
    sshd: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = _transport(sshd, tmp_path)
    t.run(["true"])
    [first] = sshd.sessions()
    sshd.drop_connections()
    with caplog.at_level(logging.INFO, logger="capstan.remote"):
        assert t.run(["echo", "back"]).stdout == "back\n"
    assert any("reconnecting" in r.getMessage() for r in caplog.records)
    assert first not in sshd.sessions()
    t.close()


def test_unresponsive_server_times_out_then_the_next_call_reconnects(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path, channel_timeout=1)
    t.run(["true"])
    frozen = sshd.session_tree()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # like a dead link: TCP stays up, nothing answers
    try:
        with pytest.raises(TransportTimeout, match="node1"):
            t.run(["true"])
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert t.run(["echo", "fresh"]).stdout == "fresh\n"
    t.close()


def test_fan_out_runs_in_parallel_over_one_connection(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    results = fan_out(
        lambda i: t.run(["sh", "-c", 'sleep 0.2; echo "$0"', str(i)]).stdout, range(10), name=str
    )
    assert list(results) == [str(i) for i in range(10)]
    assert raise_failures(results, "echo") == {str(i): f"{i}\n" for i in range(10)}
    assert len(sshd.sessions()) == 1, "all runs shared one SSH connection"
    t.close()


def test_fan_out_keeps_going_past_an_unreachable_host(sshd: Sshd, tmp_path: Path) -> None:
    good = _transport(sshd, tmp_path)
    bad = FabricTransport("127.0.0.1", name="down", port=_free_port(), known_hosts=tmp_path / "kh2")
    results = fan_out(lambda tr: tr.run(["echo", "ok"]).stdout, [bad, good])
    assert isinstance(results["down"], Err) and isinstance(results["down"].error, ConnectError)
    assert results["node1"] == Ok("ok\n")
    good.close()


def test_private_key_from_memory_is_used_and_never_shown(sshd: Sshd, tmp_path: Path) -> None:
    text = sshd.client_key.read_text()
    t = _transport(sshd, tmp_path, key_filename=None, private_key=text)
    assert t.run(["echo", "hi"]).stdout == "hi\n"
    assert "PRIVATE" not in repr(t) and text not in repr(vars(t))
    t.close()
    with pytest.raises(ConnectError, match="in-memory private key") as info:
        _transport(sshd, tmp_path, key_filename=None, private_key="not a key")
    assert "not a key" not in str(info.value)


def test_bastion_jump(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path, bastion=Bastion("127.0.0.1", sshd.port, "root"))
    assert t.run(["echo", "through"]).stdout == "through\n"
    assert "[127.0.0.1]" in (tmp_path / "known_hosts").read_text()
    t.close()


class _Counting:
    """Wraps a transport and counts changing calls, to prove a dry run makes none."""

    def __init__(self, inner: FabricTransport) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def host(self) -> str:
        return self.inner.host

    def run(self, argv: Argv, **kw: object) -> Result:
        self.calls.append(f"run {argv}")
        return self.inner.run(argv, **kw)  # type: ignore[arg-type]

    def put(self, path: str, data: bytes, **kw: object) -> None:
        self.calls.append(f"put {path}")
        self.inner.put(path, data, **kw)  # type: ignore[arg-type]

    def get(self, path: str, **kw: object) -> bytes:
        return self.inner.get(path, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        self.inner.close()


def test_facts_over_ssh_and_osprep_dry_run_changes_nothing(sshd: Sshd, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    query = osprep_query() | FactsQuery(units=("ssh",))
    facts = gather_facts(t, query)
    assert facts.host == "node1" and facts.cpus >= 1 and facts.hostname == socket.gethostname()
    assert sshd.port in facts.listening_ports
    sysctl_file = Path("/etc/sysctl.d/99-capstan.conf")
    existed = sysctl_file.exists()

    counting = _Counting(t)
    ops = osprep(facts, hostname=facts.hostname, runtime_sysctl_prefixes=("net.",))
    result = apply(counting, ops, dry_run=True)  # type: ignore[arg-type]
    assert result.dry_run and counting.calls == []
    assert sysctl_file.exists() == existed
    assert any(str(s).startswith("put /etc/sysctl.d/99-capstan.conf") for s in result.steps) or existed
    assert not any("vm.overcommit_memory" in str(s) and "sysctl -w" in str(s) for s in result.steps)
    t.close()
