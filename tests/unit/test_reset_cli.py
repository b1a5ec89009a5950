"""``capstan reset``: confirmation, --hosts parsing and one-line errors (no host, no Prefect run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_create_support import spec_doc

from capstan.cli import main
from capstan.cli_reset import parse_hosts
from capstan.errors import CapstanError


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(spec_doc()))
    return path


def test_parse_hosts() -> None:
    assert parse_hosts(None) is None
    assert parse_hosts("w1, cp1,") == ["w1", "cp1"]
    with pytest.raises(CapstanError, match="--hosts"):
        parse_hosts(" , ")


def test_reset_is_mounted_on_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reset", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--yes" in out and "--hosts" in out


def test_reset_without_yes_off_a_terminal_refuses_in_one_line(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reset", "-f", str(spec_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["capstan: error: reset destroys the cluster: pass --yes to confirm when not on a terminal"]


def test_reset_names_an_unknown_host_in_one_line(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reset", "-f", str(spec_file), "--yes", "--hosts", "w1,ghost"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hosts: ghost: not a host of cluster t" in err[0]
