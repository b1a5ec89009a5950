"""The kubeadm phases' shared steps: admin access to the API, readiness waits, the node's files.

The admin kubeconfig is read once per run from the first control plane (placed there by the PKI phase)
and kept in the session's memory; it never becomes a task parameter or result. The orchestrator reaches
the API at the first control plane's own address (``report.reachable_server``), and a joining control
plane's apiserver at that node's address; TLS is verified against the cluster CA.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx2
from lightkube import ApiError
from lightkube.resources.core_v1 import ConfigMap, Node

from capstan.errors import CommandFailed
from capstan.facts.model import HostFacts
from capstan.facts.query import FactsQuery
from capstan.kube import ApiAccess, KubeError, parse_kubeconfig, poll_until, readyz_problem
from capstan.ops import Op, OpResult, apply, file, service
from capstan.render import RenderedFile
from capstan.spec.models import Host
from capstan.tasks.create._common import applied_path, parent_dirs, parents_op, restart_guard, sha256_hex
from capstan.tasks.create._kubeadm import (
    APISERVER_MANIFEST,
    KUBELET_CONFIG,
    KUBELET_DROPIN,
    KUBELET_UNIT,
    NodeState,
    kube_files,
)
from capstan.tasks.create.report import ADMIN_CONF, reachable_server
from capstan.tasks.hostfacts import facts_for, phase_query
from capstan.tasks.material import rendered
from capstan.tasks.session import Session

API_READY_TIMEOUT = 300.0
"""How long an apiserver may take to answer /readyz (kubeadm's own control-plane wait is 4 minutes)."""
REGISTER_TIMEOUT = 120.0
"""How long a kubelet may take to register its Node after kubeadm started it."""
POLL_INTERVAL = 1.0
KUBELET = "kubelet"


def admin_access(session: Session) -> ApiAccess:
    """The cluster admin's credentials from the first control plane, against a reachable apiserver."""

    def load() -> ApiAccess:
        first = session.cluster.control_planes[0].name
        try:
            raw = session.transport(first).get(ADMIN_CONF, sudo=True)
        except CommandFailed:
            raise KubeError(f"{first}: {ADMIN_CONF} is missing (the PKI phase places it)") from None
        return ApiAccess(parse_kubeconfig(raw, f"{first}:{ADMIN_CONF}"), reachable_server(session.cluster))

    value = session.once("kube-admin-access", load)
    assert isinstance(value, ApiAccess)
    return value


def apiserver_url(session: Session, host: Host) -> str:
    """The apiserver of one control plane, at the address its serving certificate names."""
    return f"https://{host.peer_ip}:{session.cluster.spec.kubernetes.apiserver_port}"


def readyz(access: ApiAccess) -> str:
    """Empty when ``access.server`` answers /readyz with 200; else why not (one line)."""
    try:
        with access.http(timeout=5.0) as http:
            resp = http.get("/readyz")
    except httpx2.HTTPError as exc:
        return readyz_problem(None, "", f"{type(exc).__name__}: {exc}")
    return readyz_problem(resp.status_code, resp.text)


def node_registered(access: ApiAccess, name: str) -> bool:
    """Whether Node ``name`` exists; an API that cannot answer is an error, never a "no"."""
    try:
        with access.client(timeout=5.0) as client:
            client.get(Node, name)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise KubeError(f"API {access.server}: cannot read Node {name}: {exc}") from None
    except httpx2.HTTPError as exc:
        raise KubeError(
            f"API {access.server}: cannot read Node {name}: {type(exc).__name__}: {exc}"
        ) from None
    return True


def node_problems(access: ApiAccess, name: str) -> list[str]:
    """Empty when Node ``name`` exists; else why not (not registered, or the API's error).

    One Node is read, not the list: every joining host polls this, and on a 30-node cluster a list
    per host per poll was most of what the API servers did during a converged re-run."""
    try:
        return [] if node_registered(access, name) else [f"{name}: not registered as a Node"]
    except KubeError as exc:
        return [str(exc)]


def has_configmap(access: ApiAccess, namespace: str, name: str) -> bool:
    try:
        with access.client(timeout=5.0) as client:
            client.get(ConfigMap, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise KubeError(f"API {access.server}: cannot read ConfigMap {namespace}/{name}: {exc}") from None
    except httpx2.HTTPError as exc:
        raise KubeError(
            f"API {access.server}: cannot read ConfigMap {namespace}/{name}: {type(exc).__name__}: {exc}"
        ) from None
    return True


def wait_for(check: Callable[[], list[str]], timeout: float, what: str) -> str:
    """Poll ``check`` until it finds no problem; the last problems as one line on timeout, else ""."""
    try:
        poll_until(check, timeout, what, interval=POLL_INTERVAL)
    except KubeError as exc:
        return str(exc)
    return ""


def wait_readyz(session: Session, host: Host, timeout: float = API_READY_TIMEOUT) -> str:
    access = admin_access(session).at(apiserver_url(session, host))

    def check() -> list[str]:
        problem = readyz(access)
        return [problem] if problem else []

    return wait_for(check, timeout, f"{host.name}: /readyz at {access.server}")


def wait_registered(session: Session, host: Host, timeout: float = REGISTER_TIMEOUT) -> str:
    access = admin_access(session)
    return wait_for(lambda: node_problems(access, host.name), timeout, f"{host.name}: Node registration")


def node_query(session: Session, host: Host) -> FactsQuery:
    files = kube_files(rendered(session, host.name))
    paths = (*files, applied_path(KUBELET))
    return FactsQuery(
        units=(KUBELET,),
        files=(*parent_dirs(paths), *paths, APISERVER_MANIFEST, KUBELET_CONFIG),
        binaries=(),
    )


def node_facts(session: Session, host: Host, phase: str | None = None) -> HostFacts:
    """The node's facts (from an earlier phase's gather while the host is unchanged since)."""
    return facts_for(session, host, node_query(session, host), phase=phase)


for _phase in ("cp-init", "cp-join", "worker-join"):
    phase_query(_phase)(node_query)


def state_from_facts(facts: HostFacts) -> NodeState:
    return NodeState(
        manifests=facts.file(APISERVER_MANIFEST) is not None,
        kubelet_config=facts.file(KUBELET_CONFIG) is not None,
    )


def node_ops(files: Mapping[str, RenderedFile], facts: HostFacts) -> list[Op]:
    """The kubelet's units, kubeadm's config and the API server's configs; the kubelet enabled (pure).

    The kubelet is only enabled on a node kubeadm has not set up yet (kubeadm starts it and writes its
    config; started earlier it would only crash-loop). Once kubeadm has been there it must run, and it
    is restarted only when it is not running with the current unit and drop-in (the restart record of
    ``_common.restart_guard``: a change in this run, or one an earlier run wrote but never restarted on).
    """
    mine = kube_files(files)
    ops = [parents_op(facts, [*mine, applied_path(KUBELET)])]
    file_ops = {
        p: file(facts, p, f.content, mode=f.mode, owner=f.owner, group=f.group) for p, f in mine.items()
    }
    ops += file_ops.values()
    units = {p: sha256_hex(mine[p].content) for p in (KUBELET_UNIT, KUBELET_DROPIN) if p in mine}
    guard = restart_guard(facts, KUBELET, units)
    state = state_from_facts(facts)
    running = facts.unit(KUBELET).active or state.manifests or state.kubelet_config
    unit_changed = any(file_ops[p].changed for p in units)
    svc = service(
        facts, KUBELET, enabled=True, running=running, config_changed=guard.changed, unit_changed=unit_changed
    )
    return [*ops, svc, guard]


def converge_node_files(session: Session, host: Host, facts: HostFacts) -> OpResult:
    """Apply :func:`node_ops` for ``host`` (nothing on a dry run)."""
    ops = node_ops(rendered(session, host.name), facts)
    return apply(session.transport(host.name), ops, dry_run=session.dry_run)
