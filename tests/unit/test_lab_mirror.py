"""The lab mirror tree: files_repo layout, sha256sums.txt, reproducible upstream-style archives."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from capstan.errors import LabError
from capstan.lab.artifacts import PACKERS, checksum_table, mirror_path
from capstan.lab.mirror import MirrorEntry, TarMember, build_mirror, cached_mirror, read_sums
from capstan.versions import Artifact, artifacts_for, default_kubernetes_version


def _by_name() -> dict[str, Artifact]:
    return {a.name: a for a in artifacts_for(default_kubernetes_version(), "amd64")}


def test_build_writes_files_and_their_sums(tmp_path: Path) -> None:
    src = tmp_path / "tool"
    src.write_bytes(b"#!/bin/sh\necho tool\n")
    entries = [
        MirrorEntry("example.org/a/file.txt", b"hello\n"),
        MirrorEntry("example.org/b/tool", src),
        MirrorEntry(
            "example.org/c/pack.tar.gz", (TarMember("top/tool", src), TarMember("top/readme", b"r", 0o644))
        ),
    ]
    sums = build_mirror(tmp_path / "m", entries)
    for rel, hexsum in sums.items():
        assert hashlib.sha256((tmp_path / "m" / rel).read_bytes()).hexdigest() == hexsum
    assert read_sums(tmp_path / "m") == sums
    lines = (tmp_path / "m" / "sha256sums.txt").read_text().splitlines()
    assert lines[0] == f"{sums['example.org/a/file.txt']}  example.org/a/file.txt"
    with tarfile.open(tmp_path / "m" / "example.org/c/pack.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert list(members) == ["top", "top/tool", "top/readme"]
        assert members["top/tool"].mode == 0o755 and members["top/tool"].uid == 0
        assert members["top"].isdir()
        extracted = tar.extractfile("top/tool")
        assert extracted is not None and extracted.read() == src.read_bytes()


def test_archives_are_reproducible(tmp_path: Path) -> None:
    entry = [MirrorEntry("x/y.tar.gz", (TarMember("bin/a", b"aaa"),))]
    assert build_mirror(tmp_path / "one", entry) == build_mirror(tmp_path / "two", entry)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up", "a/../../b", ""])
def test_paths_must_stay_inside_the_mirror(tmp_path: Path, bad: str) -> None:
    with pytest.raises(LabError, match="mirror path"):
        build_mirror(tmp_path, [MirrorEntry(bad, b"x")])


def test_duplicate_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="twice"):
        build_mirror(tmp_path, [MirrorEntry("a", b"1"), MirrorEntry("a", b"2")])


def test_cache_reuses_a_finished_tree_and_notices_changes(tmp_path: Path) -> None:
    src = tmp_path / "bin"
    src.write_bytes(b"v1")
    entries = [MirrorEntry("h/bin", src)]
    first = cached_mirror(tmp_path / "cache", entries)
    assert cached_mirror(tmp_path / "cache", entries) == first
    src.write_bytes(b"v2 longer")
    second = cached_mirror(tmp_path / "cache", entries)
    assert second != first and (second / "h/bin").read_bytes() == b"v2 longer"
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".build")]


def test_default_entries_use_upstream_names_and_layouts() -> None:
    arts = _by_name()
    etcd, v = arts["etcd"], arts["etcd"].version
    top = f"etcd-v{v}-linux-amd64"
    assert mirror_path(etcd.url) == f"github.com/etcd-io/etcd/releases/download/v{v}/{top}.tar.gz"
    members = PACKERS["etcd"](etcd)
    assert isinstance(members, tuple)
    assert [m.arcname for m in members] == [f"{top}/etcd", f"{top}/etcdctl"]
    containerd = PACKERS["containerd"](arts["containerd"])
    assert isinstance(containerd, tuple)
    assert [m.arcname for m in containerd] == ["bin/containerd", "bin/ctr", "bin/containerd-shim-runc-v2"]
    assert isinstance(PACKERS["runc"](arts["runc"]), Path)
    assert mirror_path(arts["runc"].url).endswith("/runc.amd64")
    cni = PACKERS["cni-plugins"](arts["cni-plugins"])
    assert isinstance(cni, tuple)
    assert [m.arcname for m in cni] == ["./bridge", "./host-local", "./loopback", "./portmap"]
    crictl = PACKERS["crictl"](arts["crictl"])
    assert isinstance(crictl, tuple) and [m.arcname for m in crictl] == ["crictl"]
    script = crictl[0].source
    assert isinstance(script, bytes) and f"crictl version v{arts['crictl'].version}".encode() in script


def test_checksum_table_is_keyed_like_extra_checksums() -> None:
    entries = [MirrorEntry("p/etcd.tgz", b"", ("etcd", "amd64", "3.6.14")), MirrorEntry("p/other", b"")]
    table = checksum_table(entries, {"p/etcd.tgz": "ab" * 32, "p/other": "cd" * 32})
    assert table == {"etcd": {"amd64": {"3.6.14": "ab" * 32}}}
