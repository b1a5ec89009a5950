"""``capstan backup`` / ``capstan restore`` before any flow runs: plans, early refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from capstan.cli_etcd import app
from capstan.errors import CapstanError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HA = str(EXAMPLES / "ha.yaml")
SEPARATE = str(EXAMPLES / "separate-etcd.yaml")


def run(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_backup_plan_lists_the_phases_and_the_etcd_members_only() -> None:
    code, out, exc = run("backup", "-f", SEPARATE, "--plan")
    assert code == 0, exc
    lines = out.splitlines()
    assert lines[0].startswith("backup-etcd ")
    ids = [line.split("(")[1].split(")")[0] for line in lines if line[:3].strip().rstrip(".").isdigit()]
    assert ids == [
        "etcd-backup-health",
        "etcd-backup-snapshot",
        "etcd-backup-offhost",
        "etcd-backup-retention",
    ]
    assert "once, on one member chosen at run time" in out
    spec = yaml.safe_load(Path(SEPARATE).read_text())
    etcd = [h["name"] for h in spec["spec"]["hosts"] if "etcd" in h["roles"]]
    others = [h["name"] for h in spec["spec"]["hosts"] if "etcd" not in h["roles"]]
    host_lines = [line.strip() for line in lines if line.startswith("    ")]
    assert host_lines.count(", ".join(etcd)) == 3  # health, snapshot candidates, retention
    assert not any(o in line.split(", ") for line in host_lines for o in others)


def test_restore_plan_stops_apiservers_on_control_planes_and_etcd_on_members() -> None:
    code, out, exc = run("restore", "-f", HA, "--plan")
    assert code == 0, exc
    for phase in (
        "etcd-restore-stage",
        "etcd-restore-stop-apiservers",
        "etcd-restore-data",
        "etcd-restore-cleanup",
    ):
        assert f"({phase})" in out
    assert out.index("stop-apiservers") < out.index("stop-etcd") < out.index("restore-data")
    assert out.index("start-etcd") < out.index("start-apiservers") < out.index("cleanup")


def test_restore_without_a_terminal_needs_yes() -> None:
    code, _, exc = run("restore", "-f", HA)
    assert code != 0 and isinstance(exc, CapstanError) and "--yes" in str(exc)


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_a_bad_destination_is_refused_before_any_flow(command: str) -> None:
    extra = ["--yes"] if command == "restore" else []
    code, _, exc = run(command, "-f", HA, "--destination", "relative/dir", *extra)
    assert code != 0 and isinstance(exc, CapstanError)
    assert str(exc).startswith("--destination: 'relative/dir'")
