"""scale-cluster's join token Secret, its plan description and its command line (no host, no Prefect run)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from capstan.cli import main
from capstan.flows.scale import describe
from capstan.render import new_secrets
from capstan.tasks.scale.model import ScalePlan
from capstan.tasks.scale.token import token_secret


def test_join_token_secret_is_what_kubeadm_token_create_writes() -> None:
    secrets = new_secrets()
    token_id, token_half = secrets.bootstrap_token.split(".")
    obj = token_secret(secrets, datetime(2026, 11, 28, 14, 0, tzinfo=UTC))
    assert obj["metadata"] == {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"}
    assert obj["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    assert data["token-id"] == token_id and data["token-secret"] == token_half
    assert data["expiration"] == "2026-11-28T14:00:00Z"
    assert data["usage-bootstrap-authentication"] == data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"


def test_describe_names_added_refreshed_and_untouched_hosts() -> None:
    plan = ScalePlan(("cp2",), ("w3",), (), ("cp1", "w1"), ("e1",))
    text = "\n".join(describe(plan))
    assert "control planes (one at a time): cp2" in text and "workers: w3" in text
    assert "balancer backends change: cp1, w1" in text and "untouched: e1" in text
    nothing = describe(ScalePlan((), (), (), (), ("cp1",)))
    assert "nothing to add" in nothing[0]


def test_scale_is_mounted_on_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scale", "--help"]) == 0
    assert "--file" in capsys.readouterr().out


def test_scale_with_a_bad_spec_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nspec: {}\n")
    assert main(["scale", "-f", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("capstan: error:")
