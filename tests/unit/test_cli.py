"""The command line: user errors are one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def capstan(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capstan.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["plan", "-f", "nope.yaml"], "nope.yaml: no such file"),
        (["plan"], "Missing option"),
        (["plan", "-f", "examples/ha.yaml", "--format", "xml"], "--format"),
        (["plan", "--bogus"], "No such option"),
        (["frobnicate"], "No such command"),
    ],
)
def test_user_errors_are_one_line(args: list[str], fragment: str) -> None:
    r = capstan(*args)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("capstan: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in r.stderr


def test_spec_error_names_the_path(tmp_path: Path) -> None:
    spec = (
        (ROOT / "examples" / "ha.yaml")
        .read_text()
        .replace("roles: [worker]\n      labels", "roles: [wrker]\n      labels")
    )
    (tmp_path / "bad.yaml").write_text(spec)
    r = capstan("plan", "-f", str(tmp_path / "bad.yaml"))
    assert r.returncode == 2
    assert "spec.hosts[3].roles[0]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_plan_json_lists_the_create_phases() -> None:
    from capstan.plan import CREATE_PHASES

    r = capstan("plan", "-f", "examples/ha.yaml", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [p["id"] for p in doc["phases"]] == [p.id for p in CREATE_PHASES]
    by_id = {p["id"]: p for p in doc["phases"]}
    assert by_id["etcd"]["hosts"] == ["cp1", "cp2", "cp3"] and by_id["etcd"]["concurrency"] == "together"
    assert by_id["cp-init"]["hosts"] == ["cp1"]
    assert by_id["cp-join"] == {**by_id["cp-join"], "hosts": ["cp2", "cp3"], "concurrency": "serial"}
    assert by_id["worker-join"]["hosts"] == ["w1", "w2"]
    assert by_id["api-lb"]["hosts"] == ["cp1", "cp2", "cp3", "w1", "w2"]


def test_plan_text_shows_order_and_concurrency() -> None:
    r = capstan("plan", "-f", "examples/separate-etcd.yaml")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.index("etcd cluster") < out.index("First control plane") < out.index("Worker joins")
    assert "cp2" in out and "one host at a time" in out
    # keepalived VIP runs on the control planes in vip mode
    assert "etcd1, etcd2, etcd3" in out


def test_versions_lists_pins() -> None:
    r = capstan("versions")
    assert r.returncode == 0, r.stderr
    assert "1.36.4" in r.stdout and "3.6.14" in r.stdout


def test_import_kubespray_writes_spec_and_lists_unmapped_keys(tmp_path: Path) -> None:
    inv = Path(__file__).parent / "fixtures" / "kubespray" / "mycluster" / "inventory.ini"
    out = tmp_path / "cluster.yaml"
    r = capstan("import", "kubespray", str(inv), "-o", str(out), "--name", "imported")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and str(out) in r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert any("ntp_enabled" in w for w in warnings), r.stderr
    r = capstan("plan", "-f", str(out), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cluster"] == "imported"


def test_subcommand_exit_codes_propagate() -> None:
    r = capstan("lab", "status", "--name", "no-such-lab")
    assert r.returncode == 2, r
    assert r.stderr.strip().startswith("capstan: error: no lab named no-such-lab")
