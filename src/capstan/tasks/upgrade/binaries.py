"""The new version's binaries on one host, sha256-verified, reusing the create flow's artifacts code.

The session's cluster carries the *target* Kubernetes version, so ``artifacts.pinned`` yields the new
kubeadm/kubelet/kubectl (and the new etcd, when its pin changes), with the sums from the pinned table
or ``spec.artifacts.extraChecksums``. Only the named artifacts are installed: kubeadm must be replaced
before ``kubeadm upgrade`` runs, the kubelet and kubectl only after it, and nothing else (containerd,
the CNI plugins) changes in an upgrade.

Pre-check and post-check are the same facts: the installed file's sha256 against the pinned sum. A
host whose files already match is not written to; after an install, the facts are gathered again and
must match, or the step fails naming the files.
"""

from __future__ import annotations

from collections.abc import Iterable

from capstan.facts import HostFacts, gather_facts
from capstan.ops import OpResult, apply
from capstan.spec.models import Host
from capstan.tasks.create._common import PostCheckFailed, parents_op
from capstan.tasks.create.artifacts import (
    Install,
    artifacts_query,
    etcd_top,
    install_artifact,
    installs_for,
    needs_bytes,
    pinned,
)
from capstan.tasks.session import Session
from capstan.versions import Artifact

KUBE = ("kubeadm", "kubelet", "kubectl")
ETCD = ("etcd",)


def _wanted(
    session: Session, host: Host, names: Iterable[str]
) -> tuple[HostFacts, dict[str, Artifact], dict[str, list[Install]]]:
    """Facts about the named artifacts' files on ``host``, the target artifacts, and the installs."""
    c = session.cluster
    keep = set(names)
    probe = [i for i in installs_for(c, host) if i.artifact in keep]
    facts = gather_facts(session.transport(host.name), artifacts_query(probe))
    arts = pinned(c, facts.arch)
    by_artifact: dict[str, list[Install]] = {}
    for i in installs_for(c, host, etcd_top(arts["etcd"])):
        if i.artifact in keep:
            by_artifact.setdefault(i.artifact, []).append(i)
    return facts, arts, by_artifact


def stale(session: Session, host: Host, names: Iterable[str] = KUBE) -> list[str]:
    """The files of the named artifacts on ``host`` that are not the target version's (by sha256)."""
    facts, arts, by_artifact = _wanted(session, host, names)
    return [i.dest for name, todo in by_artifact.items() for i in todo if needs_bytes(facts, arts[name], [i])]


def install(session: Session, host: Host, names: Iterable[str]) -> list[OpResult]:
    """Install the target version of the named artifacts on ``host`` where they differ; post-checked."""
    names = tuple(names)
    facts, arts, by_artifact = _wanted(session, host, names)
    t = session.transport(host.name)
    dests = [i.dest for todo in by_artifact.values() for i in todo]
    results = [apply(t, parents_op(facts, dests), dry_run=session.dry_run)]
    for name, todo in by_artifact.items():
        results.append(install_artifact(session, host, facts, arts[name], todo))
    if any(r.changed for r in results) and not session.dry_run:
        left = stale(session, host, names)
        if left:
            raise PostCheckFailed(
                f"{host.name}: upgrade: not the target version after install: {', '.join(left)}"
            )
    return results
