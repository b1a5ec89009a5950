"""``capstan certs`` before any flow runs: mounted on the main CLI, early refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from capstan.cli import app as main_app
from capstan.cli_certs import app
from capstan.errors import CapstanError

HA = str(Path(__file__).resolve().parents[2] / "examples" / "ha.yaml")


def test_certs_is_a_sub_command_of_capstan_with_check_and_renew() -> None:
    result = CliRunner().invoke(main_app, ["certs", "--help"])
    assert result.exit_code == 0
    assert "check" in result.output and "renew" in result.output
    for command in ("check", "renew"):
        sub = CliRunner().invoke(main_app, ["certs", command, "--help"])
        assert sub.exit_code == 0 and "--within" in sub.output and "--file" in sub.output


@pytest.mark.parametrize("command", ["check", "renew"])
def test_a_negative_threshold_is_refused_before_any_flow(command: str) -> None:
    result = CliRunner().invoke(app, ["certs", command, "-f", HA, "--within", "-1"])
    assert result.exit_code != 0 and isinstance(result.exception, CapstanError)
    assert str(result.exception).startswith("--within: -1")


def test_a_missing_spec_is_refused_before_any_flow(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["certs", "check", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0 and isinstance(result.exception, CapstanError)
