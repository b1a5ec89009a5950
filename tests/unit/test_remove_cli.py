"""``capstan remove-node``: mounted, and the refusals that need only the spec are one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_create_support import spec_doc

from capstan.cli import main


def write(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(spec_doc(**overrides)))
    return path


def test_remove_node_is_mounted_on_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["remove-node", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--unreachable" in out and "NODE" in out.upper()


def test_unknown_node_lists_the_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["remove-node", "-f", str(write(tmp_path)), "cp9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["capstan: error: NODE: 'cp9' is not a host of cluster t (hosts: cp1, cp2, cp3, w1, w2)"]


def test_last_control_plane_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hosts = [
        {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane", "etcd"]},
        {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
    ]
    assert main(["remove-node", "-f", str(write(tmp_path, hosts=hosts)), "cp1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["capstan: error: cp1 is the last control plane of cluster t: refusing to remove it"]
