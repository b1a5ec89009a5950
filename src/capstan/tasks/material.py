"""Cluster-wide material every phase needs: the CAs, the generated secrets, each host's PKI files.

The cluster is the source of truth (architecture principle): the CAs and the cluster secrets live on
the first control plane, and every run reads them from there. When they do not exist yet, they are
created once (under the session's lock) and written to the first control plane *before* any other host
receives anything derived from them, so a run that dies half-way can never leave two CAs behind.

Nothing here is returned from a task: keys and secrets stay in the session's memory.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta

from capstan.errors import CapstanError, CommandFailed
from capstan.pki import (
    CA_FILES,
    CA_KUBERNETES,
    SA_FILES,
    ClusterPKI,
    HostFile,
    cluster_ca_pem,
    files_for_host,
    generate,
)
from capstan.pki.layout import host_slots
from capstan.plan.material import pki_inputs
from capstan.render import RenderedFile, Secrets, ca_cert_hash, new_secrets, render_host
from capstan.tasks.session import Session

SECRETS_PATH = "/etc/kubernetes/capstan/cluster-secrets.json"
_ROOT_FILES = tuple(p for pair in CA_FILES.values() for p in pair) + SA_FILES


def read_files(session: Session, host: str, paths: tuple[str, ...]) -> dict[str, bytes]:
    """Fetch whichever of ``paths`` exist on ``host`` in one round trip (missing ones are left out)."""
    if not paths:
        return {}
    script = 'for f in "$@"; do if [ -f "$f" ]; then printf "%s\\n" "$f"; base64 -w0 "$f"; echo; fi; done'
    out = session.reader(host).run(["sh", "-c", script, "capstan", *paths], sudo=True).stdout
    lines = out.splitlines()
    return {lines[i]: base64.b64decode(lines[i + 1]) for i in range(0, len(lines) - 1, 2)}


def _first_cp(session: Session) -> str:
    return session.cluster.control_planes[0].name


def _make_parents(session: Session, host: str, paths: tuple[str, ...], mode: int) -> None:
    """Create the directories ``paths`` go into: a put replaces a file in place and makes no directory."""
    parents = sorted({p.rsplit("/", 1)[0] for p in paths})
    session.transport(host).run(["install", "-d", "-m", f"{mode:04o}", *parents], sudo=True)


class MaterialMissing(CapstanError):
    """Read-only mode: the cluster material asked for does not exist (yet) or cannot be read."""


_READ_ONLY: ContextVar[bool] = ContextVar("capstan_material_read_only", default=False)


@contextmanager
def read_only() -> Iterator[None]:
    """Inside, material that does not exist is not created: ``MaterialMissing`` is raised instead.

    Why: phase 1 looks ahead (``capstan.tasks.hostfacts``) to gather, in the same round trip, what
    later phases will ask a host, and most of those questions need the rendered files, hence the CA
    and the cluster secrets. On an existing cluster they are read (once per run, as always); on a new
    one they stay uncreated until the pki phase, since phase 1 must change nothing anywhere.
    """
    token = _READ_ONLY.set(True)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


def _found_roots(session: Session) -> dict[str, bytes]:
    """The CA material on the first control plane; empty when any of it is missing or unreadable."""
    try:
        found = read_files(session, _first_cp(session), _ROOT_FILES)
    except CapstanError:
        return {}
    return found if all(p in found for p in _ROOT_FILES) else {}


def _load_or_create_roots(session: Session) -> dict[str, bytes]:
    first = _first_cp(session)
    earlier = session.memo.get("pki-roots-found")  # a read-only look earlier in this run
    if isinstance(earlier, dict) and earlier:
        return earlier
    found = read_files(session, first, _ROOT_FILES)
    if all(p in found for p in _ROOT_FILES):
        return found
    if found:
        missing = ", ".join(p for p in _ROOT_FILES if p not in found)
        raise CapstanError(
            f"{first}: the cluster CA material is incomplete (missing {missing}); refusing to replace it"
        )
    pki, _ = generate(pki_inputs(session.cluster))
    roots = {path: hf.content for path, hf in files_for_host(pki, first).items() if path in _ROOT_FILES}
    if not session.dry_run:
        t = session.transport(first)
        _make_parents(session, first, _ROOT_FILES, 0o755)
        for path in _ROOT_FILES:  # keys first written 0600, root-owned
            mode = 0o644 if path.endswith((".crt", ".pub")) else 0o600
            t.put(path, roots[path], mode=mode, owner="root", group="root", sudo=True)
    return roots


def roots(session: Session) -> dict[str, bytes]:
    """The CA certificates and keys and the service-account key pair, as files on the first CP."""
    if _READ_ONLY.get() and "pki-roots" not in session.memo:
        found = session.once("pki-roots-found", lambda: _found_roots(session))
        if not found:
            raise MaterialMissing(f"{_first_cp(session)}: no cluster CA yet")
        assert isinstance(found, dict)
        return found
    value = session.once("pki-roots", lambda: _load_or_create_roots(session))
    assert isinstance(value, dict)
    return value


EXISTING_CLUSTER_MARK = "/etc/kubernetes/encryption-config.yaml"
"""Present on a control plane of a cluster that already encrypts Secrets at rest with its key."""


def _load_or_create_secrets(session: Session) -> Secrets:
    """The cluster's secrets from the first control plane; new ones only for a cluster that has none.

    A first control plane without the secrets file but with an encryption configuration belongs to a
    running cluster whose key went missing (a host replaced, a file deleted): minting a new key there
    would make every stored Secret unreadable, so that is refused.
    """
    first = _first_cp(session)
    earlier = session.memo.get("secrets-found")  # a read-only look earlier in this run
    if isinstance(earlier, Secrets):
        return earlier
    raw = _secrets_file(session)
    if raw:
        return _parse_secrets(first, raw)
    existing = session.reader(first).run(["test", "-e", EXISTING_CLUSTER_MARK], sudo=True, check=False)
    if existing.exit_code == 0:
        raise CapstanError(
            f"{first}: {SECRETS_PATH} is missing but {EXISTING_CLUSTER_MARK} exists: this cluster "
            "already encrypts Secrets with a key capstan cannot find; refusing to make a new one (stored "
            "Secrets would become unreadable). Put the secrets file back (a copy from another control "
            "plane or a backup) and run again"
        )
    secrets = new_secrets()
    if not session.dry_run:
        body = json.dumps(
            {"encryption_key_b64": secrets.encryption_key_b64, "bootstrap_token": secrets.bootstrap_token}
        ).encode()
        _make_parents(session, first, (SECRETS_PATH,), 0o700)
        session.transport(first).put(SECRETS_PATH, body, mode=0o600, owner="root", group="root", sudo=True)
    return secrets


def _secrets_file(session: Session) -> bytes:
    try:
        return session.transport(_first_cp(session)).get(SECRETS_PATH, sudo=True)
    except CommandFailed:
        return b""


def _parse_secrets(first: str, raw: bytes) -> Secrets:
    try:
        return Secrets(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise CapstanError(f"{first}: {SECRETS_PATH} is unreadable ({type(exc).__name__})") from None


def _found_secrets(session: Session) -> Secrets | None:
    """The secrets on the first control plane; None when missing or unreadable (nothing is judged
    here: the pki phase's normal load says what is wrong)."""
    try:
        raw = _secrets_file(session)
        return _parse_secrets(_first_cp(session), raw) if raw else None
    except CapstanError:
        return None


def cluster_secrets(session: Session) -> Secrets:
    """The at-rest encryption key and the bootstrap token, kept on the first control plane."""
    if _READ_ONLY.get() and "secrets" not in session.memo:
        found = session.once("secrets-found", lambda: _found_secrets(session))
        if not isinstance(found, Secrets):
            raise MaterialMissing(f"{_first_cp(session)}: no cluster secrets yet")
        return found
    value = session.once("secrets", lambda: _load_or_create_secrets(session))
    assert isinstance(value, Secrets)
    return value


def host_pki_paths(session: Session, host: str) -> tuple[str, ...]:
    """Where ``host``'s PKI files go (pure: from the spec alone)."""
    return tuple(slot.path for slot in host_slots(pki_inputs(session.cluster), host))


def host_pki(
    session: Session,
    host: str,
    renew_within: timedelta | None = None,
    *,
    existing: Mapping[str, bytes] | None = None,
) -> dict[str, HostFile]:
    """The PKI files ``host`` must hold: existing good ones kept, missing or stale ones issued.

    ``existing``: the host's current files (path -> bytes, missing ones left out) when the caller
    has them already; else they are read from the host.
    """
    inputs = pki_inputs(session.cluster)
    slots = host_slots(inputs, host)
    if existing is None:
        existing = read_files(session, host, tuple(slot.path for slot in slots))
    window = renew_within or timedelta(days=session.cluster.spec.pki.renew_within_days)
    pki, _ = generate(
        inputs,
        roots(session),
        renew_within=window,
        existing_hosts={host: existing},
        only={slot.name for slot in slots},
    )
    return files_for_host(pki, host)


def ca_hash(session: Session) -> str:
    """``sha256:<hex>`` of the cluster CA's public key, for kubeadm's discovery pin."""
    return ca_cert_hash(roots(session)[CA_FILES[CA_KUBERNETES][0]])


def rendered(session: Session, host: str) -> Mapping[str, RenderedFile]:
    """Every configuration file for ``host`` (memoised per run: several phases use parts of it)."""

    def compute() -> dict[str, RenderedFile]:
        return render_host(session.cluster, host, cluster_secrets(session), ca_cert_hash=ca_hash(session))

    value = session.once(f"rendered:{host}", compute)
    assert isinstance(value, dict)
    return value


def cluster_pki(session: Session) -> ClusterPKI:
    """A full PKI built on the cluster's roots (for the admin kubeconfig and reports)."""
    pki, _ = generate(pki_inputs(session.cluster), roots(session))
    return pki


__all__ = [
    "SECRETS_PATH",
    "MaterialMissing",
    "ca_hash",
    "cluster_ca_pem",
    "cluster_pki",
    "cluster_secrets",
    "host_pki",
    "host_pki_paths",
    "read_files",
    "read_only",
    "rendered",
    "roots",
]
