"""Event-driven scale-out on the real server: ``capstan automation`` and ``capstan.scale.requested``.

The automation is created idempotently (Python and the ``capstan automation`` command agree on one
automation per cluster). Then ``examples/emit_scale_event.py`` posts the event: the server's triggers
service matches it and runs ``scale-cluster/api`` with the spec fixed in the automation, and the worker
executes that run. No lab here: the run's spec is a block that does not exist, so the run fails on the
worker with capstan's own "no such block" error, which shows the parameters arrived as set (the lab
side of a scale-out is covered by test_scale_api.py). An event about another cluster starts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capstan.platform.automation import (
    EVENT,
    automation_name,
    delete_scale_automation,
    ensure_scale_automation,
    resource_id,
)

Platform = Any  # conftest.Platform
REPO = Path(__file__).resolve().parents[2]
SCALE = "scale-cluster/api"


@pytest.fixture
def cluster_name(platform: Platform) -> Iterator[str]:
    name = f"evt-{os.getpid()}"
    yield name
    delete_scale_automation(name)


def automations(platform: Platform, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = platform.api(
        "POST", "/automations/filter", {"automations": {"name": {"any_": [name]}}}
    )
    return found


def capstan(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "import sys; from capstan.cli import main; sys.exit(main())", *args]
    return subprocess.run(argv, env=platform.env, capture_output=True, text=True, timeout=180)


def emit(platform: Platform, cluster: str) -> str:
    res = subprocess.run(
        [sys.executable, str(REPO / "examples" / "emit_scale_event.py"), "--cluster", cluster,
         "--reason", "test"],
        env=platform.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{EVENT} for capstan.cluster.{cluster}" in res.stdout
    return res.stdout


def runs_by(platform: Platform, automation_id: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [platform.deployments[SCALE]]}}}
    runs: list[dict[str, Any]] = platform.api("POST", "/flow_runs/filter", body)
    return [r for r in runs if (r.get("created_by") or {}).get("id") == automation_id]


def test_automation_is_created_once_and_updated_in_place(platform: Platform, cluster_name: str) -> None:
    first = ensure_scale_automation(cluster_name)
    assert first.status == "created"
    assert ensure_scale_automation(cluster_name).status == "unchanged"

    res = capstan(platform, "automation", "--cluster", cluster_name, "--spec", "block:elsewhere")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == f"{automation_name(cluster_name)}: updated ({first.id})"

    [auto] = automations(platform, automation_name(cluster_name))
    assert auto["id"] == first.id and auto["enabled"]
    assert auto["trigger"]["expect"] == [EVENT]
    assert auto["trigger"]["match"] == {"prefect.resource.id": resource_id(cluster_name)}
    [action] = auto["actions"]
    assert action["type"] == "run-deployment" and action["source"] == "selected"
    assert action["deployment_id"] == platform.deployments[SCALE]
    assert action["parameters"] == {"spec": "block:elsewhere"}

    bad = capstan(platform, "automation", "--cluster", cluster_name, "--deployment", "scale-cluster/nope")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "capstan: error: --deployment scale-cluster/nope: not found on the server at "
        f"{platform.api_url} (run `capstan deploy`)"
    )


def test_event_runs_scale_cluster_on_the_worker_with_the_automations_spec(
    platform: Platform, cluster_name: str
) -> None:
    missing = f"{cluster_name}-no-such-block"
    auto = ensure_scale_automation(cluster_name, spec=f"block:{missing}")
    emit(platform, f"{cluster_name}-other")  # no automation for this one: starts nothing
    started = time.monotonic()
    emit(platform, cluster_name)
    [run] = platform.wait_for("a run started by the automation", lambda: runs_by(platform, auto.id), 180)
    print(f"event -> flow run created: {time.monotonic() - started:.1f} s")
    assert run["parameters"] == {"spec": f"block:{missing}"}
    assert run["created_by"]["type"] == "AUTOMATION"

    final = platform.wait_final(run["id"], timeout=300)
    assert final["state"]["type"] == "FAILED"
    assert f"block capstan-cluster-spec/{missing}: no such block" in final["state"]["message"]
    assert final["work_pool_name"] == "capstan" and final["infrastructure_pid"]  # the worker ran it
    assert len(runs_by(platform, auto.id)) == 1
