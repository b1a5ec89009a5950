"""The host-side sha256 cache (``capstan.facts.query.SUM_FUNCTION``), run by a real ``sh``.

What must hold: the sum printed is always the file's real sum; a big unchanged file is not hashed
again (proved by planting a wrong sum under the right signature: it is believed); any change of the
file (rewrite of the same size, chmod, replacement) makes it hashed again; small files and hosts
without capstan's state directory never get cache entries.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from capstan.facts.query import SUM_CACHE_MIN_SIZE, SUM_FUNCTION


def sumof(path: Path, cache: Path) -> str:
    res = subprocess.run(
        ["sh", "-c", SUM_FUNCTION + 'sumof "$1"', "sumof", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CAPSTAN_SUM_CACHE": str(cache)},
        check=True,
    )
    return res.stdout.strip()


def entry(cache: Path, path: Path) -> Path:
    return cache / str(path).replace("/", "_")


def test_big_file_is_hashed_once_then_trusted_while_its_signature_holds(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cache = state / "sums"
    big = tmp_path / "kubelet"
    data = os.urandom(SUM_CACHE_MIN_SIZE + 1)
    big.write_bytes(data)
    real = hashlib.sha256(data).hexdigest()

    assert sumof(big, cache) == real
    rec = entry(cache, big)
    sig, cached = rec.read_text().splitlines()
    assert cached == real
    rec.write_text(f"{sig}\n{'0' * 64}\n")  # a planted sum under the right signature is believed:
    assert sumof(big, cache) == "0" * 64  # so the file was not read again

    big.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, new content: new ctime and mtime
    changed = hashlib.sha256(big.read_bytes()).hexdigest()
    assert sumof(big, cache) == changed

    rec.write_text(f"{rec.read_text().splitlines()[0]}\n{'1' * 64}\n")
    big.chmod(0o700)  # a chmod alone changes the ctime
    assert sumof(big, cache) == changed

    replacement = tmp_path / "new"
    replacement.write_bytes(data)
    replacement.rename(big)  # renamed over: another inode
    assert sumof(big, cache) == real


def test_small_files_and_hosts_without_state_get_no_cache_entries(tmp_path: Path) -> None:
    small = tmp_path / "small.conf"
    small.write_bytes(b"x" * 100)
    state = tmp_path / "state"
    state.mkdir()
    assert sumof(small, state / "sums") == hashlib.sha256(b"x" * 100).hexdigest()
    assert not (state / "sums").exists()

    big = tmp_path / "big"
    big.write_bytes(b"y" * (SUM_CACHE_MIN_SIZE + 10))
    fresh = tmp_path / "no-such-state" / "sums"
    assert sumof(big, fresh) == hashlib.sha256(big.read_bytes()).hexdigest()
    assert not fresh.parent.exists()
