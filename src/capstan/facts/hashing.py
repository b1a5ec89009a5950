"""sha256 of big files on a host: the fastest hasher there, and a cache of sums already computed.

These are POSIX sh functions that go into the scripts capstan runs on hosts (the facts gather, the
artifact installs, the artifacts post-check). They are defined once here so every script hashes the
same way and reads and writes the same cache.

``hashof FILE`` prints FILE's sha256. It prefers ``openssl dgst``: OpenSSL hashes with the CPU's
vector or SHA instructions, GNU coreutils' ``sha256sum`` (9.1 in Debian 12) with plain C. On the lab
machine (AVX2, no SHA extensions) that is 390 MB/s against 146 MB/s, and a create hashes some 250 MB
per host (each archive, each member, each installed binary). Where openssl is missing or prints
anything but a 64-character digest, ``sha256sum`` does the work; ``CAPSTAN_HASH_WITH=sha256sum`` forces
that (for tests). Small files are still hashed by one batched ``sha256sum`` in the gather: for them
a process start costs more than the hashing.

``sumof FILE [SIZE SIGNATURE]`` prints FILE's sha256, hashing big files only when they changed since
last time (a caller that has just run ``stat`` on FILE passes its size and signature, saving two more
``stat`` processes per file; the cache file's name comes from shell string operations, not ``tr``). Why: a
converged run asks for the sum of every installed binary (some 200 MB per host) only to learn that
nothing changed; hashing that on every run made the artifacts phase the slowest of a re-run. The
cache entry holds the file's stat signature (device, inode, size, mtime and ctime, both to the
nanosecond) and the sum it had then; any write, rename over or chmod changes the ctime, which no
user can set back, so a matching signature means the same bytes. A signature is taken before hashing,
so a file changed during the hash gets a stale signature and is hashed again next time. Small files
are always hashed (cheaper than the lookup). Entries are written only where /var/lib/capstan exists
already (a host capstan has installed to): gathering facts on a fresh host writes nothing.
``CAPSTAN_SUM_CACHE`` moves the cache (for tests of the functions themselves).

``sumkeep FILE SUM`` records a sum that the calling script has just computed itself, for the file it
has just put in place: an install hashes the new file before renaming it over the old one (nobody else
can write that private temporary file), so the sum is known and the post-check and the next run's
facts need not read 100 MB again to learn it. The signature is taken after the rename, of the file as
it now is.
"""

from __future__ import annotations

__all__ = ["SUM_CACHE_DIR", "SUM_CACHE_MIN_SIZE", "SUM_FUNCTION"]

SUM_CACHE_DIR = "/var/lib/capstan/sums"
SUM_CACHE_MIN_SIZE = 1 << 20
"""Files this large get their sha256 cached on the host, keyed by a full stat signature."""
SIGNATURE_FORMAT = "%d|%i|%s|%y|%z"
"""``stat -c`` format of the signature a cache entry holds (device, inode, size, mtime, ctime)."""

_HASHOF = r"""hashof() {
  if [ "${CAPSTAN_HASH_WITH:-}" != sha256sum ] && command -v openssl >/dev/null 2>&1; then
    h=$(openssl dgst -sha256 -r < "$1" 2>/dev/null | cut -d" " -f1)
    if [ ${#h} -eq 64 ]; then echo "$h"; return; fi
  fi
  sha256sum < "$1" | cut -d" " -f1
}
"""

_CACHE = (
    r"""sumkey() {
  C=${CAPSTAN_SUM_CACHE:-"""
    + SUM_CACHE_DIR
    + r"""}
  [ -d "${C%/*}" ] || return 1
  if [ $# -ge 3 ]; then sz=$2 sig=$3
  else sz=$(stat -L -c %s -- "$1" 2>/dev/null || echo 0) sig=; fi
  [ "$sz" -ge """
    + str(SUM_CACHE_MIN_SIZE)
    + r""" ] || return 1
  k=$1 kn=
  while :; do case $k in */*) kn=$kn${k%%/*}_ k=${k#*/} ;; *) kn=$kn$k; break ;; esac; done
  k=$C/$kn
  [ -n "$sig" ] || sig=$(stat -L -c '"""
    + SIGNATURE_FORMAT
    + r"""' -- "$1" 2>/dev/null)
}
sumput() {
  if mkdir -p "$C" 2>/dev/null && printf '%s\n%s\n' "$sig" "$1" > "$k.$$" 2>/dev/null
  then mv -f "$k.$$" "$k"; else rm -f "$k.$$" 2>/dev/null; fi
}
sumof() {
  if ! sumkey "$@"; then hashof "$1"; return; fi
  if [ -r "$k" ]; then
    { IFS= read -r csig || csig=; IFS= read -r csum || csum=; } < "$k"
    if [ "$csig" = "$sig" ] && [ ${#csum} -eq 64 ]; then echo "$csum"; return; fi
  fi
  v=$(hashof "$1")
  sumput "$v"
  echo "$v"
}
sumkeep() {
  if sumkey "$1" && [ ${#2} -eq 64 ]; then sumput "$2"; fi
  return 0
}
"""
)

SUM_FUNCTION = _HASHOF + _CACHE
"""The shell functions ``hashof``, ``sumof`` and ``sumkeep`` (and their helpers ``sumkey``, ``sumput``)."""
