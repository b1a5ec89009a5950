"""The host-side sha256 functions (``capstan.facts.hashing``), run by a real ``sh``.

What must hold: the sum printed is always the file's real sum, whichever hasher the host has; a big
unchanged file is not hashed again (proved by planting a wrong sum under the right signature: it is
believed); any change of the file (rewrite of the same size, chmod, replacement) makes it hashed
again; small files and hosts without capstan's state directory never get cache entries; a sum an
install recorded with ``sumkeep`` is what the next ``sumof`` answers, until the file changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from capstan.facts.query import SUM_CACHE_MIN_SIZE, SUM_FUNCTION


def run(call: str, *args: str, cache: Path | None = None, **env: str) -> str:
    more = {"CAPSTAN_SUM_CACHE": str(cache)} if cache is not None else {}
    res = subprocess.run(
        ["/bin/sh", "-c", SUM_FUNCTION + call, "sums", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **more, **env},
        check=True,
    )
    return res.stdout.strip()


def sumof(path: Path, cache: Path) -> str:
    return run('sumof "$1"', str(path), cache=cache)


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


def tools_without_openssl(where: Path) -> str:
    """A PATH holding the tools the functions use, and no openssl."""
    where.mkdir()
    for tool in ("sha256sum", "cut", "stat", "tr", "mkdir", "mv", "rm", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (where / tool).symlink_to(found)
    return str(where)


@pytest.mark.parametrize("how", ["openssl", "forced sha256sum", "no openssl", "openssl prints junk"])
def test_hashof_gives_the_real_sum_with_any_hasher(tmp_path: Path, how: str) -> None:
    data = os.urandom(3 * SUM_CACHE_MIN_SIZE + 5)
    f = tmp_path / "containerd"
    f.write_bytes(data)
    env: dict[str, str] = {}
    if how == "openssl":
        assert shutil.which("openssl"), "the machine has openssl (Debian package openssl)"
    elif how == "forced sha256sum":
        env["CAPSTAN_HASH_WITH"] = "sha256sum"
    elif how == "no openssl":
        env["PATH"] = tools_without_openssl(tmp_path / "bin")
    else:
        junk = tmp_path / "junk"
        junk.mkdir()
        (junk / "openssl").write_text("#!/bin/sh\necho 'SHA2-256(stdin)= not-a-digest'\n")
        (junk / "openssl").chmod(0o755)
        env["PATH"] = f"{junk}:{os.environ['PATH']}"
    assert run('hashof "$1"', str(f), **env) == hashlib.sha256(data).hexdigest()


def test_hashof_of_an_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty"
    f.write_bytes(b"")
    assert run('hashof "$1"', str(f)) == hashlib.sha256(b"").hexdigest()


def test_a_kept_sum_is_answered_without_reading_the_file_until_it_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cache = state / "sums"
    big = tmp_path / "ctr"
    big.write_bytes(os.urandom(SUM_CACHE_MIN_SIZE + 1))
    planted = "c" * 64  # not the real sum: answering it proves the file was not read
    assert run('sumkeep "$1" "$2"', str(big), planted, cache=cache) == ""
    assert sumof(big, cache) == planted

    big.chmod(0o700)  # any change after the record: hashed again, for real
    assert sumof(big, cache) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_sumkeep_records_nothing_for_small_files_hosts_without_state_or_bad_sums(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    small = tmp_path / "small"
    small.write_bytes(b"z" * 10)
    run('sumkeep "$1" "$2"', str(small), "d" * 64, cache=state / "sums")
    assert not (state / "sums").exists()

    big = tmp_path / "big"
    big.write_bytes(b"y" * (SUM_CACHE_MIN_SIZE + 10))
    run('sumkeep "$1" "$2"', str(big), "d" * 64, cache=tmp_path / "no-state" / "sums")
    assert not (tmp_path / "no-state").exists()
    run('sumkeep "$1" "$2"', str(big), "short", cache=state / "sums")
    assert not (state / "sums").exists()
    run('sumkeep "$1" "$2"', str(tmp_path / "absent"), "d" * 64, cache=state / "sums")
    assert not (state / "sums").exists()


def test_a_truncated_cache_entry_is_hashed_again_under_set_e(tmp_path: Path) -> None:
    """The install scripts run with ``set -eu``: a one-line entry must not end them."""
    state = tmp_path / "state"
    state.mkdir()
    cache = state / "sums"
    big = tmp_path / "big"
    big.write_bytes(os.urandom(SUM_CACHE_MIN_SIZE + 3))
    sumof(big, cache)
    rec = entry(cache, big)
    rec.write_text(rec.read_text().splitlines()[0])  # the signature line only, no newline
    out = run('set -eu; v=$(sumof "$1"); echo "$v"', str(big), cache=cache)
    assert out == hashlib.sha256(big.read_bytes()).hexdigest()


def test_the_gather_trusts_a_kept_sum_through_the_signature_of_its_own_stat(tmp_path: Path) -> None:
    """The gather passes each big file's size and signature from its one ``stat`` instead of running
    two more: the signature must be exactly what ``sumkeep`` stored, or every kept sum is lost."""
    from capstan.facts.parse import parse_facts
    from capstan.facts.query import FactsQuery, build_script

    state = tmp_path / "state"
    state.mkdir()
    cache = state / "sums"
    odd = tmp_path / "a dir|with $odd" / "kube let"
    odd.parent.mkdir()
    odd.write_bytes(os.urandom(SUM_CACHE_MIN_SIZE + 1))
    planted = "d" * 64
    run('sumkeep "$1" "$2"', str(odd), planted, cache=cache)
    assert entry(cache, odd).is_file()

    query = FactsQuery(files=(str(odd),), binaries=())
    res = subprocess.run(
        ["/bin/sh", "-c", build_script(query)],
        capture_output=True,
        text=True,
        env={**os.environ, "CAPSTAN_SUM_CACHE": str(cache)},
        check=True,
    )
    info = parse_facts(res.stdout, query, host="h").file(str(odd))
    assert info is not None and info.sha256 == planted and info.size == SUM_CACHE_MIN_SIZE + 1
