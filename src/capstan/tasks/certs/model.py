"""The pure half of ``capstan certs``: which certificates are close to expiry, and what a renewal restarts.

Everything here works on bytes already fetched from the hosts, so the decisions (flag, push, restart)
can be tested without a machine. Private keys pass through ``plan_host`` only to check that a kept leaf
still matches its key; nothing derived from a key is ever returned in a row or a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from capstan.pki import ETCD_DIR, KUBE_DIR, PKI_DIR, expiry_report, files_for_host, generate
from capstan.pki.inputs import PKIInputs
from capstan.pki.layout import host_slots

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
STATIC_PODS = (APISERVER, CONTROLLER_MANAGER, SCHEDULER)
"""Restarted in this order on a control plane (the apiserver first: the other two talk to it)."""

NOT_RENEWED = (f"{KUBE_DIR}/kubelet.conf",)
"""kubeadm writes kubelet.conf and the kubelet rotates its own client certificate; renew leaves it."""

_ETCD_READS = frozenset(
    f"{ETCD_DIR}/{n}" for n in ("ca.crt", "member.crt", "member.key", "peer.crt", "peer.key")
)
_APISERVER_READS = frozenset(
    {f"{PKI_DIR}/{n}.{ext}" for n in ("apiserver", "apiserver-kubelet-client", "front-proxy-client",
                                      "apiserver-etcd-client") for ext in ("crt", "key")}
    | {f"{PKI_DIR}/ca.crt", f"{PKI_DIR}/front-proxy-ca.crt", f"{PKI_DIR}/etcd/ca.crt"}
)  # fmt: skip
_READS = {
    ETCD: _ETCD_READS,
    APISERVER: _APISERVER_READS,
    CONTROLLER_MANAGER: frozenset({f"{KUBE_DIR}/controller-manager.conf"}),
    SCHEDULER: frozenset({f"{KUBE_DIR}/scheduler.conf"}),
}


@dataclass(frozen=True)
class CertRow:
    """One certificate on one host (no key material: subject and dates only)."""

    host: str
    path: str
    subject: str
    not_after: datetime
    days_left: int
    is_ca: bool
    flagged: bool

    @property
    def status(self) -> str:
        if self.days_left < 0:
            return "EXPIRED"
        return "RENEW" if self.flagged else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "path": self.path,
            "subject": self.subject,
            "kind": "CA" if self.is_ca else "leaf",
            "not_after": f"{self.not_after:%Y-%m-%d %H:%M}Z",
            "days_left": self.days_left,
            "status": self.status,
        }


KUBELET_FILES = ("/var/lib/kubelet/pki/kubelet-client-current.pem", "/var/lib/kubelet/pki/kubelet.crt")
"""Checked, never renewed: kubelet.conf points at the first, the kubelet's own rotated client cert."""


def cert_paths(inputs: PKIInputs, host: str) -> tuple[str, ...]:
    """The files on ``host`` that carry certificates: PEM certificates, kubeconfigs, the kubelet's.

    Kubeconfigs and the kubelet's client ``.pem`` hold a key too; it stays in memory, only the
    certificate's subject and dates come out.
    """
    paths = tuple(s.path for s in host_slots(inputs, host) if s.part in ("cert", "kubeconfig"))
    return paths + (KUBELET_FILES if inputs.node(host).is_kube_node else ())


def key_paths(inputs: PKIInputs, host: str) -> tuple[str, ...]:
    return tuple(s.path for s in host_slots(inputs, host) if s.part in ("key", "sa-key", "sa-pub"))


def check_rows(files: Mapping[str, Mapping[str, bytes]], now: datetime, within: timedelta) -> list[CertRow]:
    """Every certificate on every host, soonest expiry first; ``flagged`` when within ``within``."""
    rows = []
    for host, host_files in files.items():
        for r in expiry_report(host_files, now):
            flagged = r.not_after - now <= within
            rows.append(CertRow(host, r.path, r.subject, r.not_after, r.days_left, r.is_ca, flagged))
    return sorted(rows, key=lambda r: (r.not_after, r.host, r.path))


@dataclass(frozen=True)
class HostRenewal:
    """What renewing ``host`` means: the files to rewrite, the components to restart, and why."""

    host: str
    files: dict[str, bytes]
    restarts: tuple[str, ...]
    reasons: dict[str, str]
    skipped: dict[str, str]

    def __repr__(self) -> str:  # file contents include private keys: never in a repr
        return f"HostRenewal({self.host!r}, files={sorted(self.files)}, restarts={self.restarts})"


def restarts_for(paths: Iterable[str], *, etcd: bool, control_plane: bool) -> tuple[str, ...]:
    """The components that read any of ``paths`` at start and run on this host, in restart order."""
    changed = set(paths)
    wanted = []
    if etcd and changed & _READS[ETCD]:
        wanted.append(ETCD)
    if control_plane:
        wanted += [c for c in STATIC_PODS if changed & _READS[c]]
    return tuple(wanted)


def plan_host(
    inputs: PKIInputs,
    roots: Mapping[str, bytes],
    host: str,
    existing: Mapping[str, bytes],
    now: datetime,
    within: timedelta,
) -> HostRenewal:
    """Re-issue the leaves of ``host`` that expire within ``within`` (or are otherwise stale).

    The CAs and the service-account key come from ``roots`` and are never replaced. Only files that
    exist on the host, belong to a re-issued leaf and differ are rewritten: a missing file is the
    create flow's business, and kubelet.conf is the kubelet's own (``NOT_RENEWED``).
    """
    pki, issued = generate(inputs, roots, now=now, renew_within=within, existing_hosts={host: existing})
    reissued = set(issued)
    wanted = files_for_host(pki, host)
    node = inputs.node(host)
    files: dict[str, bytes] = {}
    reasons: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for slot in host_slots(inputs, host):
        if slot.name not in reissued or slot.path not in wanted:
            continue
        reason = pki.reasons.get(slot.name, "")
        if slot.path in NOT_RENEWED:
            if reason.startswith("expires"):  # say so only when the certificate in it is expiring
                skipped[slot.path] = f"{reason}; not renewed here (the kubelet rotates its own credential)"
        elif slot.path not in existing:
            skipped[slot.path] = "missing on the host (run create to install it)"
        elif wanted[slot.path].content != existing[slot.path]:
            files[slot.path] = wanted[slot.path].content
            reasons[slot.path] = reason
    restarts = restarts_for(files, etcd=node.is_etcd, control_plane=node.is_control_plane)
    return HostRenewal(host, files, restarts, reasons, skipped)


def updated_record(record: bytes, shas: Mapping[str, str]) -> bytes:
    """A restart record (``sha256  path`` lines) with the given paths' hashes replaced.

    Keeps the create flow's restart guard true after a renewal restarted the service itself: the next
    create run finds the record equal to the files and does not restart the service again.
    """
    lines = []
    for line in record.decode("utf-8", "replace").splitlines():
        _digest, sep, path = line.partition("  ")
        lines.append(f"{shas[path]}  {path}" if sep and path in shas else line)
    return ("\n".join(lines) + "\n").encode() if lines else record


def renew_order(hosts: Iterable[tuple[str, bool, bool]]) -> list[str]:
    """Hosts (name, etcd, control plane) in the order renewed: etcd members, control planes, the rest."""
    items = list(hosts)
    return [name for name, etcd, cp in sorted(items, key=lambda h: (not h[1], not h[2], items.index(h)))]
