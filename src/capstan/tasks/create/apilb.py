"""Phase 7, api-lb: how nodes reach the apiservers, per ``spec.controlPlaneEndpoint.mode``.

- ``local-lb`` (every Kubernetes node): haproxy or nginx from the distribution package, run by capstan's
  own ``kube-apiserver-lb.service`` with its config in ``/etc/kube-lb`` (see ``capstan.render.lb``).
- ``vip`` (control planes): keepalived with the rendered ``/etc/keepalived/keepalived.conf``, run by the
  distribution's unit.
- ``external``: the plan gives this phase no hosts; nothing happens.

Pre-check: package, files, unit state and restart record against the facts. Action: install the package
if it is missing, write what differs, start the service or restart it when its config or unit changed.
Post-check: re-plan finds nothing; the local balancer listens on ``127.0.0.1:<localLbPort>`` (polled with
a deadline), keepalived is active. The apiservers do not exist yet at this point: haproxy starts anyway
and marks its backends down until they answer ``/readyz``; nginx has only passive checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from capstan.errors import PlanError
from capstan.facts import FactsQuery, HostFacts, gather_facts
from capstan.ops import Op, file, packages, service, unit_file
from capstan.render import RenderedFile
from capstan.render.lb import KEEPALIVED_PATH, LB_DIR, LB_UNIT
from capstan.spec.models import Cluster, Host
from capstan.tasks import material
from capstan.tasks.create._common import (
    PostCheckFailed,
    applied_path,
    converge,
    outcome,
    parent_dirs,
    parents_op,
    restart_guard,
    sha256_hex,
    wait_for,
)
from capstan.tasks.hostfacts import phase_query
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

UNIT_DIR = "/etc/systemd/system"
KEEPALIVED_UNIT = "keepalived.service"
LISTEN_TIMEOUT = 30.0

PACKAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "haproxy": {"debian": ("haproxy",), "rhel": ("haproxy",)},
    # Distribution nginx builds carry the TCP (stream) module as a separate dynamic module.
    "nginx": {"debian": ("nginx", "libnginx-mod-stream"), "rhel": ("nginx", "nginx-mod-stream")},
    "keepalived": {"debian": ("keepalived",), "rhel": ("keepalived",)},
}


@dataclass(frozen=True)
class Balancer:
    """What this host runs: the package, the unit, the config files and whether capstan owns the unit."""

    kind: str
    unit: str
    config: tuple[str, ...]
    unit_path: str | None  # None: the package's own unit (keepalived)


def balancer(cluster: Cluster) -> Balancer:
    cpe = cluster.spec.control_plane_endpoint
    if cpe.mode == "vip":
        return Balancer("keepalived", KEEPALIVED_UNIT, (KEEPALIVED_PATH,), None)
    if cpe.mode == "local-lb":
        name = "haproxy.cfg" if cpe.local_lb == "haproxy" else "nginx.conf"
        return Balancer(cpe.local_lb, LB_UNIT, (f"{LB_DIR}/{name}",), f"{UNIT_DIR}/{LB_UNIT}")
    raise PlanError(f"api-lb: endpoint mode {cpe.mode!r} runs nothing on the hosts")


def lb_files(b: Balancer, rendered: Mapping[str, RenderedFile]) -> dict[str, RenderedFile]:
    wanted = (*b.config, *([b.unit_path] if b.unit_path else []))
    missing = [p for p in wanted if p not in rendered]
    if missing:
        raise PlanError(f"api-lb: nothing rendered {', '.join(missing)} (a capstan bug)")
    return {p: rendered[p] for p in wanted}


def lb_query(b: Balancer, files: Mapping[str, RenderedFile]) -> FactsQuery:
    paths = (*files, applied_path(b.unit))
    names = tuple(n for family in PACKAGES[b.kind].values() for n in family)
    return FactsQuery(files=(*paths, *parent_dirs(paths)), units=(b.unit,), packages=names, binaries=())


def lb_plan(facts: HostFacts, b: Balancer, files: Mapping[str, RenderedFile]) -> list[Op]:
    """Pure: package, config, unit, service state and restart record of the balancer."""
    ops = [packages(facts, PACKAGES[b.kind])]
    ops.append(parents_op(facts, [*files, applied_path(b.unit)]))
    config_ops = [
        file(facts, p, files[p].content, mode=files[p].mode, owner=files[p].owner, group=files[p].group)
        for p in b.config
    ]
    ops += config_ops
    unit_changed = False
    if b.unit_path is not None:
        unit_op = unit_file(facts, b.unit, files[b.unit_path].content)
        ops.append(unit_op)
        unit_changed = unit_op.changed
    guard = restart_guard(facts, b.unit, {p: sha256_hex(f.content) for p, f in files.items()})
    restart = guard.changed or any(op.changed for op in config_ops)
    ops += [service(facts, b.unit, config_changed=restart, unit_changed=unit_changed), guard]
    return ops


def listening(facts: HostFacts, port: int) -> bool:
    return any(x.port == port and x.address in ("127.0.0.1", "0.0.0.0") for x in facts.listeners)


@phase_query("api-lb")
def _query(session: Session, host: Host) -> FactsQuery:
    b = balancer(session.cluster)
    return lb_query(b, lb_files(b, material.rendered(session, host.name)))


@host_phase_impl("api-lb")
def apilb_phase(session: Session, host: Host) -> PhaseOutcome:
    c = session.cluster
    b = balancer(c)
    files = lb_files(b, material.rendered(session, host.name))

    def plan(facts: HostFacts) -> list[Op]:
        return lb_plan(facts, b, files)

    result, facts = converge(session, host, lb_query(b, files), plan, "api-lb")
    if session.dry_run:
        return outcome("api-lb", host, [result])
    if b.kind == "keepalived":
        if not facts.unit(b.unit).active:
            raise PostCheckFailed(f"{host.name}: {b.unit} is not active after the change")
        return outcome("api-lb", host, [result], note="keepalived active")
    port = c.spec.control_plane_endpoint.local_lb_port
    t = session.reader(host.name)  # a fresh look each time, and one that changes nothing

    def probe() -> bool | None:
        return True if listening(gather_facts(t, FactsQuery(binaries=())), port) else None

    if not listening(facts, port):  # the facts of the pre- or post-check may already show it
        wait_for(probe, timeout=LISTEN_TIMEOUT, what=f"{host.name}: {b.kind} listening on 127.0.0.1:{port}")
    return outcome("api-lb", host, [result], note=f"{b.kind} on 127.0.0.1:{port}")
