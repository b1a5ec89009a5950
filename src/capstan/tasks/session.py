"""A flow run's working state: the spec, one SSH connection per host, and cluster-wide material.

Prefect task parameters must stay small, serialisable and free of secrets, so tasks receive only a
phase id, a host name and the run key; everything else (connections, the CA, generated secrets) lives in
a ``Session`` found by that key in this process. A retried flow run builds a fresh session: nothing
here is an authority, the cluster is (the CA and secrets are re-read from the first control plane).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from capstan.errors import CapstanError
from capstan.remote.base import Argv, Result, Transport
from capstan.spec.models import Cluster, Host

if TYPE_CHECKING:
    from capstan.facts import FactsQuery, HostFacts
    from capstan.plan.phases import Phase
    from capstan.remote.fabric import FabricTransport

TransportFactory = Callable[[Cluster, Host], Transport]


def default_known_hosts(cluster: Cluster) -> Path:
    configured = cluster.spec.ssh.known_hosts_path
    if configured:
        return Path(configured).expanduser()
    return Path("~/.capstan").expanduser() / cluster.name / "known_hosts"


@dataclass(frozen=True)
class PrivateKey:
    """Key material from a credentials block, held in memory for one flow run.

    Never a task parameter or result (tasks find it through the session by run key), never written to
    disk, and its repr says nothing: a session or a key printed by mistake leaks nothing.
    """

    text: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "PrivateKey(<from a credentials block>)"


def fabric_transport(
    cluster: Cluster,
    host: Host,
    *,
    private_key: str | None = None,
    passphrase: str | None = None,
) -> FabricTransport:
    """The SSH transport for ``host`` as the spec describes it (per-host user/port/bastion override)."""
    from capstan.remote.fabric import Bastion, FabricTransport

    ssh = cluster.spec.ssh
    bastion_spec = host.bastion or ssh.bastion
    bastion = (
        Bastion(address=bastion_spec.address, port=bastion_spec.port, user=bastion_spec.user)
        if bastion_spec
        else None
    )
    key_file = Path(ssh.key_path).expanduser() if ssh.key_path and private_key is None else None
    known = default_known_hosts(cluster)
    known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return FabricTransport(
        host.address,
        name=host.name,
        known_hosts=known,
        port=host.port or ssh.port,
        user=host.user or ssh.user,
        key_filename=key_file,
        private_key=private_key,
        passphrase=passphrase,
        bastion=bastion,
        connect_timeout=ssh.connect_timeout,
        command_timeout=ssh.command_timeout,
    )


class Tracked:
    """A host's transport that counts what is sent to it: the generation of the host's facts.

    Every ``run`` and ``put`` may change the host, so each one moves the host's generation on before
    it starts (a command cut off half-way still counts); ``get`` only reads. Facts gathered at one
    generation are reused only while the generation holds (``capstan.tasks.hostfacts``). Commands
    known to change nothing go through ``Session.reader`` instead, so probes keep the facts valid.
    """

    def __init__(self, inner: Transport, moved: Callable[[], None]) -> None:
        self.inner = inner
        self._moved = moved

    @property
    def host(self) -> str:
        return self.inner.host

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
        self._moved()
        return self.inner.run(argv, sudo=sudo, timeout=timeout, env=env, stdin=stdin, check=check)

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
        self._moved()
        self.inner.put(path, data, mode=mode, owner=owner, group=group, sudo=sudo)

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        return self.inner.get(path, sudo=sudo)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class CachedFacts:
    """Facts of one host as gathered at one generation of it (see ``Tracked``)."""

    generation: int
    query: FactsQuery
    facts: HostFacts


@dataclass
class Session:
    """Per-run state shared by the tasks of one flow run (in one process)."""

    key: str
    cluster: Cluster
    factory: TransportFactory = field(default=fabric_transport)
    dry_run: bool = False
    # From a credentials block: used by the default (Fabric) factory instead of spec.ssh.keyPath.
    private_key: PrivateKey | None = field(default=None, repr=False)
    _transports: dict[str, Transport] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _named_locks: dict[str, threading.Lock] = field(default_factory=dict)
    memo: dict[str, object] = field(default_factory=dict)
    # The flow's phases in order, so a gather can also fetch what later phases will ask (hostfacts).
    phases: tuple[Phase, ...] = ()
    _tracked: dict[str, Tracked] = field(default_factory=dict)
    _generations: dict[str, int] = field(default_factory=dict)
    facts_cache: dict[str, CachedFacts] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        try:
            return self.cluster.host(name)
        except KeyError:
            raise CapstanError(f"{name}: not a host of cluster {self.cluster.name}") from None

    def transport(self, name: str) -> Transport:
        """The host's connection; each command sent through it counts as a possible change."""
        with self._lock:
            tracked = self._tracked.get(name)
            if tracked is None:
                tracked = Tracked(self._raw(name), lambda: self._move(name))
                self._tracked[name] = tracked
            return tracked

    def reader(self, name: str) -> Transport:
        """The same connection for commands that change nothing on the host (probes, reads, gathers)."""
        with self._lock:
            return self._raw(name)

    def generation(self, name: str) -> int:
        """How many possibly-changing commands were sent to ``name`` in this run so far."""
        with self._lock:
            return self._generations.get(name, 0)

    def _move(self, name: str) -> None:
        with self._lock:
            self._generations[name] = self._generations.get(name, 0) + 1

    def _raw(self, name: str) -> Transport:
        t = self._transports.get(name)
        if t is None:
            t = self._new_transport(self.host(name))
            self._transports[name] = t
        return t

    def _new_transport(self, host: Host) -> Transport:
        key = self.private_key
        if key is not None and self.factory is fabric_transport:
            return fabric_transport(self.cluster, host, private_key=key.text, passphrase=key.passphrase)
        return self.factory(self.cluster, host)

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Serialise one-time cluster-wide work (creating the CA, the secrets) across host tasks."""
        with self._lock:
            lock = self._named_locks.setdefault(what, threading.Lock())
        with lock:
            yield

    def once(self, what: str, compute: Callable[[], object]) -> object:
        """``compute()`` the first time ``what`` is asked for in this run; the cached value after."""
        with self.exclusive(what):
            if what not in self.memo:
                self.memo[what] = compute()
            return self.memo[what]

    def close(self) -> None:
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
            self._tracked.clear()
        for t in transports:
            t.close()


_SESSIONS: dict[str, Session] = {}
_REGISTRY_LOCK = threading.Lock()


def register(session: Session) -> Session:
    with _REGISTRY_LOCK:
        old = _SESSIONS.get(session.key)
        _SESSIONS[session.key] = session
    if old is not None and old is not session:
        old.close()
    return session


def lookup(key: str) -> Session:
    with _REGISTRY_LOCK:
        session = _SESSIONS.get(key)
    if session is None:
        raise CapstanError(f"no capstan session {key!r} in this process (was the flow restarted?)")
    return session


def unregister(key: str) -> None:
    with _REGISTRY_LOCK:
        session = _SESSIONS.pop(key, None)
    if session is not None:
        session.close()
