"""Artifact installs: planning tables, plus the real pull scripts run locally against file:// URLs."""

from __future__ import annotations

import grp
import hashlib
import io
import os
import pwd
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from capstan.errors import ArtifactError, CommandFailed
from capstan.facts import FileInfo, HostFacts
from capstan.ops import Command, Op, PutFile, apply, archive_member, artifact_query, binary, stamp_path
from capstan.remote.base import Argv, Result, failed_argv, put_argv, render_command

BIN = b"\x7fELF pretend binary\n" * 100
SUM = hashlib.sha256(BIN).hexdigest()
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def make_tgz(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TGZ = make_tgz({"pkg/bin/tool": BIN, "pkg/README": b"readme"})
TGZ_SUM = hashlib.sha256(TGZ).hexdigest()


def installed(data: bytes | None, mode: int = 0o755) -> FileInfo | None:
    if data is None:
        return None
    return FileInfo(
        kind="regular file", mode=mode, owner="root", group="root", sha256=hashlib.sha256(data).hexdigest()
    )


def facts(dest: str, data: bytes | None, stamp: bytes | None = None, mode: int = 0o755) -> HostFacts:
    stamp_info = None if stamp is None else FileInfo(kind="regular file", content=stamp)
    return HostFacts(host="h1", files={dest: installed(data, mode), stamp_path(dest): stamp_info})


# -- planning ------------------------------------------------------------------------------------


def test_binary_skips_entirely_when_the_sum_matches() -> None:
    op = binary(
        facts("/usr/local/bin/tool", BIN), "/usr/local/bin/tool", sha256=SUM, url="https://mirror/tool"
    )
    assert op.steps == () and op.note == "installed, sha256 matches"
    fix = binary(facts("/usr/local/bin/tool", BIN, mode=0o700), "/usr/local/bin/tool", sha256=f"sha256:{SUM}")
    assert [str(s) for s in fix.steps] == ["chmod 0755 /usr/local/bin/tool"]


def test_binary_pull_passes_url_and_sum_as_arguments_not_script_text() -> None:
    op = binary(
        facts("/usr/local/bin/tool", b"old"), "/usr/local/bin/tool", sha256=SUM, url="https://m/t;rm -rf /"
    )
    [step] = op.steps
    assert isinstance(step, Command) and step.argv[:2] == ("sh", "-c")
    assert step.argv[3:] == (
        "capstan",
        "https://m/t;rm -rf /",
        SUM,
        "/usr/local/bin/tool",
        "0755",
        "root",
        "root",
    )
    assert "https://m" not in step.argv[2]


def test_binary_push_verifies_the_sum_before_planning_an_upload() -> None:
    op = binary(facts("/usr/local/bin/tool", None), "/usr/local/bin/tool", sha256=SUM, content=BIN)
    assert op.steps == (PutFile("/usr/local/bin/tool", BIN, 0o755, "root", "root"),)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        binary(facts("/usr/local/bin/tool", None), "/usr/local/bin/tool", sha256=SUM, content=BIN + b"x")
    with pytest.raises(ArtifactError, match="not a sha256"):
        binary(facts("/x", None), "/x", sha256="abc", content=BIN)
    with pytest.raises(ArtifactError, match="neither a URL nor content"):
        binary(facts("/x", None), "/x", sha256=SUM)


@pytest.mark.parametrize(
    ("data", "stamp", "member_sum", "changed"),
    [
        (BIN, None, SUM, False),  # pinned member sum matches
        (BIN, f"{TGZ_SUM} pkg/bin/tool {SUM}\n".encode(), None, False),  # stamp says: from this archive
        (BIN, f"{'0' * 64} pkg/bin/tool {SUM}\n".encode(), None, True),  # another archive (upgrade)
        (b"edited", f"{TGZ_SUM} pkg/bin/tool {SUM}\n".encode(), None, True),  # file changed since
        (None, None, None, True),
    ],
)
def test_archive_member_skip_rules(
    data: bytes | None, stamp: bytes | None, member_sum: str | None, changed: bool
) -> None:
    dest = "/usr/local/bin/tool"
    op = archive_member(
        facts(dest, data, stamp),
        dest,
        archive_sha256=TGZ_SUM,
        member="pkg/bin/tool",
        member_sha256=member_sum,
        url="u",
    )
    assert op.changed == changed


def test_archive_member_push_extracts_locally_after_checking_the_archive_sum() -> None:
    dest = "/usr/local/bin/tool"
    op = archive_member(facts(dest, None), dest, archive_sha256=TGZ_SUM, member="pkg/bin/tool", content=TGZ)
    put, mkdir, stamp = op.steps
    assert (
        put == PutFile(dest, BIN, 0o755, "root", "root")
        and str(mkdir) == "mkdir -p /var/lib/capstan/artifacts"
    )
    assert isinstance(stamp, PutFile) and stamp.content == f"{TGZ_SUM} pkg/bin/tool {SUM}\n".encode()
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        archive_member(facts(dest, None), dest, archive_sha256=SUM, member="pkg/bin/tool", content=TGZ)
    with pytest.raises(ArtifactError, match="no member pkg/bin/nope"):
        archive_member(facts(dest, None), dest, archive_sha256=TGZ_SUM, member="pkg/bin/nope", content=TGZ)


def test_artifact_query_covers_what_the_ops_read() -> None:
    q = artifact_query("/usr/local/bin/tool")
    assert q.files == ("/usr/local/bin/tool",) and q.contents == (stamp_path("/usr/local/bin/tool"),)


# -- the pull scripts, run for real (curl on file:// URLs, no network) ---------------------------


class LocalShell:
    """Just enough of a Transport to run planned steps on this machine, for script tests."""

    host = "local"

    def run(self, argv: Argv, *, check: bool = True, stdin: bytes | None = None, **_kw: object) -> Result:
        done = subprocess.run(
            ["sh", "-c", render_command(argv)], input=stdin, capture_output=True, timeout=60
        )
        result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
        if check and done.returncode != 0:
            raise CommandFailed(self.host, failed_argv(argv), done.returncode, result.stderr)
        return result

    def put(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
        **_kw: object,
    ) -> None:
        self.run(put_argv(path, mode=mode, owner=owner, group=group), stdin=data)

    def get(self, path: str, **_kw: object) -> bytes:
        return Path(path).read_bytes()

    def close(self) -> None:
        pass


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def _retarget_stamp(step: Command, stamp: Path) -> Command:
    assert isinstance(step.argv, tuple)
    return Command((*step.argv[:-1], str(stamp)))


@needs_curl
def test_pulled_binary_is_verified_then_renamed_into_place(tmp_path: Path) -> None:
    src = tmp_path / "mirror" / "tool"
    src.parent.mkdir()
    src.write_bytes(BIN)
    dest = tmp_path / "bin" / "tool"
    dest.parent.mkdir()
    dest.write_bytes(b"old version")
    old_inode = dest.stat().st_ino
    op = binary(
        facts(str(dest), b"old version"), str(dest), sha256=SUM, url=src.as_uri(), owner=ME, group=MY_GROUP
    )
    apply(LocalShell(), op)  # type: ignore[arg-type]
    assert dest.read_bytes() == BIN and dest.stat().st_mode & 0o777 == 0o755
    assert dest.stat().st_ino != old_inode
    assert [p.name for p in dest.parent.iterdir()] == ["tool"], "no temp file left behind"


@needs_curl
def test_a_wrong_sum_leaves_the_installed_file_alone(tmp_path: Path) -> None:
    src = tmp_path / "tool.download"
    src.write_bytes(BIN + b"tampered")
    dest = tmp_path / "tool"
    dest.write_bytes(b"old version")
    op = binary(
        facts(str(dest), b"old version"), str(dest), sha256=SUM, url=src.as_uri(), owner=ME, group=MY_GROUP
    )
    with pytest.raises(CommandFailed, match="sha256 mismatch"):
        apply(LocalShell(), op)  # type: ignore[arg-type]
    assert dest.read_bytes() == b"old version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tool", "tool.download"]


@needs_curl
def test_pulled_archive_member_is_extracted_and_stamped(tmp_path: Path) -> None:
    src = tmp_path / "pkg.tar.gz"
    src.write_bytes(TGZ)
    dest = tmp_path / "tool"
    op = archive_member(
        facts(str(dest), None),
        str(dest),
        archive_sha256=TGZ_SUM,
        member="pkg/bin/tool",
        url=src.as_uri(),
        owner=ME,
        group=MY_GROUP,
    )
    stamp = tmp_path / "stamps" / "tool"
    [step] = op.steps
    apply(LocalShell(), Op(op.description, (_retarget_stamp(step, stamp),)))  # type: ignore[arg-type]
    assert dest.read_bytes() == BIN
    assert stamp.read_text() == f"{TGZ_SUM} pkg/bin/tool {SUM}\n"
    again = archive_member(
        facts(str(dest), BIN, stamp.read_bytes()),
        str(dest),
        archive_sha256=TGZ_SUM,
        member="pkg/bin/tool",
        url="x",
    )
    assert not again.changed
