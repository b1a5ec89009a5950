"""The host side of ``capstan certs``: read certificates, write renewed files, restart, wait for health.

Restarting a static pod: its manifest is moved out of the kubelet's static pod directory (to
``/etc/kubernetes/capstan-certs/``) until the component's port closes, then moved back, and the
component's port (the apiserver: ``/readyz``) is waited for. The manifest stays byte-identical, so the
create flow's next run sees nothing changed. A run that dies in between finds the manifest aside and
moves it back first.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

from capstan.errors import CapstanError, CommandFailed, TransportTimeout
from capstan.pki import CA_FILES, SA_FILES
from capstan.spec.models import Host
from capstan.tasks.certs.model import APISERVER, CONTROLLER_MANAGER, ETCD, SCHEDULER, updated_record
from capstan.tasks.create._common import applied_path, tail
from capstan.tasks.create.etcd import etcdctl
from capstan.tasks.create.pki import ETCD_READS, ETCD_USER
from capstan.tasks.material import read_files
from capstan.tasks.session import Session

T = TypeVar("T")
MANIFESTS_DIR = "/etc/kubernetes/manifests"
ASIDE_DIR = "/etc/kubernetes/capstan-certs"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
ROOT_FILES = tuple(p for pair in CA_FILES.values() for p in pair) + SA_FILES
ETCD_UNIT = "etcd.service"
_PORTS = {CONTROLLER_MANAGER: 10257, SCHEDULER: 10259}

_ASIDE = r"""set -e; dir=$1 aside=$2 name=$3
install -d -m 0700 "$aside"; mv -f "$dir/$name" "$aside/$name"
"""
_BACK = r"""dir=$1 aside=$2 name=$3
if [ -f "$aside/$name" ]; then mv -f "$aside/$name" "$dir/$name"; echo moved; fi
"""


def poll(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    """Call ``probe`` until it returns a value; a ``CapstanError`` it raises is the reason reported."""
    deadline = time.monotonic() + timeout
    reason = ""
    while True:
        try:
            value = probe()
        except (CapstanError, TransportTimeout) as exc:
            value, reason = None, str(exc)
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise CapstanError(f"{what}: not within {timeout:.0f} s" + (f" ({reason})" if reason else ""))
        time.sleep(interval)


def read_roots(session: Session) -> dict[str, bytes]:
    """The CAs and the service-account key pair from the first control plane; all must be there."""
    first = session.cluster.control_planes[0].name
    found = read_files(session, first, ROOT_FILES)
    missing = [p for p in ROOT_FILES if p not in found]
    if missing:
        raise CapstanError(
            f"{first}: cluster CA material missing ({', '.join(missing)}); renew keeps the CAs"
        )
    return found


def write_files(session: Session, host: Host, files: dict[str, bytes]) -> None:
    """Write each file atomically with its mode and owner (the etcd service's two keys: ``etcd``)."""
    t = session.transport(host.name)
    for path, content in files.items():
        secret = path.endswith((".key", ".conf"))
        owner = ETCD_USER if host.has("etcd") and path in ETCD_READS else "root"
        t.put(path, content, mode=0o600 if secret else 0o644, owner=owner, group=owner, sudo=True)


def update_etcd_record(session: Session, host: Host, files: dict[str, bytes]) -> None:
    """Record the new certificate hashes in etcd's restart record (see ``updated_record``)."""
    t = session.transport(host.name)
    path = applied_path(ETCD_UNIT)
    try:
        record = t.get(path, sudo=True)
    except CommandFailed:
        return  # no record: the create flow never started this member; nothing to keep true
    shas = {p: hashlib.sha256(c).hexdigest() for p, c in files.items()}
    new = updated_record(record, shas)
    if new != record:
        t.put(path, new, mode=0o600, owner="root", group="root", sudo=True)


def etcd_healthy(session: Session, host: Host) -> bool | None:
    res = session.transport(host.name).run(
        etcdctl(host, "endpoint", "health"), sudo=True, env={"ETCDCTL_API": "3"}, check=False, timeout=30
    )
    if res.ok:
        return True
    raise CapstanError(f"{host.name}: etcd endpoint health: {tail(res.stdout + res.stderr, 2)[-300:]}")


def wait_etcd_healthy(session: Session, host: Host, timeout: float, what: str) -> None:
    poll(lambda: etcd_healthy(session, host), timeout, what)


def restart_etcd(session: Session, host: Host, timeout: float) -> None:
    """Restart one member and wait for its health (the caller checked the others first)."""
    session.transport(host.name).run(["systemctl", "restart", "etcd"], sudo=True, timeout=timeout)
    poll(lambda: etcd_healthy(session, host), timeout, f"{host.name}: etcd member healthy after restart")


def _listening(session: Session, host: Host, port: int) -> bool:
    res = session.transport(host.name).run(["ss", "-Hltn", f"sport = :{port}"], sudo=True, check=False)
    if not res.ok:
        raise CapstanError(f"{host.name}: cannot list listening sockets (ss exited {res.exit_code})")
    return bool(res.stdout.strip())


def apiserver_ready(session: Session, host: Host) -> bool | None:
    server = f"https://{host.bind_ip}:{session.cluster.spec.kubernetes.apiserver_port}"
    argv = ["kubectl", f"--kubeconfig={ADMIN_CONF}", f"--server={server}", "get", "--raw=/readyz"]
    res = session.transport(host.name).run(argv, sudo=True, check=False, timeout=30)
    if res.ok and res.stdout.strip() == "ok":
        return True
    raise CapstanError(f"{host.name}: /readyz: {tail(res.stdout + res.stderr, 2)[-300:] or 'no answer'}")


def wait_ready(session: Session, host: Host, timeout: float) -> None:
    poll(lambda: apiserver_ready(session, host), timeout, f"{host.name}: apiserver /readyz")


def _port(session: Session, component: str) -> int:
    return session.cluster.spec.kubernetes.apiserver_port if component == APISERVER else _PORTS[component]


def put_back_manifests(session: Session, host: Host, components: tuple[str, ...]) -> None:
    """Move back any manifest an earlier, interrupted run left aside."""
    t = session.transport(host.name)
    for c in components:
        t.run(["sh", "-c", _BACK, "capstan-back", MANIFESTS_DIR, ASIDE_DIR, f"{c}.yaml"], sudo=True)


def restart_static_pod(session: Session, host: Host, component: str, timeout: float) -> None:
    """Stop the pod by moving its manifest aside, start it by moving it back, wait until it serves."""
    t = session.transport(host.name)
    name = f"{component}.yaml"
    if not t.run(["test", "-f", f"{MANIFESTS_DIR}/{name}"], sudo=True, check=False).ok:
        raise CapstanError(f"{host.name}: {MANIFESTS_DIR}/{name} does not exist; cannot restart {component}")
    port = _port(session, component)
    t.run(["sh", "-c", _ASIDE, "capstan-aside", MANIFESTS_DIR, ASIDE_DIR, name], sudo=True)
    try:

        def stopped() -> bool | None:
            if _listening(session, host, port):
                raise CapstanError(f"{host.name}: {component} still listens on port {port}")
            return True

        poll(stopped, timeout, f"{host.name}: {component} stopped")
    finally:
        t.run(["sh", "-c", _BACK, "capstan-back", MANIFESTS_DIR, ASIDE_DIR, name], sudo=True)
    if component == APISERVER:
        poll(lambda: apiserver_ready(session, host), timeout, f"{host.name}: {component} /readyz")
    else:

        def serving() -> bool | None:
            if not _listening(session, host, port):
                raise CapstanError(f"{host.name}: {component} does not listen on port {port} yet")
            return True

        poll(serving, timeout, f"{host.name}: {component} serving")


__all__ = [
    "ETCD",
    "apiserver_ready",
    "etcd_healthy",
    "poll",
    "put_back_manifests",
    "read_roots",
    "restart_etcd",
    "restart_static_pod",
    "update_etcd_record",
    "wait_etcd_healthy",
    "wait_ready",
    "write_files",
]
