"""Binaries from pinned artifacts: verified by sha256 *before* install, installed by atomic rename.

Two ways to get the bytes there: *pull* (the host runs curl against a URL, e.g. an offline mirror)
or *push* (the orchestrator already holds the bytes and uploads them). Either way the sum is
checked before anything replaces the installed file, and the new file appears by ``rename`` in the
target directory, so a running service never sees half a binary.

Nothing is downloaded when the installed file already has the wanted sha256. For a member of a
tar.gz whose own sum is not pinned (upstreams often publish only the archive's), a stamp file
under ``STAMP_DIR`` records which archive the installed file came from and the sum it had.

The scripts hash with ``hashof`` and record the sum they checked in the host's sum cache
(``capstan.facts.hashing``) once the file is in place, so neither the post-check nor the next run's
facts read the new binary again to learn its sum.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

from capstan.errors import ArtifactError
from capstan.facts.hashing import SUM_FUNCTION
from capstan.facts.model import HostFacts
from capstan.facts.query import FactsQuery
from capstan.ops.base import Command, Op, PutFile, Step, script
from capstan.ops.files import fix_attributes

__all__ = ["STAMP_DIR", "archive_member", "archive_members", "artifact_query", "binary", "stamp_path"]

STAMP_DIR = "/var/lib/capstan/artifacts"
_TIMEOUT = 600.0

_FETCH = (
    SUM_FUNCTION
    + r"""set -eu
url=$1 sum=$2 dest=$3
tmp=$(mktemp "$dest.capstan-XXXXXX")
trap 'rm -f "$tmp"' EXIT
curl -fsSL --retry 3 --connect-timeout 10 -o "$tmp" "$url"
got=$(hashof "$tmp")
[ "$got" = "$sum" ] || { echo "sha256 mismatch for $url: expected $sum, got $got" >&2; exit 1; }
"""
)

_FINISH = r"""chmod "$4" "$out"
if [ -n "$5" ] && [ -n "$6" ]; then chown "$5:$6" "$out"; elif [ -n "$5" ]; then chown "$5" "$out"; fi
mv -f "$out" "$dest"
sumkeep "$dest" "$got"
"""

_PULL_BINARY = _FETCH + "out=$tmp\n" + _FINISH + "trap - EXIT\n"

_PULL_MEMBER = (
    _FETCH
    + r"""member=$7 msum=$8 stamp=$9
out=$(mktemp "$dest.capstan-XXXXXX")
trap 'rm -f "$tmp" "$out"' EXIT
tar -xzf "$tmp" -O "$member" > "$out"
got=$(hashof "$out")
[ -z "$msum" ] || [ "$got" = "$msum" ] || { echo "sha256 mismatch for $member in $url" >&2; exit 1; }
"""
    + _FINISH
    + r"""mkdir -p "$(dirname "$stamp")"
printf '%s %s %s\n' "$sum" "$member" "$got" > "$stamp"
"""
)


# Several members of one archive: one download, one sum check, one tar pass; then each member is
# installed and stamped exactly as _PULL_MEMBER does. Arguments: url sum mode owner group, then
# "member dest stamp member-sum" per member (member-sum may be empty).
_PULL_MEMBERS = (
    SUM_FUNCTION
    + r"""set -eu
url=$1 sum=$2 mode=$3 owner=$4 group=$5
shift 5
work=$(mktemp -d "${TMPDIR:-/var/tmp}/capstan-XXXXXX")
out=
trap 'rm -rf "$work"; [ -z "$out" ] || rm -f "$out"' EXIT
curl -fsSL --retry 3 --connect-timeout 10 -o "$work/archive" "$url"
got=$(hashof "$work/archive")
[ "$got" = "$sum" ] || { echo "sha256 mismatch for $url: expected $sum, got $got" >&2; exit 1; }
i=0
for a in "$@"; do [ $((i % 4)) -eq 0 ] && printf '%s\n' "$a"; i=$((i + 1)); done > "$work/members"
mkdir "$work/x"
tar -xzf "$work/archive" -C "$work/x" -T "$work/members"
while [ $# -ge 4 ]; do
  member=$1 dest=$2 stamp=$3 msum=$4
  shift 4
  [ -f "$work/x/$member" ] || { echo "$member is not a file in $url" >&2; exit 1; }
  out=$(mktemp "$dest.capstan-XXXXXX")
  cat "$work/x/$member" > "$out"
  got=$(hashof "$out")
  [ -z "$msum" ] || [ "$got" = "$msum" ] || { echo "sha256 mismatch for $member in $url" >&2; exit 1; }
  chmod "$mode" "$out"
  if [ -n "$owner" ] && [ -n "$group" ]; then chown "$owner:$group" "$out"
  elif [ -n "$owner" ]; then chown "$owner" "$out"; fi
  mv -f "$out" "$dest"
  out=
  sumkeep "$dest" "$got"
  mkdir -p "$(dirname "$stamp")"
  printf '%s %s %s\n' "$sum" "$member" "$got" > "$stamp"
done
"""
)


def stamp_path(dest: str) -> str:
    """Where the provenance of an archive-extracted file is recorded."""
    return f"{STAMP_DIR}/{dest.strip('/').replace('/', '_')}"


def artifact_query(dest: str) -> FactsQuery:
    """The facts ``binary``/``archive_member`` need for ``dest``."""
    return FactsQuery(files=(dest,), contents=(stamp_path(dest),), binaries=())


def _check_sum(what: str, data: bytes, expected: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != expected.lower():
        raise ArtifactError(f"{what}: sha256 mismatch: expected {expected}, got {got}")


def _sum(value: str) -> str:
    s = value.lower().removeprefix("sha256:")
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ArtifactError(f"not a sha256 sum: {value!r}")
    return s


def binary(
    facts: HostFacts,
    dest: str,
    *,
    sha256: str,
    url: str | None = None,
    content: bytes | None = None,
    mode: int = 0o755,
    owner: str = "root",
    group: str = "root",
) -> Op:
    """Install a single-file artifact at ``dest`` from ``url`` (pull) or ``content`` (push).

    Needs ``artifact_query(dest)`` in the facts query.
    """
    want = _sum(sha256)
    desc = f"binary {dest}"
    info = facts.file(dest)
    if info is not None and info.sha256 == want:
        steps = fix_attributes(dest, info, mode=mode, owner=owner, group=group)
        return Op(desc, tuple(steps), "" if steps else "installed, sha256 matches")
    if content is not None:
        _check_sum(desc, content, want)
        return Op(desc, (PutFile(dest, content, mode, owner, group),), "push")
    if url is None:
        raise ArtifactError(f"{facts.host}: {desc}: neither a URL nor content given")
    step = script(_PULL_BINARY, url, want, dest, f"{mode:04o}", owner, group, timeout=_TIMEOUT)
    return Op(desc, (step,), f"pull {url}")


def archive_member(
    facts: HostFacts,
    dest: str,
    *,
    archive_sha256: str,
    member: str,
    member_sha256: str | None = None,
    url: str | None = None,
    content: bytes | None = None,
    mode: int = 0o755,
    owner: str = "root",
    group: str = "root",
) -> Op:
    """Install ``member`` of a tar.gz at ``dest``; the archive sum is verified before extracting.

    Skipped when the installed file has ``member_sha256``, or (sum not pinned) when the stamp says
    it came from this very archive and the file is unchanged since. Needs ``artifact_query(dest)``.
    """
    archive_sum = _sum(archive_sha256)
    member_sum = _sum(member_sha256) if member_sha256 else None
    desc = f"binary {dest} from {member}"
    info = facts.file(dest)
    stamp = stamp_path(dest)
    installed = info.sha256 if info is not None else None
    if installed is not None and info is not None:
        recorded = (facts.content(stamp) or b"").decode(errors="replace").split()
        from_stamp = recorded[:2] == [archive_sum, member] and recorded[2:3] == [installed]
        if installed == member_sum or (member_sum is None and from_stamp):
            fixes = fix_attributes(dest, info, mode=mode, owner=owner, group=group)
            return Op(desc, tuple(fixes), "" if fixes else "installed, sha256 matches")
    if content is not None:
        _check_sum(f"archive for {desc}", content, archive_sum)
        data = _extract(content, member, desc)
        if member_sum is not None:
            _check_sum(desc, data, member_sum)
        record = f"{archive_sum} {member} {hashlib.sha256(data).hexdigest()}\n".encode()
        steps: tuple[Step, ...] = (
            PutFile(dest, data, mode, owner, group),
            Command(("mkdir", "-p", STAMP_DIR)),
            PutFile(stamp, record, 0o644),
        )
        return Op(desc, steps, "push")
    if url is None:
        raise ArtifactError(f"{facts.host}: {desc}: neither a URL nor content given")
    step = script(
        _PULL_MEMBER,
        *(url, archive_sum, dest, f"{mode:04o}", owner, group, member, member_sum or "", stamp),
        timeout=_TIMEOUT,
    )
    return Op(desc, (step,), f"pull {url}")


def _extract(archive: bytes, member: str, what: str) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise ArtifactError(f"{what}: {member} is not a regular file in the archive")
            return handle.read()
    except KeyError:
        raise ArtifactError(f"{what}: the archive has no member {member}") from None
    except tarfile.TarError as exc:
        raise ArtifactError(f"{what}: cannot read the archive: {exc}") from None


def archive_members(
    facts: HostFacts,
    members: list[tuple[str, str]],
    *,
    archive_sha256: str,
    url: str,
    member_sha256: dict[str, str] | None = None,
    mode: int = 0o755,
    owner: str = "root",
    group: str = "root",
) -> Op:
    """Pull several ``(member, dest)`` of one tar.gz: one download, one tar pass, one op.

    Each member is skipped exactly when ``archive_member`` would skip it (same sums, same stamps), so
    the two can be mixed freely; an archive with many members is downloaded and decompressed once
    instead of once per member. Needs ``artifact_query(dest)`` for every dest.
    """
    archive_sum = _sum(archive_sha256)
    sums = member_sha256 or {}
    words: list[str] = []
    fixes: list[Step] = []
    wanted: list[str] = []
    for member, dest in members:
        one = archive_member(
            facts, dest, archive_sha256=archive_sum, member=member, member_sha256=sums.get(member), url=url
        )
        if any(isinstance(x, Command) and x.argv[2:3] == (_PULL_MEMBER,) for x in one.steps):
            words += [member, dest, stamp_path(dest), _sum(sums[member]) if member in sums else ""]
            wanted.append(dest)
        else:
            fixes += one.steps
    desc = f"binaries {', '.join(d for _, d in members)} from {url.rsplit('/', 1)[-1]}"
    if not wanted:
        return Op(desc, tuple(fixes), "" if fixes else "installed, sha256 matches")
    step = script(_PULL_MEMBERS, url, archive_sum, f"{mode:04o}", owner, group, *words, timeout=_TIMEOUT)
    return Op(desc, (*fixes, step), f"pull {url}: {', '.join(wanted)}")
