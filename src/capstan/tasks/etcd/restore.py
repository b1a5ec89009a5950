"""restore-etcd's phases, in the order etcd's disaster-recovery procedure needs them.

Nothing is stopped until the snapshot sits on every member with the right sha256 and passes
``snapshot status`` there, and every member's ``/etc/etcd.env`` names the member the spec says.

The control plane is stopped by moving the kube-apiserver, kube-controller-manager and kube-scheduler
manifests out of the kubelet's static pod directory (to ``/etc/kubernetes/capstan-restore/``): kubelet
stops those pods while the node and its other pods stay as they are, and they come back with empty
caches, which a restore needs (a cache or watch newer than the restored revision would serve objects
that no longer exist). Stopping kubelet instead would leave the containers running. The move is
recorded by the files' new place, so a re-run after a failure still brings them back.

Each member's data is restored into ``<data dir>.restore-<ts>`` with a new cluster token and swapped in
by two renames while etcd is stopped; the old data stays at ``<data dir>.pre-restore-<ts>`` until the
restored cluster is healthy with the spec's membership and the apiservers answer, and is removed only
then. (When the data dir is a mount point, the same happens one level down, inside it.)

``/etc/etcd.env`` is left as rendered: etcd reads its initial-cluster settings only for an empty data
dir, the restored dir carries the new cluster id, and an unchanged file keeps create/scale re-runs from
seeing a change and restarting etcd.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from capstan.errors import CapstanError, TransportTimeout
from capstan.plan.phases import Phase
from capstan.render.etcd import ETCD_ENV_PATH, initial_cluster
from capstan.spec.models import Cluster, Host
from capstan.tasks.etcd.common import note_of
from capstan.tasks.etcd.model import (
    SHA_FILE,
    SNAPSHOT_FILE,
    SnapshotError,
    encode_note,
    etcdctl_argv,
    membership_problems,
    parse_env_file,
    parse_member_list,
    peer_url,
    restore_argv,
    sha256_line,
)
from capstan.tasks.etcd.offhost import Destination
from capstan.tasks.etcd.remote import (
    COPY_TIMEOUT,
    find_tool,
    first_error_line,
    member_health,
    read_sha256_file,
    sha256_of,
    snapshot_status,
    upload,
)
from capstan.tasks.etcd.source import Source, chunks, locate
from capstan.tasks.runner import PhaseOutcome, cluster_phase_impl, host_phase_impl
from capstan.tasks.session import Session

LOCATE, STAGE, STOP_API, STOP_ETCD, DATA, START, START_API, CLEANUP = (
    "etcd-restore-locate",
    "etcd-restore-stage",
    "etcd-restore-stop-apiservers",
    "etcd-restore-stop-etcd",
    "etcd-restore-data",
    "etcd-restore-start-etcd",
    "etcd-restore-start-apiservers",
    "etcd-restore-cleanup",
)
SETTINGS, SOURCE = "etcd-restore", "etcd-restore.source"
MANIFESTS_DIR = "/etc/kubernetes/manifests"
ASIDE_DIR = "/etc/kubernetes/capstan-restore"
CONTROL_PLANE = ("kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml")
ADMIN_CONF = "/etc/kubernetes/admin.conf"

_MOVE = r"""dir=$1 aside=$2; shift 2
state=none
for n in "$@"; do
  if [ -f "$dir/$n" ]; then install -d -m 0700 "$aside"; mv -f "$dir/$n" "$aside/$n"; state=moved
  elif [ -f "$aside/$n" ] && [ "$state" = none ]; then state=aside; fi
done
echo "$state"
"""
_BACK = r"""dir=$1 aside=$2; shift 2
state=none
for n in "$@"; do
  if [ -f "$aside/$n" ]; then mv -f "$aside/$n" "$dir/$n"; state=moved
  elif [ -f "$dir/$n" ] && [ "$state" = none ]; then state=running; fi
done
echo "$state"
"""
_SWAP = r"""set -eu
dd=$1 new=$2 old=$3
chown -R etcd:etcd "$new"
chmod 0700 "$new"
# $old carries this run's stamp: if it exists, an earlier attempt of this run already set the original
# data aside and $dd is that attempt's restored copy, which is replaced.
if [ -e "$old" ]; then rm -rf "$dd"; elif [ -e "$dd" ]; then mv "$dd" "$old"; fi
mv "$new" "$dd"
"""
_SWAP_MOUNT = r"""set -eu
dd=$1 new=$2 old=$3
chown -R etcd:etcd "$new"
if [ -e "$old/member" ]; then rm -rf "$dd/member"
else mkdir -p -m 0700 "$old"; if [ -e "$dd/member" ]; then mv "$dd/member" "$old/member"; fi; fi
mv "$new/member" "$dd/member"
rmdir "$new"
"""
_COPY = r"""set -e
cp -- "$1" "$2.part"
[ "$(sha256sum < "$2.part" | cut -d' ' -f1)" = "$3" ] || { rm -f "$2.part"; echo "copy differs" >&2; exit 3; }
chmod 0600 "$2.part"
mv -f -- "$2.part" "$2"
"""

T = TypeVar("T")


def _etcd(c: Cluster) -> list[Host]:
    return c.etcd_hosts


def _cps(c: Cluster) -> list[Host]:
    return c.control_planes


def _none(c: Cluster) -> list[Host]:
    return []


RESTORE_PHASES: tuple[Phase, ...] = (
    Phase(LOCATE, "Locate the snapshot", "local", _none,
          "SNAPSHOT, else the newest off-host or on-host snapshot; its sha256 checked against its .sha256"),
    Phase(STAGE, "Stage on every member", "parallel", _etcd,
          "copied where missing; sha256 and snapshot status checked on every member (a mismatch is "
          "refused, naming the member); /etc/etcd.env matches the spec"),
    Phase(STOP_API, "Stop apiservers", "parallel", _cps,
          "apiserver, controller-manager, scheduler manifests moved out of the static pod directory; "
          "wait until the apiserver port is closed"),
    Phase(STOP_ETCD, "Stop etcd", "parallel", _etcd, "systemctl stop etcd on every member"),
    Phase(DATA, "Restore data", "parallel", _etcd,
          "snapshot restore with a new cluster token into a new dir; old dir kept as <dir>.pre-restore-<ts>"),
    Phase(START, "Start etcd", "together", _etcd,
          "members started together; each healthy at the snapshot's revision within the deadline"),
    Phase(START_API, "Start apiservers", "parallel", _cps,
          "manifests moved back; /readyz waited for"),
    Phase(CLEANUP, "Clean up", "parallel", _etcd,
          "membership checked against the spec, then the pre-restore data dirs removed"),
)  # fmt: skip
"""The plan of restore-etcd."""


@dataclass(frozen=True)
class RestoreSettings:
    """What this run does; set by the flow (the token is a uniqueness nonce, not a credential)."""

    request: str | None
    destination: Destination | None
    dir: str
    stamp: str
    token: str
    health_timeout: float = 120.0
    apiserver_timeout: float = 180.0


def settings(session: Session) -> RestoreSettings:
    value = session.memo[SETTINGS]
    assert isinstance(value, RestoreSettings)
    return value


def source(session: Session) -> Source:
    value = session.memo[SOURCE]
    assert isinstance(value, Source)
    return value


def poll(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    """``probe()`` until it returns a value; fail after ``timeout`` with the last reason it raised."""
    deadline, reason = time.monotonic() + timeout, ""
    while True:
        try:
            value = probe()
        except CapstanError as exc:
            value, reason = None, str(exc)
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise CapstanError(f"{what}: not within {timeout:.0f} s" + (f" ({reason})" if reason else ""))
        time.sleep(interval)


@cluster_phase_impl(LOCATE)
def locate_snapshot(session: Session) -> list[PhaseOutcome]:
    s = settings(session)
    found = locate(session, s.request, s.destination, s.dir)
    return [PhaseOutcome(LOCATE, found.host or "orchestrator", note=encode_note(found.asdict()))]


@host_phase_impl(STAGE)
def stage(session: Session, host: Host) -> PhaseOutcome:
    s, src = settings(session), source(session)
    t = session.transport(host.name)
    env = parse_env_file(t.run(["cat", "--", ETCD_ENV_PATH], sudo=True, check=False).stdout)
    if not env:
        raise CapstanError(f"{host.name}: no {ETCD_ENV_PATH}: this member was not set up by capstan")
    want = {"ETCD_NAME": host.etcd_name, "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer_url(host.peer_ip)}
    for key, value in want.items():
        if env.get(key) != value:
            raise CapstanError(
                f"{host.name}: {ETCD_ENV_PATH} has {key}={env.get(key)}, the spec says {value}"
            )
    path = f"{s.dir}/{src.name}/{SNAPSHOT_FILE}"
    have, copied = sha256_of(t, path), False
    if have is None:
        if src.kind == "host" and src.host == host.name:  # a local copy, checked before its rename
            t.run(["install", "-d", "-m", "0700", path.rsplit("/", 1)[0]], sudo=True)
            argv = ["sh", "-c", _COPY, "capstan-copy", src.where, path, src.sha256]
            t.run(argv, sudo=True, timeout=COPY_TIMEOUT)
        else:
            upload(t, path, chunks(session, src, s.destination), src.sha256)
        have, copied = src.sha256, True
    if have != src.sha256:
        raise SnapshotError(
            f"{host.name}: {path} has sha256 {(have or 'none')[:16]}, the snapshot's is {src.sha256[:16]}: "
            "refusing to restore (remove or replace that file)"
        )
    if read_sha256_file(t, f"{path}.sha256") is None:
        t.put(f"{s.dir}/{src.name}/{SHA_FILE}", sha256_line(src.sha256).encode(), mode=0o600, sudo=True)
    tool = find_tool(t)
    status = snapshot_status(t, tool, path)
    note = {
        "path": path,
        "tool": tool,
        "copied": copied,
        "data_dir": env.get("ETCD_DATA_DIR") or session.cluster.spec.etcd.data_dir,
        "revision": status.revision,
        "keys": status.total_keys,
    }
    return PhaseOutcome(
        STAGE, host.name, changed=int(copied), unchanged=int(not copied), note=encode_note(note)
    )


def _listening(session: Session, host: Host) -> bool:
    """Whether anything listens on the apiserver port on ``host`` (``ss`` from iproute2)."""
    port = session.cluster.spec.kubernetes.apiserver_port
    res = session.transport(host.name).run(["ss", "-Hltn", f"sport = :{port}"], sudo=True, check=False)
    if not res.ok:
        raise CapstanError(f"{host.name}: cannot list listening sockets (ss exited {res.exit_code})")
    return bool(res.stdout.strip())


def _port_closed(session: Session, host: Host) -> bool | None:
    if not _listening(session, host):
        return True
    port = session.cluster.spec.kubernetes.apiserver_port
    raise CapstanError(f"{host.name}: the apiserver still listens on port {port}")


@host_phase_impl(STOP_API)
def stop_apiserver(session: Session, host: Host) -> PhaseOutcome:
    t = session.transport(host.name)
    argv = ["sh", "-c", _MOVE, "capstan-move", MANIFESTS_DIR, ASIDE_DIR, *CONTROL_PLANE]
    state = t.run(argv, sudo=True).stdout.strip()
    if state in ("moved", "aside"):
        poll(lambda: _port_closed(session, host), settings(session).apiserver_timeout, f"{host.name}: stop")
    return PhaseOutcome(
        STOP_API, host.name, changed=int(state == "moved"), note=encode_note({"state": state})
    )


@host_phase_impl(STOP_ETCD)
def stop_etcd(session: Session, host: Host) -> PhaseOutcome:
    t = session.transport(host.name)
    t.run(["systemctl", "stop", "etcd"], sudo=True, timeout=120)
    active = t.run(["systemctl", "is-active", "etcd"], sudo=True, check=False).stdout.strip()
    if active == "active":
        raise CapstanError(f"{host.name}: etcd is still active after systemctl stop")
    return PhaseOutcome(STOP_ETCD, host.name, changed=1)


@host_phase_impl(DATA)
def restore_data(session: Session, host: Host) -> PhaseOutcome:
    s, note = settings(session), note_of(session, STAGE, host.name)
    t = session.transport(host.name)
    data_dir = str(note["data_dir"]).rstrip("/")
    mounted = t.run(["mountpoint", "-q", data_dir], sudo=True, check=False).ok
    if mounted:
        new, old = f"{data_dir}/.restore-{s.stamp}", f"{data_dir}/.pre-restore-{s.stamp}"
    else:
        new, old = f"{data_dir}.restore-{s.stamp}", f"{data_dir}.pre-restore-{s.stamp}"
    members = session.cluster.etcd_hosts
    argv = restore_argv(
        str(note["tool"]),
        str(note["path"]),
        name=host.etcd_name,
        initial_cluster=initial_cluster(members),
        token=s.token,
        peer=peer_url(host.peer_ip),
        data_dir=new,
    )
    t.run(["rm", "-rf", "--", new], sudo=True)
    t.run(argv, sudo=True, timeout=COPY_TIMEOUT)
    t.run(["sh", "-c", _SWAP_MOUNT if mounted else _SWAP, "capstan-swap", data_dir, new, old], sudo=True)
    return PhaseOutcome(DATA, host.name, changed=1, note=encode_note({"data_dir": data_dir, "previous": old}))


def _healthy_at(session: Session, host: Host, revision: int) -> bool | None:
    health = member_health(session.transport(host.name))
    if not health.healthy:
        raise CapstanError(f"{host.name}: {health.error}")
    if health.revision is not None and health.revision < revision:
        raise CapstanError(f"{host.name}: at revision {health.revision}, the snapshot has {revision}")
    return True


@host_phase_impl(START)
def start_etcd(session: Session, host: Host) -> PhaseOutcome:
    """Start, then wait for this member's health; members run this at the same time (quorum)."""
    s = settings(session)
    t = session.transport(host.name)
    why = ""
    try:  # returns once the member has quorum, i.e. once enough of the others started too
        started = t.run(["systemctl", "start", "etcd"], sudo=True, check=False, timeout=s.health_timeout)
        why = "" if started.ok else first_error_line(started.stderr)
    except TransportTimeout:
        why = f"systemctl start did not return within {s.health_timeout:.0f} s"
    revision = int(str(note_of(session, STAGE, host.name)["revision"]))
    try:
        poll(lambda: _healthy_at(session, host, revision), s.health_timeout, f"{host.name}: etcd health")
    except CapstanError as exc:
        raise CapstanError(f"{exc}{f' ({why})' if why else ''}") from None
    return PhaseOutcome(START, host.name, changed=1)


def _ready(session: Session, host: Host) -> bool | None:
    t = session.transport(host.name)
    if not t.run(["test", "-f", ADMIN_CONF], sudo=True, check=False).ok:  # no kubeconfig to ask with
        if _listening(session, host):
            return True
        raise CapstanError(f"{host.name}: the apiserver does not listen yet")
    server = f"https://{host.bind_ip}:{session.cluster.spec.kubernetes.apiserver_port}"
    argv = ["kubectl", f"--kubeconfig={ADMIN_CONF}", f"--server={server}", "get", "--raw=/readyz"]
    res = t.run(argv, sudo=True, check=False, timeout=30)
    if res.ok and res.stdout.strip() == "ok":
        return True
    raise CapstanError(f"{host.name}: /readyz: {(res.stdout + res.stderr).strip()[-200:] or 'no answer'}")


@host_phase_impl(START_API)
def start_apiserver(session: Session, host: Host) -> PhaseOutcome:
    t = session.transport(host.name)
    argv = ["sh", "-c", _BACK, "capstan-back", MANIFESTS_DIR, ASIDE_DIR, *CONTROL_PLANE]
    state = t.run(argv, sudo=True).stdout.strip()
    if state in ("moved", "running"):
        poll(lambda: _ready(session, host), settings(session).apiserver_timeout, f"{host.name}: apiserver")
    return PhaseOutcome(
        START_API, host.name, changed=int(state == "moved"), note=encode_note({"state": state})
    )


@host_phase_impl(CLEANUP)
def cleanup(session: Session, host: Host) -> PhaseOutcome:
    """Check the membership etcd reports against the spec; only then drop the pre-restore data."""
    t = session.transport(host.name)
    listed = t.run(etcdctl_argv("member", "list", "-w", "json"), sudo=True)
    want = {h.etcd_name: peer_url(h.peer_ip) for h in session.cluster.etcd_hosts}
    problems = membership_problems(parse_member_list(listed.stdout), want)
    if problems:
        raise CapstanError(f"{host.name}: restored membership differs from the spec: {'; '.join(problems)}")
    previous = str(note_of(session, DATA, host.name).get("previous", ""))
    if previous:
        t.run(["rm", "-rf", "--", previous], sudo=True, timeout=COPY_TIMEOUT)
    return PhaseOutcome(
        CLEANUP, host.name, changed=int(bool(previous)), note=encode_note({"removed": previous})
    )
