"""Phase 2, pki: every host receives its own certificates and keys, and nothing else.

Pre-check: the files the host should hold (``material.host_pki``: existing good ones kept, missing or
stale ones issued) are compared by sha256, mode and owner with the host's facts. Action: only the
differing files are written (atomically, mode set before the rename). Post-check: facts again, and the
plan must find nothing left to do.

The CA comes first: ``material.roots`` loads it from the first control plane or creates it *there*
before any host receives a certificate signed by it.

Ownership. Private keys are 0600 and root-owned, except the two keys the etcd service itself reads
(``member.key``, ``peer.key``): etcd.service runs as ``User=etcd``, so those two are owned by the
``etcd`` system user, still 0600 (a group-readable key would widen access to anything in that group).
The ``etcd`` group and user are created here, on etcd hosts, before the files that name them.
``etcdctl.key`` is the local admin's and stays root's.

Not pushed: ``/etc/kubernetes/kubelet.conf``. kubeadm writes it itself (``init`` on the first control
plane, the TLS bootstrap on ``join``), and ``kubeadm join`` refuses a node where it already exists.
Configuration files (rendered) belong to the phases that use them, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from capstan.facts import FactsQuery, HostFacts
from capstan.ops import Op, file, group, user
from capstan.pki import ETCD_DIR, KUBE_DIR, HostFile
from capstan.spec.models import Host
from capstan.tasks import material
from capstan.tasks.create._common import converge, outcome, parent_dirs, parents_op
from capstan.tasks.hostfacts import facts_for, phase_query
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session

ETCD_USER = "etcd"
ETCD_READS = (f"{ETCD_DIR}/member.key", f"{ETCD_DIR}/peer.key")
"""Keys the etcd service (``User=etcd``) opens itself."""
NOT_PUSHED = (f"{KUBE_DIR}/kubelet.conf",)
"""Files kubeadm must create itself (see the module doc)."""


@dataclass(frozen=True)
class PkiFile:
    path: str
    content: bytes = field(repr=False)
    mode: int
    owner: str
    secret: bool


def pki_files(host: Host, wanted: Mapping[str, HostFile]) -> list[PkiFile]:
    """What ``host`` receives from its PKI material, with the owner each file must have."""
    out = []
    for path, hf in wanted.items():
        if path in NOT_PUSHED:
            continue
        owner = ETCD_USER if host.has("etcd") and path in ETCD_READS else "root"
        out.append(PkiFile(path, hf.content, hf.mode, owner, hf.secret))
    return out


def pki_query(files: list[PkiFile]) -> FactsQuery:
    paths = tuple(f.path for f in files)
    return FactsQuery(files=paths + parent_dirs(paths), users=(ETCD_USER,), groups=(ETCD_USER,), binaries=())


def etcd_account_ops(facts: HostFacts, home: str) -> list[Op]:
    """The ``etcd`` system group and user (no login, home = the data directory, not created here)."""
    return [
        group(facts, ETCD_USER),
        user(facts, ETCD_USER, group=ETCD_USER, home=home, comment="etcd (managed by capstan)"),
    ]


def pki_plan(facts: HostFacts, host: Host, files: list[PkiFile], *, etcd_home: str) -> list[Op]:
    """Pure: the ops that bring ``host`` to exactly ``files`` (none when it already matches)."""
    ops: list[Op] = []
    if host.has("etcd"):
        ops += etcd_account_ops(facts, etcd_home)
    ops.append(parents_op(facts, [f.path for f in files]))
    for f in files:
        kind = "key" if f.secret else "certificate"
        ops.append(
            file(
                facts,
                f.path,
                f.content,
                mode=f.mode,
                owner=f.owner,
                group=f.owner,
                description=f"{kind} {f.path}",
            )
        )
    return ops


@phase_query("pki")
def pki_read_query(session: Session, host: Host) -> FactsQuery:
    """Everything the phase asks ``host``: its PKI files' state and their contents (the certificates
    kept when still good), the etcd account. Pure (the paths come from the spec), so phase 1 can ask
    it in its own gather."""
    paths = material.host_pki_paths(session, host.name)
    pushed = tuple(p for p in paths if p not in NOT_PUSHED)
    return FactsQuery(
        files=pushed + parent_dirs(pushed),
        contents=paths,
        users=(ETCD_USER,),
        groups=(ETCD_USER,),
        binaries=(),
    )


@host_phase_impl("pki")
def pki_phase(session: Session, host: Host) -> PhaseOutcome:
    material.roots(session)  # the CA exists on the first control plane before anything it signs
    query = pki_read_query(session, host)
    facts = facts_for(session, host, query, phase="pki")
    existing = {p: c for p in query.contents if (c := facts.content(p)) is not None}
    files = pki_files(host, material.host_pki(session, host.name, existing=existing))
    home = session.cluster.spec.etcd.data_dir

    def plan(facts: HostFacts) -> list[Op]:
        return pki_plan(facts, host, files, etcd_home=home)

    result, _ = converge(session, host, pki_query(files), plan, "pki")
    keys = sum(1 for f in files if f.secret)
    return outcome("pki", host, [result], note=f"{len(files)} files ({keys} secret)")
