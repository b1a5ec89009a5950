"""File operations: facts in → steps out, including the converged (no step) cases."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from capstan.errors import PlanError
from capstan.facts import FactNotGathered, FileInfo, HostFacts
from capstan.ops import Command, PutFile, directory, file, line


def reg(
    data: bytes, mode: int = 0o644, owner: str = "root", group: str = "root", *, with_content: bool = False
) -> FileInfo:
    return FileInfo(
        kind="regular file",
        mode=mode,
        owner=owner,
        group=group,
        sha256=hashlib.sha256(data).hexdigest(),
        content=data if with_content else None,
    )


def strs(op: Any) -> list[str]:
    return [str(s) for s in op.steps]


# -- file ----------------------------------------------------------------------------------------

FILE_CASES = [
    pytest.param(None, [PutFile("/etc/x", b"new\n", 0o600, "root", "etcd")], id="missing-uploads"),
    pytest.param(
        reg(b"old\n", 0o600, "root", "etcd"),
        [PutFile("/etc/x", b"new\n", 0o600, "root", "etcd")],
        id="differs",
    ),
    pytest.param(reg(b"new\n", 0o600, "root", "etcd"), [], id="converged"),
    pytest.param(
        reg(b"new\n", 0o644, "root", "etcd"), [Command(("chmod", "0600", "/etc/x"))], id="mode-only"
    ),
    pytest.param(
        reg(b"new\n", 0o600, "root", "root"), [Command(("chown", "root:etcd", "/etc/x"))], id="group-only"
    ),
    pytest.param(
        reg(b"new\n", 0o640, "etcd", "root"),
        [Command(("chmod", "0600", "/etc/x")), Command(("chown", "root:etcd", "/etc/x"))],
        id="mode-and-owner",
    ),
]


@pytest.mark.parametrize(("info", "steps"), FILE_CASES)
def test_file(info: FileInfo | None, steps: list[Any]) -> None:
    op = file(HostFacts(host="h1", files={"/etc/x": info}), "/etc/x", "new\n", mode=0o600, group="etcd")
    assert list(op.steps) == steps
    assert op.changed == bool(steps)
    if not steps:
        assert op.note == "content, mode and owner match"


def test_file_never_prints_content() -> None:
    op = file(HostFacts(host="h1", files={"/etc/secret": None}), "/etc/secret", b"TOP-SECRET", mode=0o600)
    assert "TOP-SECRET" not in str(op.steps[0]) and "TOP-SECRET" not in repr(op)
    assert str(op.steps[0]) == "put /etc/secret (10 bytes, mode 0600 root:root)"


def test_file_refuses_to_replace_a_directory() -> None:
    with pytest.raises(PlanError, match="h1: /etc/x should be a file but is a directory"):
        file(HostFacts(host="h1", files={"/etc/x": FileInfo(kind="directory")}), "/etc/x", "")


def test_file_needs_its_fact() -> None:
    with pytest.raises(FactNotGathered):
        file(HostFacts(host="h1"), "/etc/x", "")


# -- directory -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (None, ["install -d -m 0750 -o etcd -g etcd /var/lib/etcd"]),
        (FileInfo(kind="directory", mode=0o750, owner="etcd", group="etcd"), []),
        (FileInfo(kind="directory", mode=0o755, owner="etcd", group="etcd"), ["chmod 0750 /var/lib/etcd"]),
        (
            FileInfo(kind="directory", mode=0o750, owner="root", group="root"),
            ["chown etcd:etcd /var/lib/etcd"],
        ),
    ],
)
def test_directory(info: FileInfo | None, expected: list[str]) -> None:
    f = HostFacts(host="h1", files={"/var/lib/etcd": info})
    assert strs(directory(f, "/var/lib/etcd", mode=0o750, owner="etcd", group="etcd")) == expected


def test_directory_refuses_a_file_in_the_way() -> None:
    with pytest.raises(PlanError, match="should be a directory"):
        directory(HostFacts(host="h1", files={"/d": reg(b"")}), "/d")


# -- line ----------------------------------------------------------------------------------------


def with_content(content: bytes | None, mode: int = 0o640) -> HostFacts:
    info = None if content is None else reg(content, mode, "root", "adm", with_content=True)
    return HostFacts(host="h1", files={"/etc/conf": info})


LINE_CASES = [
    pytest.param(b"a = 1\nb = 2\n", "b = 2", None, True, None, id="present-noop"),
    pytest.param(b"a = 1\n", "b = 2", None, True, b"a = 1\nb = 2\n", id="append"),
    pytest.param(b"a = 1", "b = 2", None, True, b"a = 1\nb = 2\n", id="append-no-trailing-newline"),
    pytest.param(b"a = 1\nb = 9\n", "b = 2", r"^b\s*=", True, b"a = 1\nb = 2\n", id="regex-replaces"),
    pytest.param(b"b=1\nx\nb = 3\n", "b = 2", r"^b\s*=", True, b"b = 2\nx\nb = 2\n", id="regex-replaces-all"),
    pytest.param(b"a = 1\nb = 2\n", "b = 2", r"^b\s*=", True, None, id="regex-noop"),
    pytest.param(None, "b = 2", None, True, b"b = 2\n", id="creates"),
    pytest.param(b"a\nswap\nb\n", "swap", None, False, b"a\nb\n", id="absent-removes"),
    pytest.param(b"a\n#x 1\nx 2\n", "", r"^x ", False, b"a\n#x 1\n", id="absent-regex"),
    pytest.param(b"a\n", "swap", None, False, None, id="absent-noop"),
    pytest.param(None, "swap", None, False, None, id="absent-no-file-noop"),
]


@pytest.mark.parametrize(("content", "text", "match", "present", "expected"), LINE_CASES)
def test_line(
    content: bytes | None, text: str, match: str | None, present: bool, expected: bytes | None
) -> None:
    op = line(with_content(content), "/etc/conf", text, present=present, match=match)
    if expected is None:
        assert op.steps == ()
    else:
        [step] = op.steps
        assert isinstance(step, PutFile) and step.content == expected
        if content is not None:  # an existing file keeps its mode and owner
            assert (step.mode, step.owner, step.group) == (0o640, "root", "adm")
        else:
            assert (step.mode, step.owner, step.group) == (0o644, "root", "root")


def test_line_keeps_undecodable_bytes() -> None:
    op = line(with_content(b"\xff\xfe raw\n"), "/etc/conf", "new")
    assert op.steps[0].content == b"\xff\xfe raw\nnew\n"  # type: ignore[union-attr]


def test_line_needs_content_and_a_single_line() -> None:
    stat_only = HostFacts(host="h1", files={"/etc/conf": reg(b"x")})
    with pytest.raises(FactNotGathered, match="content of /etc/conf"):
        line(stat_only, "/etc/conf", "y")
    with pytest.raises(PlanError, match="single line"):
        line(with_content(b""), "/etc/conf", "a\nb")
