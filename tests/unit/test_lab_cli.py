"""`capstan lab` commands: errors are one line and exit 2; nothing here creates a host."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from capstan.lab.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def empty_lab_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_LAB_DIR", str(tmp_path / "labs"))


def test_status_without_labs() -> None:
    res = runner.invoke(app, ["status"])
    assert res.exit_code == 0 and res.output.strip() == "no labs"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["crash", "cp1"], "no lab is up"),
        (["heal", "cp1", "--name", "ghost"], "no lab named ghost"),
        (["loss", "cp1", "10"], "no lab is up"),
        (["ssh", "cp1", "ls", "-la"], "no lab is up"),
        (["down", "--name", "ghost"], "no lab named ghost"),
        (["up", "--name", "Not_Valid"], "lab name 'Not_Valid'"),
        (["up", "--hosts", "0"], "topology"),
    ],
)
def test_errors_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    res = runner.invoke(app, argv)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capstan: error: ") and message in lines[0]
