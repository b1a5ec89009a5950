"""Pure pieces of etcd backup and restore: names, retention, etcdctl output, command lines.

Nothing here touches a host, so every rule that decides what is kept, deleted or trusted is unit-tested
on its own. The host-side layout, one dated directory per snapshot (Kubespray's
``etcd-<date>_<time>/snapshot.db``, with our own UTC stamp so names sort in time order)::

    <spec.etcd.backup.dir>/etcd-20261129T020000Z/snapshot.db         0600, the etcd snapshot
                                                /snapshot.json       status, member, sha256 (no secrets)
                                                /snapshot.db.sha256  ``sha256sum`` format, written last

The ``.sha256`` file is written last on purpose: a directory that has it is complete; one without it is
the leftover of a run that died and is never offered for a restore.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from capstan.errors import CapstanError
from capstan.render.etcd import CLIENT_PORT, PEER_PORT, TLS_DIR

SNAPSHOT_FILE = "snapshot.db"
SHA_FILE = "snapshot.db.sha256"
META_FILE = "snapshot.json"
LOCAL_ENDPOINT = f"https://127.0.0.1:{CLIENT_PORT}"
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^etcd-(\d{8}T\d{6}Z)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SnapshotError(CapstanError):
    """A snapshot is missing, unreadable, or does not match its checksum (the message names where)."""


# ---- names ---------------------------------------------------------------------------------------


def utc_stamp(when: datetime) -> str:
    """``20261129T020000Z``: sortable, no characters a shell or a URL would mind."""
    if when.tzinfo is None:
        raise ValueError("a snapshot time must be timezone-aware")
    return when.astimezone(UTC).strftime(_STAMP)


def snapshot_name(when: datetime) -> str:
    """The dated directory name of a snapshot taken at ``when``."""
    return f"etcd-{utc_stamp(when)}"


def snapshot_time(name: str) -> datetime | None:
    """When the snapshot ``name`` was taken, or None when ``name`` is not one of ours."""
    m = _NAME.match(name)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1), _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def is_snapshot_name(name: str) -> bool:
    return snapshot_time(name) is not None


def newest(names: Iterable[str]) -> str | None:
    """The newest snapshot name (names that are not ours are ignored)."""
    ours = sorted(n for n in names if is_snapshot_name(n))
    return ours[-1] if ours else None


def new_cluster_token(cluster: str, when: datetime) -> str:
    """A token no earlier incarnation of the cluster used: a member left with old data cannot rejoin."""
    return f"{cluster}-etcd-restore-{utc_stamp(when).lower()}"


# ---- retention -----------------------------------------------------------------------------------


def retention_victims(
    complete: Iterable[str], partial: Iterable[str], keep: int, protect: str | None = None
) -> list[str]:
    """Directories to delete: complete snapshots beyond the newest ``keep``, and partial leftovers.

    Only names that are ours are ever returned (a foreign directory under the backup dir is never
    touched). ``protect`` (the snapshot this run is writing) is never returned.
    """
    if keep < 1:
        raise ValueError("retention must keep at least one snapshot")
    done = sorted({n for n in complete if is_snapshot_name(n)})
    leftovers = sorted({n for n in partial if is_snapshot_name(n)} - set(done))
    victims = done[:-keep] + leftovers
    return sorted(n for n in victims if n != protect)


# ---- what etcdctl prints -------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotStatus:
    """``etcdctl snapshot status -w json``: bbolt hash, revision, key count, size in bytes."""

    hash: int
    revision: int
    total_keys: int
    total_size: int


def parse_snapshot_status(text: str, where: str) -> SnapshotStatus:
    """Parse and sanity-check a snapshot's status; ``where`` names the file in errors."""
    try:
        data: Any = json.loads(text.strip().splitlines()[-1])
        status = SnapshotStatus(
            hash=int(data["hash"]),
            revision=int(data["revision"]),
            total_keys=int(data["totalKey"]),
            total_size=int(data["totalSize"]),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        raise SnapshotError(f"{where}: `snapshot status` printed no status") from None
    if status.revision < 0 or status.total_size <= 0 or status.total_keys < 0:
        raise SnapshotError(
            f"{where}: implausible snapshot status (revision {status.revision}, "
            f"{status.total_keys} keys, {status.total_size} bytes)"
        )
    return status


@dataclass(frozen=True)
class MemberHealth:
    """One member as seen from its own host: healthy or why not, its id, leadership and revision."""

    healthy: bool
    error: str = ""
    member_id: int | None = None
    leader: bool = False
    revision: int | None = None
    reachable: bool = True


def parse_member_health(health_json: str, status_json: str) -> MemberHealth:
    """``endpoint health -w json`` and ``endpoint status -w json`` for one endpoint."""
    try:
        health = json.loads(health_json)[0]
    except (ValueError, KeyError, IndexError, TypeError):
        return MemberHealth(False, "endpoint health printed nothing usable")
    if not health.get("health"):
        return MemberHealth(False, str(health.get("error") or "unhealthy"))
    try:
        st = json.loads(status_json)[0]["Status"]
        member_id = int(st["header"]["member_id"])
        return MemberHealth(
            True, "", member_id, int(st["leader"]) == member_id, int(st["header"]["revision"])
        )
    except (ValueError, KeyError, IndexError, TypeError):
        return MemberHealth(True)  # healthy; status is only used to prefer a follower


def choose_member(members: Sequence[tuple[str, MemberHealth]]) -> str | None:
    """The member to snapshot: the first healthy follower in spec order, else a healthy leader.

    A follower is preferred so the leader, which already carries the replication load, does not also
    stream the whole database.
    """
    healthy = [(name, h) for name, h in members if h.healthy]
    followers = [name for name, h in healthy if not h.leader]
    if followers:
        return followers[0]
    return healthy[0][0] if healthy else None


# ---- files ---------------------------------------------------------------------------------------


def sha256_line(hexdigest: str, filename: str = SNAPSHOT_FILE) -> str:
    """One line in ``sha256sum`` format, so ``sha256sum -c`` works on it by hand."""
    if not _HEX64.match(hexdigest):
        raise ValueError(f"not a sha256 hex digest: {hexdigest!r}")
    return f"{hexdigest}  {filename}\n"


def parse_sha256_file(text: str, where: str) -> str:
    """The digest in a ``.sha256`` file (``sha256sum`` format, or the bare digest)."""
    word = text.strip().split()[0].lower() if text.strip() else ""
    if not _HEX64.match(word):
        raise SnapshotError(f"{where}: not a sha256 file")
    return word


@dataclass(frozen=True)
class StoredSnapshot:
    """A dated directory found on a host: complete (has its .sha256) or a partial leftover."""

    name: str
    complete: bool
    size: int = 0
    sha256: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


LIST_SCRIPT = r"""d=$1
[ -d "$d" ] || exit 0
for p in "$d"/etcd-*; do
  [ -d "$p" ] || continue
  n=${p##*/}
  if [ -f "$p/snapshot.db" ] && [ -f "$p/snapshot.db.sha256" ]; then
    size=$(stat -c %s "$p/snapshot.db")
    printf 'complete\t%s\t%s\t%s\t' "$n" "$size" "$(head -c 64 "$p/snapshot.db.sha256")"
    if [ -f "$p/snapshot.json" ]; then tr -d '\n' < "$p/snapshot.json"; fi
    echo
  else
    printf 'partial\t%s\n' "$n"
  fi
done
"""
"""Lists ``$1``'s dated directories, one line each (parsed by ``parse_listing``); one round trip."""


def parse_listing(text: str) -> list[StoredSnapshot]:
    """``LIST_SCRIPT``'s output; lines that are not understood are skipped, names not ours ignored."""
    found: list[StoredSnapshot] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0] == "partial" and is_snapshot_name(parts[1]):
            found.append(StoredSnapshot(parts[1], False))
        elif len(parts) >= 4 and parts[0] == "complete" and is_snapshot_name(parts[1]):
            try:
                meta = json.loads(parts[4]) if len(parts) > 4 and parts[4].strip() else {}
            except ValueError:
                meta = {}
            size = int(parts[2]) if parts[2].isdigit() else 0
            sha = parts[3].lower() if _HEX64.match(parts[3].lower()) else ""
            found.append(
                StoredSnapshot(parts[1], bool(sha), size, sha, meta if isinstance(meta, dict) else {})
            )
    return sorted(found, key=lambda s: s.name)


def parse_env_file(text: str) -> dict[str, str]:
    """``NAME=value`` lines of an environment file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip().strip('"').strip("'")
    return env


# ---- command lines -------------------------------------------------------------------------------


def etcdctl_argv(
    *args: str, endpoint: str = LOCAL_ENDPOINT, tls_dir: str = TLS_DIR, command_timeout: int = 10
) -> list[str]:
    """etcdctl against one member with the local admin client certificate.

    Flags, not ``/etc/etcdctl.env``: the command is data we build and test, and a member's own endpoint
    only (``--endpoints`` with one URL) so a snapshot or a health answer is that member's.
    ``command_timeout`` (seconds) bounds the whole command, ``snapshot save``'s download included, so a
    snapshot needs far more than a health check.
    """
    return [
        "etcdctl",
        f"--endpoints={endpoint}",
        f"--cacert={tls_dir}/ca.crt",
        f"--cert={tls_dir}/etcdctl.crt",
        f"--key={tls_dir}/etcdctl.key",
        "--dial-timeout=3s",
        f"--command-timeout={command_timeout}s",
        *args,
    ]


def snapshot_tool(path: str) -> str:
    """The offline snapshot tool: ``etcdutl`` (etcd >= 3.5) when the host has it, else ``etcdctl``."""
    return "etcdutl" if path.rstrip().endswith("/etcdutl") or path.strip() == "etcdutl" else "etcdctl"


def status_argv(tool: str, snapshot: str) -> list[str]:
    return [tool, "snapshot", "status", snapshot, "-w", "json"]


def peer_url(ip: str) -> str:
    return f"https://{ip}:{PEER_PORT}"


def restore_argv(
    tool: str,
    snapshot: str,
    *,
    name: str,
    initial_cluster: str,
    token: str,
    peer: str,
    data_dir: str,
) -> list[str]:
    """``snapshot restore`` of one member into a new data directory (which must not exist yet)."""
    return [
        tool,
        "snapshot",
        "restore",
        snapshot,
        f"--name={name}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-token={token}",
        f"--initial-advertise-peer-urls={peer}",
        f"--data-dir={data_dir}",
    ]


# ---- phase notes ---------------------------------------------------------------------------------


def encode_note(data: dict[str, Any]) -> str:
    """A phase outcome's note carries the facts later phases need (JSON, never a secret).

    Outcomes are the persisted task results, so a retried flow run that skips a cached phase still
    knows, from its note, which member was snapshotted or where the old data directory went.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def decode_note(note: str) -> dict[str, Any]:
    try:
        data = json.loads(note)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def parse_member_list(text: str) -> dict[str, list[str]]:
    """``member list -w json``: member name -> its peer URLs (members not started yet have no name)."""
    try:
        members = json.loads(text)["members"]
        return {str(m.get("name", "")): sorted(str(u) for u in m.get("peerURLs", [])) for m in members}
    except (ValueError, KeyError, TypeError):
        raise SnapshotError("`member list` printed no member list") from None


def membership_problems(seen: dict[str, list[str]], want: dict[str, str]) -> list[str]:
    """Differences between the members etcd reports and the spec's (name -> peer URL)."""
    problems = [f"{name} is missing" for name in sorted(set(want) - set(seen))]
    problems += [f"unexpected member {name or '(unstarted)'}" for name in sorted(set(seen) - set(want))]
    problems += [
        f"{name} has peer URLs {','.join(seen[name])}, expected {url}"
        for name, url in sorted(want.items())
        if name in seen and seen[name] != [url]
    ]
    return problems
