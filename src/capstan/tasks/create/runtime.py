"""Phase 5, runtime: containerd (or CRI-O) configured, enabled and running on every Kubernetes node.

Pre-check: the rendered runtime files (config, registry files, unit, ``/etc/crictl.yaml``) against the
host's facts, the unit's state, and the restart record (``_common``). The unit's ``ExecStart`` program
must already be installed (the artifacts phase put it there); otherwise the phase stops naming it rather
than leaving a unit that cannot start. Action: write what differs, then start the service, or restart
it when what it runs with changed: the main config and the unit. Registry ``hosts.toml`` files and
crictl's config are read on use, so they never restart anything. Post-check: re-plan finds nothing, and
the runtime answers on its socket (``ctr version`` for containerd, ``crictl version`` for CRI-O), polled
with a deadline.

The kubelet's units are rendered for nodes too, but belong to the kubeadm phases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from capstan.errors import PlanError
from capstan.facts import FactsQuery, HostFacts
from capstan.ops import Op, file, service, unit_file
from capstan.render import RenderedFile
from capstan.render.runtime import CONTAINERD_SOCKET, CRIO_SOCKET
from capstan.spec.models import Cluster, Host
from capstan.tasks import material
from capstan.tasks.create._common import (
    PostCheckFailed,
    applied_path,
    converge,
    exec_start,
    outcome,
    parent_dirs,
    parents_op,
    restart_guard,
    sha256_hex,
    tail,
    wait_for,
)
from capstan.tasks.hostfacts import phase_query
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

CRICTL_CONFIG = "/etc/crictl.yaml"
UNIT_DIR = "/etc/systemd/system"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Runtime:
    """How capstan recognises one runtime's files, and asks it whether it is up."""

    unit: str
    prefixes: tuple[str, ...]
    restart_on: tuple[str, ...]
    """Files (besides the unit) the running service has read at start; a change restarts it."""
    probe: tuple[str, ...]


RUNTIMES: dict[str, Runtime] = {
    "containerd": Runtime(
        unit="containerd.service",
        prefixes=("/etc/containerd/",),
        restart_on=("/etc/containerd/config.toml",),
        probe=("/usr/local/bin/ctr", "--address", CONTAINERD_SOCKET, "version"),
    ),
    "cri-o": Runtime(
        unit="crio.service",
        prefixes=("/etc/crio/", "/etc/containers/"),
        restart_on=(
            "/etc/crio/crio.conf.d/10-capstan.conf",
            "/etc/containers/registries.conf.d/10-capstan-mirrors.conf",
        ),
        probe=("/usr/local/bin/crictl", "--runtime-endpoint", f"unix://{CRIO_SOCKET}", "version"),
    ),
}


def runtime_of(cluster: Cluster) -> Runtime:
    return RUNTIMES[cluster.spec.container_runtime.name]


def runtime_files(cluster: Cluster, rendered: Mapping[str, RenderedFile]) -> dict[str, RenderedFile]:
    """The rendered files this phase writes: the runtime's own, its unit, and crictl's config."""
    rt = runtime_of(cluster)
    unit_path = f"{UNIT_DIR}/{rt.unit}"
    chosen = {p: f for p, f in rendered.items() if p.startswith(rt.prefixes) or p == CRICTL_CONFIG}
    if unit_path not in rendered:
        raise PlanError(f"runtime: nothing rendered {unit_path} (a capstan bug)")
    chosen[unit_path] = rendered[unit_path]
    return chosen


def runtime_query(cluster: Cluster, files: Mapping[str, RenderedFile]) -> FactsQuery:
    rt = runtime_of(cluster)
    program = exec_start(files[f"{UNIT_DIR}/{rt.unit}"].text) or ""
    paths = (*files, applied_path(rt.unit))
    return FactsQuery(
        files=(*paths, *parent_dirs(paths), *([program] if program.startswith("/") else [])),
        units=(rt.unit,),
        binaries=(),
    )


def runtime_plan(
    facts: HostFacts, cluster: Cluster, files: Mapping[str, RenderedFile], *, require_binary: bool = True
) -> list[Op]:
    """Pure: config files, unit, service state and restart record for the spec's runtime.

    ``require_binary=False`` (dry runs) plans even when the artifacts phase has not installed it yet.
    """
    rt = runtime_of(cluster)
    unit_path = f"{UNIT_DIR}/{rt.unit}"
    unit = files[unit_path]
    program = exec_start(unit.text)
    if program is None or not program.startswith("/"):
        raise PlanError(f"{facts.host}: {unit_path} has no absolute ExecStart program (a capstan bug)")
    installed = facts.file(program)
    if require_binary and (installed is None or not installed.is_file):
        raise PlanError(
            f"{facts.host}: {rt.unit} runs {program}, which is not installed (the artifacts phase does that)"
        )
    config = {p: f for p, f in files.items() if p != unit_path}
    ops = [parents_op(facts, [*files, applied_path(rt.unit)])]
    file_ops = [
        file(facts, p, f.content, mode=f.mode, owner=f.owner, group=f.group) for p, f in config.items()
    ]
    unit_op = unit_file(facts, rt.unit, unit.content)
    inputs = {p: sha256_hex(files[p].content) for p in (unit_path, *rt.restart_on) if p in files}
    guard = restart_guard(facts, rt.unit, inputs)
    rewritten = any(op.changed for p, op in zip(config, file_ops, strict=True) if p in rt.restart_on)
    svc = service(facts, rt.unit, config_changed=guard.changed or rewritten, unit_changed=unit_op.changed)
    ops += [*file_ops, unit_op, svc, guard]
    return ops


@phase_query("runtime")
def _query(session: Session, host: Host) -> FactsQuery:
    c = session.cluster
    return runtime_query(c, runtime_files(c, material.rendered(session, host.name)))


@host_phase_impl("runtime")
def runtime_phase(session: Session, host: Host) -> PhaseOutcome:
    c = session.cluster
    rt = runtime_of(c)
    files = runtime_files(c, material.rendered(session, host.name))

    def plan(facts: HostFacts) -> list[Op]:
        return runtime_plan(facts, c, files, require_binary=not session.dry_run)

    result, _ = converge(session, host, runtime_query(c, files), plan, "runtime")
    if not session.dry_run:
        t = session.reader(host.name)  # the probe changes nothing: later phases keep their facts

        def answers() -> bool | None:
            res = t.run(rt.probe, sudo=True, check=False, timeout=15)
            if res.ok:
                return True
            raise PostCheckFailed(f"`{' '.join(rt.probe)}` exited {res.exit_code}: {tail(res.stderr)}")

        wait_for(answers, timeout=READY_TIMEOUT, what=f"{host.name}: {rt.unit} answering on its socket")
    return outcome("runtime", host, [result], note=f"{rt.unit} running")
