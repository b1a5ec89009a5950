"""``FabricTransport``: the only module that imports fabric, paramiko or invoke.

One SSH connection per host, opened on first use and kept for the whole flow (a new connection
costs ~150 ms, a command on a warm one ~15 ms with ``TCP_NODELAY``). Fabric's ``Connection`` opens
it (key, timeouts, bastion via its gateway); commands run on a raw paramiko session channel rather
than through invoke's runner, because capstan needs byte-exact stdin (``put`` streams file content
through it), one deadline covering exec + output, and no reader threads per command.

Timeouts are always set: paramiko otherwise waits an hour on a dead link. A connection that broke
or timed out is closed and re-opened on the next call; a broken connection found when opening a
channel is re-opened once within the same call (the command had not started, so this is safe).

All fabric/paramiko/socket exceptions are translated in ``_translate`` into capstan's tree.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fabric
import paramiko
from paramiko.hostkeys import HostKeyEntry

from capstan.errors import CapstanError, CommandFailed, ConnectError, HostKeyError, TransportTimeout
from capstan.remote.base import Argv, Result, describe_command, failed_argv, put_argv, render_command
from capstan.remote.known_hosts import HostKey, KnownHosts, known_hosts_name

__all__ = ["Bastion", "FabricTransport"]

log = logging.getLogger("capstan.remote")

_BUF = 65536
_POLL = 0.05


@dataclass(frozen=True)
class Bastion:
    """A jump host every connection of this transport goes through (OpenSSH ``ProxyJump``)."""

    address: str
    port: int = 22
    user: str = "root"


class _CommandDeadline(Exception):
    """Internal: the command ran past its deadline (the watchdog closed its channel)."""


class _TofuPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only when the known_hosts file has no key for the host: record it."""

    def __init__(self, store: KnownHosts, label: str) -> None:
        self.store = store
        self.label = label

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.store.verify_or_record(hostname, HostKey(key.get_name(), key.get_base64()), label=self.label)


def _load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key: paramiko.PKey = cls.from_private_key(io.StringIO(text), password=passphrase)
            return key
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("not an ed25519, ECDSA or RSA private key (or wrong passphrase)")


class FabricTransport:
    """A ``Transport`` over SSH to one host. Thread-safe: parallel calls share the connection.

    ``private_key`` is the key text itself (from a credentials block); it is parsed once here and
    never stored as text, logged or put in an error. ``command_timeout`` applies when ``run`` gets
    ``timeout=None``; pass ``None`` for no limit. ``max_sessions`` stays below sshd's default
    ``MaxSessions 10`` so parallel callers queue instead of being refused.
    """

    def __init__(
        self,
        address: str,
        *,
        known_hosts: str | os.PathLike[str],
        name: str | None = None,
        port: int = 22,
        user: str = "root",
        key_filename: str | os.PathLike[str] | None = None,
        private_key: str | None = None,
        passphrase: str | None = None,
        bastion: Bastion | None = None,
        connect_timeout: float = 10.0,
        channel_timeout: float = 15.0,
        banner_timeout: float | None = None,
        auth_timeout: float | None = None,
        command_timeout: float | None = 600.0,
        keepalive: int = 15,
        max_sessions: int = 8,
    ) -> None:
        self._name = name or address
        self._address = address
        self._port = port
        self._user = user
        self._bastion = bastion
        self._known_hosts = KnownHosts(known_hosts)
        self._connect_timeout = connect_timeout
        self._channel_timeout = channel_timeout
        self._banner_timeout = banner_timeout if banner_timeout is not None else connect_timeout
        self._auth_timeout = auth_timeout if auth_timeout is not None else connect_timeout
        self._command_timeout = command_timeout
        self._keepalive = keepalive
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._generation = 0
        try:
            if private_key is not None:
                self._pkey: paramiko.PKey | None = _load_private_key(private_key, passphrase)
            elif key_filename is not None:
                self._pkey = paramiko.PKey.from_path(Path(key_filename), passphrase)
            else:
                self._pkey = None
        except (OSError, ValueError, paramiko.SSHException) as exc:
            source = "the in-memory private key" if private_key is not None else str(key_filename)
            raise ConnectError(self._name, f"cannot load {source}: {type(exc).__name__}") from None

    def __repr__(self) -> str:
        return f"FabricTransport({self._name!r}, {self._user}@{self._address}:{self._port})"

    @property
    def host(self) -> str:
        return self._name

    # -- Transport API -------------------------------------------------------------------------

    def run(
        self,
        argv: Argv,
        *,
        sudo: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> Result:
        command = render_command(argv, sudo=sudo and self._user != "root", env=env)
        code, out, err = self._exec(command, stdin, timeout, argv)
        result = Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        if check and code != 0:
            raise CommandFailed(self._name, failed_argv(argv), code, result.stderr)
        return result

    def put(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
        sudo: bool = False,
    ) -> None:
        argv = put_argv(path, mode=mode, owner=owner, group=group)
        command = render_command(argv, sudo=sudo and self._user != "root")
        code, _, err = self._exec(command, data, None, ["put", path])
        if code != 0:
            raise CommandFailed(self._name, ["put", path], code, err.decode("utf-8", "replace"))

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        argv = ["cat", "--", path]
        command = render_command(argv, sudo=sudo and self._user != "root")
        code, out, err = self._exec(command, None, None, argv)
        if code != 0:
            raise CommandFailed(self._name, argv, code, err.decode("utf-8", "replace"))
        return out

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    # -- connection management -----------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "timeout": self._connect_timeout,
            "banner_timeout": self._banner_timeout,
            "auth_timeout": self._auth_timeout,
            "channel_timeout": self._channel_timeout,
            "look_for_keys": False,
            "allow_agent": False,
        }
        if self._pkey is not None:
            kwargs["pkey"] = self._pkey
        return kwargs

    def _new_connection(self, address: str, port: int, user: str, gateway: Any, label: str) -> Any:
        config = fabric.Config(ssh_config=paramiko.SSHConfig(), lazy=True)
        conn = fabric.Connection(
            address,
            user=user,
            port=port,
            config=config,
            gateway=gateway,
            connect_kwargs=self._connect_kwargs(),
        )
        client: paramiko.SSHClient = conn.client
        hk_name = known_hosts_name(address, port)
        for known in self._known_hosts.lookup(hk_name):
            entry = HostKeyEntry.from_line(f"{hk_name} {known.keytype} {known.blob}")
            if entry is not None and entry.key is not None:
                client.get_host_keys().add(hk_name, known.keytype, entry.key)
        client.set_missing_host_key_policy(_TofuPolicy(self._known_hosts, label))
        return conn

    def _connection(self) -> tuple[Any, int, bool]:
        """The open connection (opening it if needed), its generation, and whether it is new."""
        with self._lock:
            if (
                self._conn is not None
                and self._conn.transport is not None
                and self._conn.transport.is_active()
            ):
                return self._conn, self._generation, False
            if self._conn is not None:
                log.info("connection to %s was lost; reconnecting", self._name)
                self._close_locked()
            gateway = None
            if self._bastion is not None:
                b = self._bastion
                gateway = self._new_connection(b.address, b.port, b.user, None, f"bastion {b.address}")
            conn = self._new_connection(self._address, self._port, self._user, gateway, self._name)
            try:
                conn.open()
            except BaseException as exc:
                _close_quietly(conn)
                raise self._translate(exc, "connect") from exc
            sock = conn.transport.sock
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.transport.set_keepalive(self._keepalive)
            self._conn = conn
            self._generation += 1
            log.debug("connected to %s (%s@%s:%d)", self._name, self._user, self._address, self._port)
            return conn, self._generation, True

    def _drop(self, generation: int) -> None:
        with self._lock:
            if self._generation == generation:
                self._close_locked()

    def _close_locked(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None

    def _open_session(self) -> tuple[paramiko.Channel, int]:
        conn, gen, fresh = self._connection()
        try:
            return conn.transport.open_session(timeout=self._channel_timeout), gen
        except Exception as exc:
            self._drop(gen)
            mapped = self._translate(exc, "channel")
            if fresh or isinstance(mapped, TransportTimeout):
                raise mapped from exc
            log.info("connection to %s broke (%s); reconnecting once", self._name, type(exc).__name__)
        conn, gen, _ = self._connection()
        try:
            return conn.transport.open_session(timeout=self._channel_timeout), gen
        except Exception as exc:
            self._drop(gen)
            raise self._translate(exc, "channel") from exc

    # -- commands ------------------------------------------------------------------------------

    def _exec(
        self, command: str, stdin: bytes | None, timeout: float | None, argv: Argv
    ) -> tuple[int, bytes, bytes]:
        limit = self._command_timeout if timeout is None else timeout
        with self._sessions:
            chan, gen = self._open_session()
            expired = threading.Event()
            watchdog: threading.Timer | None = None
            if limit is not None:
                watchdog = threading.Timer(limit, _expire, (chan, expired))
                watchdog.daemon = True
                watchdog.start()
            try:
                code, out, err = self._talk(chan, command, stdin, expired)
            except Exception as exc:
                if expired.is_set():
                    # The connection may be healthy (a slow command); if the link is dead, the next
                    # channel open times out and drops it then, without killing parallel commands now.
                    what = describe_command(argv, 80)
                    raise TransportTimeout(self._name, f"`{what}` did not finish within {limit:g}s") from None
                if not _alive(chan):
                    self._drop(gen)
                raise self._translate(exc, "command") from exc
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                chan.close()
            return code, out, err

    def _talk(
        self, chan: paramiko.Channel, command: str, stdin: bytes | None, expired: threading.Event
    ) -> tuple[int, bytes, bytes]:
        out, err = bytearray(), bytearray()
        chan.exec_command(command)
        if stdin:
            try:
                chan.sendall(stdin)
            except OSError:
                if not _alive(chan):
                    raise
                # The command exited without reading all of stdin: its exit status tells why.
        if not chan.closed:
            chan.shutdown_write()
        while True:
            if chan.recv_ready():
                out += chan.recv(_BUF)
            elif chan.recv_stderr_ready():
                err += chan.recv_stderr(_BUF)
            elif chan.exit_status_ready():
                break
            else:
                chan.status_event.wait(_POLL)
        if expired.is_set():
            raise _CommandDeadline()
        # Output that raced the exit status: read to EOF, briefly bounded.
        chan.settimeout(5.0)
        try:
            while data := chan.recv(_BUF):
                out += data
            while data := chan.recv_stderr(_BUF):
                err += data
        except TimeoutError:
            pass
        if expired.is_set():
            raise _CommandDeadline()
        code = chan.recv_exit_status()
        if code == -1 and not _alive(chan):
            raise EOFError("connection closed before the command reported its exit status")
        return code, bytes(out), bytes(err)

    # -- the one place fabric/paramiko/socket errors become capstan errors ---------------------

    def _translate(self, exc: BaseException, phase: str) -> CapstanError:
        if isinstance(exc, CapstanError):
            return exc
        where = f"{self._address}:{self._port}"
        if self._bastion is not None:
            where += f" via bastion {self._bastion.address}:{self._bastion.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            offered = HostKey(exc.key.get_name(), exc.key.get_base64())
            expected = HostKey(exc.expected_key.get_name(), exc.expected_key.get_base64())
            name = (
                known_hosts_name(exc.hostname, self._port) if exc.hostname == self._address else exc.hostname
            )
            return HostKeyError(self._name, self._known_hosts.mismatch_message(name, offered, [expected]))
        reason = str(exc) or type(exc).__name__
        if phase == "connect":
            if isinstance(exc, paramiko.AuthenticationException):
                return ConnectError(self._name, f"authentication as {self._user} at {where} failed: {reason}")
            if isinstance(exc, TimeoutError):
                return ConnectError(
                    self._name, f"no SSH answer from {where} within {self._connect_timeout:g}s"
                )
            if isinstance(exc, socket.gaierror):
                return ConnectError(self._name, f"cannot resolve {where}: {reason}")
            return ConnectError(self._name, f"cannot open SSH session to {where}: {reason}")
        if isinstance(exc, TimeoutError) or "timeout" in reason.lower():
            return TransportTimeout(self._name, f"{where} stopped answering ({reason})")
        return ConnectError(self._name, f"connection to {where} lost: {reason}")


def _expire(chan: paramiko.Channel, expired: threading.Event) -> None:
    expired.set()
    chan.close()


def _close_quietly(conn: Any) -> None:
    for c in (conn, getattr(conn, "gateway", None)):
        if c is None or isinstance(c, str):
            continue
        try:
            c.client.close()
            c.close()
        except Exception as exc:  # closing a dead connection must never mask the real error
            log.debug("ignoring error while closing a connection: %s", exc)


def _alive(chan: paramiko.Channel) -> bool:
    transport = chan.get_transport()
    return transport is not None and transport.is_active()
