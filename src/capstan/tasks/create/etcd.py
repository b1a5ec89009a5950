"""Phase 6, etcd: the members on the etcd hosts, started together, checked with etcdctl over TLS.

Pre-check: the etcd account, the data directory (0700, owned by etcd), ``/etc/etcd.env``,
``/etc/etcdctl.env`` and the unit against the facts, the unit's state and the restart record; the etcd
binary and the member's certificates must be there already (artifacts and pki phases). Action: write what
differs; start a stopped member, or restart a running one whose env file, unit or certificates changed.
Post-check: re-plan finds nothing, the member reports healthy to the real ``etcdctl`` over TLS (with the
member's etcdctl client certificate), and ``member list`` shows every etcd host started.

Starting: the phase runs on all members at once ("together"): a fresh member's start returns only once
a quorum has formed, so members started one by one would wait on each other. Restarting a running
member (changed config or certificates) is done one member at a time, each waiting for its own health,
so the cluster keeps its quorum.

Bootstrap settings. ``ETCD_INITIAL_CLUSTER`` and ``ETCD_INITIAL_CLUSTER_STATE`` are read only when a
member starts with an empty data directory. They are rendered (``new``, every etcd host of the spec) only
for a member without data; once a member has data, the installed file's values of these two are kept
as they are, so a re-run never rewrites (and restarts) a healthy member over a setting etcd ignores, and
a member that a later scale-out added with ``existing`` is never flipped back to ``new``. Every other
setting (quota, compaction, TLS paths...) comes from the render, and changing it restarts the member.

A member without data whose peers already have data is only bootstrapped when the running cluster lists
it as never started (it was in the original member set, e.g. the run died before it started). A host the
cluster does not know is a new member, which needs ``member add`` first (the scale-out flow); a member
that has run before and lost its data must be replaced (remove, add). This phase refuses both.
"""

from __future__ import annotations

from collections.abc import Mapping

from capstan.errors import PlanError
from capstan.facts import FactsQuery, HostFacts
from capstan.ops import Command, Op, apply, directory, file, service, unit_file
from capstan.render import RenderedFile
from capstan.render.etcd import CLIENT_PORT, ETCD_ENV_PATH, ETCD_UNIT_PATH, ETCDCTL_ENV_PATH, TLS_DIR
from capstan.spec.models import Cluster, Host
from capstan.tasks import material
from capstan.tasks.create._common import (
    PostCheckFailed,
    applied_path,
    check_converged,
    exec_start,
    outcome,
    parent_dirs,
    parents_op,
    restart_guard,
    sha256_hex,
    tail,
    wait_for,
)
from capstan.tasks.create.pki import ETCD_USER, etcd_account_ops
from capstan.tasks.hostfacts import facts_for, phase_query
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

UNIT = "etcd.service"
ETCDCTL = "/usr/local/bin/etcdctl"
BOOTSTRAP_ONLY = ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE")
MEMBER_TLS = tuple(f"{TLS_DIR}/{n}" for n in ("ca.crt", "member.crt", "member.key", "peer.crt", "peer.key"))
"""What the member reads at start besides its env file: a change restarts it."""
HEALTH_TIMEOUT = 90.0


def member_dir(cluster: Cluster) -> str:
    """Exists once the member has been initialised (etcd keeps its WAL and snapshots there)."""
    return f"{cluster.spec.etcd.data_dir}/member"


def etcd_files(rendered: Mapping[str, RenderedFile]) -> dict[str, RenderedFile]:
    return {p: rendered[p] for p in (ETCD_ENV_PATH, ETCDCTL_ENV_PATH, ETCD_UNIT_PATH)}


def _env_lines(text: bytes) -> dict[str, str]:
    out = {}
    for line in text.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out[key.strip()] = value
    return out


def member_env(rendered: bytes, installed: bytes | None, has_data: bool) -> bytes:
    """The env file to want: the render, with the installed bootstrap-only values once there is data."""
    if not has_data or installed is None:
        return rendered
    keep = {k: v for k, v in _env_lines(installed).items() if k in BOOTSTRAP_ONLY}
    lines = []
    for line in rendered.decode("utf-8").splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={keep[key]}" if key in keep and not line.startswith("#") else line)
    return ("\n".join(lines) + "\n").encode()


def etcd_query(cluster: Cluster, files: Mapping[str, RenderedFile]) -> FactsQuery:
    data_dir = cluster.spec.etcd.data_dir
    paths = (*files, applied_path(UNIT))
    program = exec_start(files[ETCD_UNIT_PATH].text) or "/usr/local/bin/etcd"
    return FactsQuery(
        files=(*paths, *parent_dirs(paths), data_dir, member_dir(cluster), program, *MEMBER_TLS),
        contents=(ETCD_ENV_PATH,),
        units=(UNIT,),
        users=(ETCD_USER,),
        groups=(ETCD_USER,),
        binaries=(),
    )


def has_data(facts: HostFacts, cluster: Cluster) -> bool:
    info = facts.file(member_dir(cluster))
    return info is not None and info.is_dir


def etcd_plan(
    facts: HostFacts, cluster: Cluster, files: Mapping[str, RenderedFile], *, require_inputs: bool = True
) -> list[Op]:
    """Pure: account, data directory, env files, unit, service state and restart record of a member.

    ``require_inputs=False`` (dry runs) plans even before the artifacts and pki phases have run.
    """
    unit = files[ETCD_UNIT_PATH]
    program = exec_start(unit.text) or ""
    if require_inputs and facts.file(program) is None:
        raise PlanError(f"{facts.host}: {UNIT} runs {program}, which is not installed (artifacts phase)")
    missing = [p for p in MEMBER_TLS if facts.file(p) is None]
    if require_inputs and missing:
        raise PlanError(f"{facts.host}: etcd certificates missing (pki phase): {', '.join(missing)}")
    data_dir = cluster.spec.etcd.data_dir
    env = files[ETCD_ENV_PATH]
    env_content = member_env(env.content, facts.content(ETCD_ENV_PATH), has_data(facts, cluster))
    ctl = files[ETCDCTL_ENV_PATH]
    ops = etcd_account_ops(facts, data_dir)
    ops.append(directory(facts, data_dir, mode=0o700, owner=ETCD_USER, group=ETCD_USER))
    ops.append(parents_op(facts, [*files, applied_path(UNIT)]))
    env_op = file(facts, env.path, env_content, mode=env.mode, owner=env.owner, group=env.group)
    ops.append(env_op)
    ops.append(file(facts, ctl.path, ctl.content, mode=ctl.mode, owner=ctl.owner, group=ctl.group))
    unit_op = unit_file(facts, UNIT, unit.content)
    inputs: dict[str, str | None] = {p: facts.sha256(p) for p in MEMBER_TLS}
    inputs[ETCD_ENV_PATH] = sha256_hex(env_content)
    inputs[ETCD_UNIT_PATH] = sha256_hex(unit.content)
    guard = restart_guard(facts, UNIT, inputs)
    restart = guard.changed or env_op.changed
    ops += [unit_op, service(facts, UNIT, config_changed=restart, unit_changed=unit_op.changed), guard]
    return ops


def etcdctl(host: Host, *args: str) -> list[str]:
    """The real etcdctl against ``host``'s client URL, authenticated with its etcdctl certificate."""
    return [
        ETCDCTL,
        f"--endpoints=https://{host.peer_ip}:{CLIENT_PORT}",
        f"--cacert={TLS_DIR}/ca.crt",
        f"--cert={TLS_DIR}/etcdctl.crt",
        f"--key={TLS_DIR}/etcdctl.key",
        "--command-timeout=5s",
        *args,
    ]


def parse_member_list(out: str) -> list[tuple[str, str, str]]:
    """(status, name, peer URLs) per line of ``etcdctl member list`` (simple format)."""
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            rows.append((parts[1], parts[2], parts[3]))
    return rows


def _run_etcdctl(session: Session, host: Host, *args: str) -> str:
    """Read-only etcdctl calls (health, member list): through the reader, facts stay valid."""
    res = session.reader(host.name).run(
        etcdctl(host, *args), sudo=True, env={"ETCDCTL_API": "3"}, check=False, timeout=30
    )
    if not res.ok:
        raise PostCheckFailed(f"etcdctl {' '.join(args)} exited {res.exit_code}: {tail(res.stderr)}")
    return res.stdout


def _healthy(session: Session, host: Host) -> None:
    def probe() -> bool:
        _run_etcdctl(session, host, "endpoint", "health")
        return True

    wait_for(probe, timeout=HEALTH_TIMEOUT, what=f"{host.name}: etcd member healthy over TLS")


def _all_started(session: Session, host: Host) -> int:
    want = {m.etcd_name for m in session.cluster.etcd_hosts}

    def probe() -> int | None:
        rows = parse_member_list(_run_etcdctl(session, host, "member", "list"))
        started = {name for status, name, _ in rows if status == "started"}
        if want <= started:
            return len(rows)
        raise PostCheckFailed(f"not started yet: {', '.join(sorted(want - started))}")

    return wait_for(probe, timeout=HEALTH_TIMEOUT, what=f"{host.name}: every etcd member started")


def _members_with_data(session: Session) -> list[Host]:
    """The etcd hosts whose data directory holds a member (asked once per run)."""

    def compute() -> list[str]:
        path = member_dir(session.cluster)
        return [
            h.name
            for h in session.cluster.etcd_hosts
            if session.reader(h.name).run(["test", "-d", path], sudo=True, check=False).ok
        ]

    names = session.once("etcd-members-with-data", compute)
    assert isinstance(names, list)
    return [session.host(n) for n in names]


def check_may_bootstrap(session: Session, host: Host) -> None:
    """Refuse to bootstrap ``host`` (no data) into an existing cluster that does not list it."""
    others = [h for h in _members_with_data(session) if h.name != host.name]
    if not others:
        return
    peer = f"https://{host.peer_ip}:2380"
    try:
        rows = parse_member_list(_run_etcdctl(session, others[0], "member", "list"))
    except PostCheckFailed as exc:
        raise PlanError(
            f"{host.name}: has no etcd data while {others[0].name} has, and the cluster cannot be asked "
            f"whether {host.etcd_name} is a member ({exc})"
        ) from None
    listed = [status for status, name, urls in rows if peer in urls.split() or name == host.etcd_name]
    if not listed:
        raise PlanError(
            f"{host.name}: etcd member {host.etcd_name} is not in the running etcd cluster; adding a member "
            "needs `member add` first (the scale-out flow), create will not bootstrap it"
        )
    if "started" in listed:
        raise PlanError(
            f"{host.name}: etcd member {host.etcd_name} has run before but its data directory "
            f"{member_dir(session.cluster)} is gone; replace the member (member remove, then add) instead"
        )


def _restarts(op: Op) -> bool:
    return any(isinstance(s, Command) and s.argv[:2] == ("systemctl", "restart") for s in op.steps)


@phase_query("etcd")
def _query(session: Session, host: Host) -> FactsQuery:
    return etcd_query(session.cluster, etcd_files(material.rendered(session, host.name)))


@host_phase_impl("etcd")
def etcd_phase(session: Session, host: Host) -> PhaseOutcome:
    c = session.cluster
    t = session.transport(host.name)
    files = etcd_files(material.rendered(session, host.name))
    query = etcd_query(c, files)
    facts = facts_for(session, host, query, phase="etcd")
    if not has_data(facts, c):
        check_may_bootstrap(session, host)
    ops = etcd_plan(facts, c, files, require_inputs=not session.dry_run)
    *setup, svc, guard = ops
    results = [apply(t, setup, dry_run=session.dry_run)]
    if _restarts(svc) and not session.dry_run:
        with session.exclusive("etcd-restart"):  # one member at a time keeps the quorum
            results.append(apply(t, [svc, guard]))
            _healthy(session, host)
    else:
        results.append(apply(t, [svc, guard], dry_run=session.dry_run))
    if session.dry_run:
        return outcome("etcd", host, results)
    if any(r.changed for r in results):
        check_converged(session, host, query, lambda f: etcd_plan(f, c, files), "etcd")
    _healthy(session, host)
    members = _all_started(session, host)
    return outcome("etcd", host, results, note=f"healthy, {members} members started")
