"""Phase 3, artifacts: the pinned binaries each host's roles need, sha256-verified before install.

What goes where (``installs_for``): Kubernetes nodes get kubeadm, kubelet and kubectl, the container
runtime (containerd + runc, or the CRI-O bundle), crictl and the basic CNI plugins; etcd hosts get etcd
and etcdctl. Binaries go to ``/usr/local/bin`` (the rendered units point there), CNI plugins to
``/opt/cni/bin``, CRI-O's helpers to ``/usr/libexec/crio`` where its bundle keeps them.

Pre-check: the installed file's sha256 (facts) against the pinned sum, or for an archive member whose own
sum is not pinned, the stamp ``ops.archive_member`` keeps. Nothing is downloaded or uploaded when it
matches. Action, by ``spec.artifacts.mode``:

- ``pull``: the host downloads with curl (from ``spec.artifacts.mirror`` when set). An archive is
  downloaded once (its sum checked) and the members that are needed come out of it in one tar pass.
- ``push``: the orchestrator downloads each artifact once per run into ``spec.artifacts.cacheDir``
  (streamed to a temporary file, sha256 checked, then renamed; a cached file with the right sum is
  reused across runs) and uploads only what a host lacks, a few uploads at a time.

Post-check: every file installed by this run is in place, a regular file, 0755 and root's (its sum was
verified before it was renamed into place, so it is not hashed a second time).

Where sums come from: the pinned table and ``spec.artifacts.extraChecksums`` only. A mirror's own
``sha256sums.txt`` is *not* trusted: it comes from the same server as the file it would vouch for. An
artifact without a sum is an ArtifactError naming where to add one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from capstan.errors import ArtifactError, CommandFailed, PlanError
from capstan.facts import FactsQuery, HostFacts
from capstan.facts.hashing import SUM_FUNCTION
from capstan.ops import Command, Op, OpResult, apply, archive_member, archive_members, binary, stamp_path
from capstan.spec.models import Cluster, Host
from capstan.tasks.create._common import PostCheckFailed, outcome, parents_op, tail
from capstan.tasks.hostfacts import facts_for, phase_query
from capstan.tasks.runner import PhaseOutcome, host_phase_impl
from capstan.tasks.session import Session
from capstan.versions import Artifact, artifacts_for, default_kubernetes_version

BIN_DIR = "/usr/local/bin"
CNI_BIN_DIR = "/opt/cni/bin"
CRIO_LIBEXEC_DIR = "/usr/libexec/crio"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
"""The reference plugins the CNI add-ons rely on (calico/cilium/flannel bring their own binaries)."""
CONTAINERD_MEMBERS = ("containerd", "ctr", "containerd-shim-runc-v2")
CRIO_BIN = ("crio", "pinns")
CRIO_LIBEXEC = ("conmon", "conmonrs", "crun", "runc")
RUNTIME_ARTIFACT = {"containerd": "containerd", "cri-o": "crio"}
"""Spec runtime name -> artifact name in capstan.versions."""
PULL_TOOLS = ("curl", "sha256sum", "tar", "mktemp")
MAX_UPLOADS = 4
_UPLOADS = threading.BoundedSemaphore(MAX_UPLOADS)


@dataclass(frozen=True)
class Install:
    """One file on the host: ``member`` of the artifact's archive (None: the artifact is the file)."""

    artifact: str
    dest: str
    member: str | None = None


def installs_for(cluster: Cluster, host: Host, etcd_top: str = "") -> list[Install]:
    """Every binary ``host`` needs for its roles (``etcd_top``: the etcd archive's top directory)."""
    out: list[Install] = []
    if host in cluster.nodes:
        out += [Install(n, f"{BIN_DIR}/{n}") for n in ("kubeadm", "kubelet", "kubectl")]
        if cluster.spec.container_runtime.name == "cri-o":
            out += [Install("crio", f"{BIN_DIR}/{n}", f"cri-o/bin/{n}") for n in CRIO_BIN]
            out += [Install("crio", f"{CRIO_LIBEXEC_DIR}/{n}", f"cri-o/bin/{n}") for n in CRIO_LIBEXEC]
        else:
            out += [Install("containerd", f"{BIN_DIR}/{n}", f"bin/{n}") for n in CONTAINERD_MEMBERS]
            out.append(Install("runc", f"{BIN_DIR}/runc"))
        out.append(Install("crictl", f"{BIN_DIR}/crictl", "crictl"))
        out += [Install("cni-plugins", f"{CNI_BIN_DIR}/{n}", f"./{n}") for n in CNI_PLUGINS]
    if host.has("etcd"):
        out += [Install("etcd", f"{BIN_DIR}/{n}", f"{etcd_top}/{n}") for n in ("etcd", "etcdctl")]
    return out


def artifacts_query(installs: list[Install]) -> FactsQuery:
    dests = tuple(i.dest for i in installs)
    stamps = tuple(stamp_path(i.dest) for i in installs if i.member is not None)
    dirs = tuple(sorted({d.rsplit("/", 1)[0] for d in dests}))
    return FactsQuery(files=dests + dirs, contents=stamps, binaries=())


def pinned(cluster: Cluster, arch: str) -> dict[str, Artifact]:
    """The artifacts of the spec's Kubernetes version for ``arch``, by name (URLs via the mirror)."""
    a = cluster.spec.artifacts
    arts = artifacts_for(
        cluster.spec.kubernetes.version or default_kubernetes_version(),
        arch,
        mirror=a.mirror,
        extra_checksums=a.extra_checksums,
        runtime=RUNTIME_ARTIFACT[cluster.spec.container_runtime.name],
        cni="none",
    )
    return {x.name: x for x in arts}


def etcd_top(art: Artifact) -> str:
    """etcd's release archive holds ``etcd-v<version>-linux-<arch>/{etcd,etcdctl}``."""
    return art.filename.removesuffix(".tar.gz")


def _fetches(op: Op, url: str) -> bool:
    """True when the op would download ``url`` (rather than only fix a mode or do nothing)."""
    return any(isinstance(s, Command) and url in s.argv for s in op.steps)


def pull_ops(facts: HostFacts, art: Artifact, installs: list[Install]) -> list[Op]:
    """Pure: the ops installing ``installs`` of ``art`` by letting the host download it.

    An archive is downloaded once for all its members that need installing, and unpacked in one pass.
    """
    want = art.require_sha256()
    ops = [binary(facts, i.dest, sha256=want, url=art.url) for i in installs if i.member is None]
    members = [(i.member, i.dest) for i in installs if i.member is not None]
    if members:
        ops.append(archive_members(facts, members, archive_sha256=want, url=art.url))
    return ops


def push_ops(facts: HostFacts, art: Artifact, installs: list[Install], content: bytes) -> list[Op]:
    """Pure: the ops installing ``installs`` of ``art`` from bytes the orchestrator holds."""
    want = art.require_sha256()
    return [
        binary(facts, i.dest, sha256=want, content=content)
        if i.member is None
        else archive_member(facts, i.dest, archive_sha256=want, member=i.member, content=content)
        for i in installs
    ]


def needs_bytes(facts: HostFacts, art: Artifact, installs: list[Install]) -> bool:
    """Whether any of ``installs`` must be (re)installed from the artifact's content."""
    return any(_fetches(op, art.url) for op in pull_ops(facts, art, installs))


def download(art: Artifact, cache_dir: Path, *, timeout: float = 60.0) -> Path:
    """The artifact in the orchestrator's cache, downloaded (once) and sha256-checked.

    Streams to a temporary file next to the target and renames it into place only when the sum
    matches, so the cache never holds a partial or wrong file under the final name.
    """
    want = art.require_sha256()
    path = cache_dir / art.cache_path
    if path.is_file() and _file_sha256(path) == want:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(art.url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != want:
            raise ArtifactError(
                f"{art.name} {art.version} from {art.url}: sha256 mismatch: expected {want}, got {got}"
            )
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ArtifactError(f"cannot download {art.name} {art.version} from {art.url}: {reason}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cached(session: Session, art: Artifact) -> Path:
    cache_dir = Path(session.cluster.spec.artifacts.cache_dir).expanduser()
    value = session.once(f"artifact:{art.cache_path}", lambda: download(art, cache_dir))
    assert isinstance(value, Path)
    return value


def apply_pull(session: Session, host: Host, art: Artifact, ops: list[Op]) -> OpResult:
    try:
        return apply(session.transport(host.name), ops, dry_run=session.dry_run)
    except CommandFailed as exc:
        raise ArtifactError(
            f"{host.name}: installing {art.name} {art.version} from {art.url} failed "
            f"(exit {exc.exit_code}): {tail(exc.stderr) or 'no error output'}"
        ) from None


def apply_push(
    session: Session, host: Host, facts: HostFacts, art: Artifact, todo: list[Install]
) -> OpResult:
    if session.dry_run or not needs_bytes(facts, art, todo):
        # Nothing to upload (at most a mode or owner to fix), or a dry run: report, fetch nothing.
        return apply(session.transport(host.name), pull_ops(facts, art, todo), dry_run=session.dry_run)
    content = _cached(session, art).read_bytes()
    with _UPLOADS:
        return apply(session.transport(host.name), push_ops(facts, art, todo, content))


def install_artifact(
    session: Session, host: Host, facts: HostFacts, art: Artifact, todo: list[Install]
) -> OpResult:
    """Install ``todo`` (files of one artifact) on ``host`` the way ``spec.artifacts.mode`` says."""
    if session.cluster.spec.artifacts.mode == "pull":
        return apply_pull(session, host, art, pull_ops(facts, art, todo))
    return apply_push(session, host, facts, art, todo)


_VERIFY = (
    SUM_FUNCTION
    + r"""for f; do
  printf '%s|%s|%s\n' "$f" "$(stat -L -c '%F|%a|%U' -- "$f" 2>/dev/null)" "$(sumof "$f")"
done
"""
)


def verify_in_place(session: Session, host: Host, wanted: dict[str, str | None]) -> None:
    """Post-check: every installed file is there, a regular file, 0755 and root's, with its sum.

    ``wanted`` maps each installed path to its pinned sha256 (None for an archive member whose own sum
    is not pinned; its archive's sum was checked before extracting). A pull install recorded the sum
    it checked in the host's sum cache under the file's stat signature (``capstan.facts.hashing``), so
    a file still as the install left it is not read again; a pushed file, or one changed since, is
    hashed here and recorded, so the next run's facts only stat these files.
    """
    dests = list(wanted)
    res = session.reader(host.name).run(["sh", "-c", _VERIFY, "verify", *dests], sudo=True, check=False)
    seen: dict[str, tuple[str, str]] = {}
    for line in res.stdout.splitlines():
        path, _, rest = line.partition("|")
        attrs, _, got = rest.rpartition("|")
        seen[path] = (attrs, got)
    wrong = []
    for dest, want in wanted.items():
        attrs, got = seen.get(dest, ("", ""))
        if attrs != "regular file|755|root" or (want is not None and got != want):
            wrong.append(dest)
    if wrong:
        raise PostCheckFailed(f"{host.name}: artifacts: not installed as wanted: {', '.join(wrong)}")


def _check_tools(facts: HostFacts, host: Host) -> None:
    missing = [t for t in PULL_TOOLS if not facts.has_tool(t)]
    if missing:
        raise PlanError(
            f"{host.name}: artifacts.mode pull needs {', '.join(missing)} on the host; install "
            "them or use spec.artifacts.mode: push"
        )


@phase_query("artifacts")
def _query(session: Session, host: Host) -> FactsQuery:
    return artifacts_query(installs_for(session.cluster, host))


@host_phase_impl("artifacts")
def artifacts_phase(session: Session, host: Host) -> PhaseOutcome:
    c = session.cluster
    t = session.transport(host.name)
    facts = facts_for(session, host, _query(session, host), phase="artifacts")
    arts = pinned(c, facts.arch)
    installs = installs_for(c, host, etcd_top(arts["etcd"]))
    by_artifact: dict[str, list[Install]] = {}
    for i in installs:
        by_artifact.setdefault(i.artifact, []).append(i)
    pull = c.spec.artifacts.mode == "pull"
    results = [apply(t, parents_op(facts, [i.dest for i in installs]), dry_run=session.dry_run)]
    if pull and any(needs_bytes(facts, arts[n], todo) for n, todo in by_artifact.items()):
        _check_tools(facts, host)
    touched: dict[str, list[Install]] = {}
    for name, todo in by_artifact.items():
        results.append(install_artifact(session, host, facts, arts[name], todo))
        if results[-1].changed:
            touched[name] = todo

    if touched and not session.dry_run:
        wanted = {
            i.dest: (arts[name].require_sha256() if i.member is None else None)
            for name, todo in touched.items()
            for i in todo
        }
        verify_in_place(session, host, wanted)
    return outcome("artifacts", host, results, note=f"{len(installs)} binaries, {c.spec.artifacts.mode}")
