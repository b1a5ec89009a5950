"""The ``etcd-servers`` phase: every apiserver talks to exactly the spec's etcd members.

Contract (scale-cluster and remove-node both run it; import ``ETCD_SERVERS_PHASE`` and hand it to
``capstan.tasks.runner.run_phase`` with a session):

- The wanted endpoint list is ``render.etcd.etcd_endpoints(session.cluster)``: the client URLs of the
  etcd hosts of the *session's* cluster, in spec order. A flow that removes an etcd host runs this
  phase with a session whose cluster no longer has that host (and should do so *before* the member is
  removed, so no apiserver is left pointing at it); a flow that adds members runs it after they are
  healthy.
- Hosts: every control plane of ``session.cluster``, one at a time (``serial``): the phase stops at
  the first control plane that fails, so at most one apiserver is out of service at any moment.
- On each control plane, and only where something differs from the wanted list:
  1. capstan's kubeadm config file ``/etc/kubernetes/kubeadm-config.yaml`` (only the first control
     plane's holds a ClusterConfiguration; a JoinConfiguration has no etcd endpoints): when its
     ``etcd.external.endpoints`` differ it is replaced by the file create renders for that host, so a
     later ``capstan create`` finds it converged;
  2. the static pod manifest ``/etc/kubernetes/manifests/kube-apiserver.yaml``: the one
     ``--etcd-servers=`` line is rewritten in place (the rest of kubeadm's file stays byte-identical).
     The kubelet restarts the apiserver on a changed manifest; the phase waits until an apiserver
     process runs with the new flag and then for ``/readyz`` at that control plane's address.
  A control plane without a manifest (not joined yet) is skipped with a note: ``kubeadm join`` takes
  the endpoints from the kubeadm-config ConfigMap, which is updated before any later join runs.
- The ``kube-system/kubeadm-config`` ConfigMap's ClusterConfiguration (what later joins and
  ``kubeadm upgrade`` render manifests from) is updated in the task of the *last* control plane of the
  phase, after every apiserver runs with the new list: a ConfigMap that still lists the old endpoints
  therefore means an earlier run did not finish, and ``configmap_endpoints`` lets a flow detect that
  without contacting any host.
- Dry run: reads and reports what would change; writes nothing.
- The outcome counts each of the three items as changed or unchanged; its note says what changed.
  No secret passes through the outcome.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx2
import yaml
from lightkube import ApiError
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from capstan.errors import CapstanError
from capstan.kube import KubeError
from capstan.plan.phases import Phase
from capstan.render.etcd import etcd_endpoints
from capstan.spec.models import Cluster, Host
from capstan.tasks import material
from capstan.tasks.create import _kube
from capstan.tasks.create._kubeadm import APISERVER_MANIFEST, KUBEADM_CONFIG
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

PHASE_ID = "etcd-servers"
CONFIGMAP = ("kube-system", "kubeadm-config")
RESTART_TIMEOUT = 300.0
"""Seconds for the kubelet to restart the apiserver with the new flag and for it to answer /readyz."""
POLL_INTERVAL = 1.0

_FLAG_LINE = re.compile(r"^(?P<lead>\s*-\s+)(?P<q>['\"]?)--etcd-servers=(?P<value>[^'\"\s]*)(?P=q)\s*$")


class EtcdServersError(CapstanError):
    """A control plane's apiserver configuration cannot be read or brought to the wanted etcd list."""


def _control_planes(c: Cluster) -> list[Host]:
    return c.control_planes


ETCD_SERVERS_PHASE = Phase(
    PHASE_ID,
    "apiserver etcd endpoints",
    "serial",
    _control_planes,
    "each apiserver's --etcd-servers (manifest, kubeadm config, kubeadm-config ConfigMap) set to the "
    "spec's etcd hosts, one control plane at a time, each waiting for /readyz",
)


def wanted(cluster: Cluster) -> list[str]:
    """The endpoint list every apiserver should use (the spec's etcd hosts, in order)."""
    return etcd_endpoints(cluster)


def manifest_servers(text: str, where: str) -> list[str]:
    """The ``--etcd-servers`` value of a kube-apiserver static pod manifest (exactly one such line)."""
    found = [m.group("value") for m in map(_FLAG_LINE.match, text.splitlines()) if m]
    if len(found) != 1:
        raise EtcdServersError(
            f"{where}: expected one --etcd-servers line in the apiserver manifest, found {len(found)}"
        )
    return [v for v in found[0].split(",") if v]


def with_servers(text: str, servers: list[str]) -> str:
    """The manifest with its ``--etcd-servers`` line set to ``servers``; every other byte kept."""
    value = ",".join(servers)
    out = []
    for line in text.splitlines(keepends=True):
        m = _FLAG_LINE.match(line.rstrip("\r\n"))
        if m:
            ending = line[len(line.rstrip("\r\n")) :]
            line = f"{m.group('lead')}{m.group('q')}--etcd-servers={value}{m.group('q')}{ending}"
        out.append(line)
    return "".join(out)


def _cluster_doc(docs: list[Any]) -> dict[str, Any] | None:
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "ClusterConfiguration":
            return doc
    return None


def _external_endpoints(doc: dict[str, Any], where: str) -> list[str]:
    external = (doc.get("etcd") or {}).get("external")
    if not isinstance(external, dict):
        raise EtcdServersError(f"{where}: the ClusterConfiguration has no external etcd section")
    return [str(e) for e in external.get("endpoints") or []]


def config_endpoints(text: str, where: str) -> list[str] | None:
    """``etcd.external.endpoints`` of a kubeadm config file, or None when it has no ClusterConfiguration."""
    try:
        doc = _cluster_doc(list(yaml.safe_load_all(text)))
    except yaml.YAMLError as exc:
        raise EtcdServersError(f"{where}: not readable YAML ({type(exc).__name__})") from None
    return None if doc is None else _external_endpoints(doc, where)


def updated_cluster_configuration(text: str, servers: list[str], where: str) -> str | None:
    """The ConfigMap's ClusterConfiguration with ``servers`` as its endpoints; None when already so."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EtcdServersError(
            f"{where}: ClusterConfiguration is not readable YAML ({type(exc).__name__})"
        ) from None
    if not isinstance(doc, dict):
        raise EtcdServersError(f"{where}: ClusterConfiguration is not a mapping")
    if _external_endpoints(doc, where) == servers:
        return None
    doc["etcd"]["external"]["endpoints"] = list(servers)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def running_servers(ps_output: str) -> list[list[str]]:
    """The ``--etcd-servers`` lists of every apiserver process in ``pgrep -af kube-apiserver`` output."""
    found = []
    for line in ps_output.splitlines():
        for word in line.split():
            if word.startswith("--etcd-servers="):
                found.append([v for v in word.split("=", 1)[1].split(",") if v])
    return found


def _read_configmap(session: Session) -> tuple[str, str]:
    """(ClusterConfiguration text, API server used) of the kubeadm-config ConfigMap."""
    access = _kube.admin_access(session)
    namespace, name = CONFIGMAP
    try:
        with access.client(timeout=30.0) as client:
            cm = client.get(ConfigMap, name, namespace=namespace)
    except (httpx2.HTTPError, ApiError) as exc:
        raise KubeError(f"API {access.server}: cannot read ConfigMap {namespace}/{name}: {exc}") from None
    text = (cm.data or {}).get("ClusterConfiguration")
    if not text:
        raise KubeError(f"ConfigMap {namespace}/{name} holds no ClusterConfiguration")
    return text, access.server


def configmap_endpoints(session: Session) -> list[str]:
    """The etcd endpoints kubeadm-config's ClusterConfiguration lists (read through the API only)."""
    text, server = _read_configmap(session)
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise KubeError(f"API {server}: kubeadm-config's ClusterConfiguration is not a mapping")
    return _external_endpoints(doc, "kubeadm-config ConfigMap")


def update_configmap(session: Session, servers: list[str]) -> bool:
    """Set kubeadm-config's etcd endpoints to ``servers``; True when it changed (or would, dry run)."""
    text, server = _read_configmap(session)
    new = updated_cluster_configuration(text, servers, "kubeadm-config ConfigMap")
    if new is None or session.dry_run:
        return new is not None
    namespace, name = CONFIGMAP
    access = _kube.admin_access(session)
    try:
        with access.client(timeout=30.0) as client:
            client.patch(
                ConfigMap,
                name,
                {"data": {"ClusterConfiguration": new}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
    except (httpx2.HTTPError, ApiError) as exc:
        raise KubeError(f"API {server}: cannot update ConfigMap {namespace}/{name}: {exc}") from None
    return True


def _wait_running(session: Session, host: Host, servers: list[str], deadline: float) -> None:
    """Until every apiserver process on ``host`` runs with ``servers`` (the kubelet restarted it)."""
    t = session.transport(host.name)
    last = "no kube-apiserver process"
    while True:
        res = t.run(["pgrep", "-af", "kube-apiserver"], sudo=True, check=False, timeout=30)
        lists = running_servers(res.stdout)
        if lists and all(found == servers for found in lists):
            return
        if lists:
            last = "running with --etcd-servers=" + " / ".join(",".join(x) for x in lists)
        if time.monotonic() >= deadline:
            raise EtcdServersError(
                f"{host.name}: the kubelet did not restart kube-apiserver with the new --etcd-servers "
                f"within {RESTART_TIMEOUT:.0f} s ({last})"
            )
        time.sleep(POLL_INTERVAL)


def _sync_kubeadm_config(session: Session, host: Host, servers: list[str]) -> bool | None:
    """Replace capstan's kubeadm config with the render when its endpoints differ; None: nothing to do."""
    t = session.transport(host.name)
    if not t.run(["test", "-f", KUBEADM_CONFIG], sudo=True, check=False).ok:
        return None
    where = f"{host.name}:{KUBEADM_CONFIG}"
    installed = config_endpoints(t.get(KUBEADM_CONFIG, sudo=True).decode("utf-8", "replace"), where)
    if installed is None:
        return None  # a JoinConfiguration: the node takes its endpoints from the cluster
    if installed == servers:
        return False
    rendered = material.rendered(session, host.name).get(KUBEADM_CONFIG)
    if rendered is None or config_endpoints(rendered.text, where) != servers:
        raise EtcdServersError(f"{where}: the rendered kubeadm config does not list the wanted endpoints")
    if not session.dry_run:
        t.put(
            KUBEADM_CONFIG,
            rendered.content,
            mode=rendered.mode,
            owner=rendered.owner,
            group=rendered.group,
            sudo=True,
        )
    return True


def _sync_manifest(session: Session, host: Host, servers: list[str]) -> bool | None:
    """Rewrite the manifest's flag and wait for the restarted apiserver; None when there is no manifest."""
    t = session.transport(host.name)
    if not t.run(["test", "-f", APISERVER_MANIFEST], sudo=True, check=False).ok:
        return None
    text = t.get(APISERVER_MANIFEST, sudo=True).decode("utf-8")
    if manifest_servers(text, f"{host.name}:{APISERVER_MANIFEST}") == servers:
        return False
    if session.dry_run:
        return True
    mode = t.run(["stat", "-c", "%a", APISERVER_MANIFEST], sudo=True).stdout.strip() or "600"
    t.put(APISERVER_MANIFEST, with_servers(text, servers).encode(), mode=int(mode, 8), sudo=True)
    deadline = time.monotonic() + RESTART_TIMEOUT
    _wait_running(session, host, servers, deadline)
    problem = _kube.wait_readyz(session, host, timeout=max(deadline - time.monotonic(), 30.0))
    if problem:
        raise EtcdServersError(f"{host.name}: apiserver not ready after the --etcd-servers change: {problem}")
    return True


@host_phase_impl(PHASE_ID)
def etcd_servers_phase(session: Session, host: Host) -> PhaseOutcome:
    servers = wanted(session.cluster)
    if not servers:
        raise EtcdServersError(f"cluster {session.cluster.name} has no etcd hosts: nothing to point at")
    results = {
        "kubeadm config": _sync_kubeadm_config(session, host, servers),
        "apiserver manifest": _sync_manifest(session, host, servers),
    }
    last = ETCD_SERVERS_PHASE.hosts(session.cluster)[-1].name
    if host.name == last:
        results["kubeadm-config ConfigMap"] = update_configmap(session, servers)
    changed = [k for k, v in results.items() if v]
    unchanged = [k for k, v in results.items() if v is False]
    verb = "would update" if session.dry_run else "updated"
    notes = [f"{verb} {', '.join(changed)} to {len(servers)} etcd endpoints"] if changed else []
    if results["apiserver manifest"] is None:
        notes.append("no apiserver manifest yet (kubeadm join takes the endpoints from kubeadm-config)")
    return PhaseOutcome(PHASE_ID, host.name, len(changed), len(unchanged), note="; ".join(notes))


__all__ = [
    "ETCD_SERVERS_PHASE",
    "PHASE_ID",
    "EtcdServersError",
    "config_endpoints",
    "configmap_endpoints",
    "manifest_servers",
    "running_servers",
    "update_configmap",
    "wanted",
    "with_servers",
]
