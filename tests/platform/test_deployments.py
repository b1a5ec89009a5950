"""prefect.yaml on a real server and worker: what is deployed, schedules, three ways to trigger a run
(REST, ``run_deployment``, ``prefect deployment run``), resuming a failed run with ``prefect flow-run
retry``, and the per-cluster lock between two runs."""

from __future__ import annotations

import threading
import zoneinfo
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

Platform = Any  # conftest.Platform (test folders are not packages here: `platform` is a stdlib name)
REPO = Path(__file__).resolve().parents[2]
CREATE = "create-cluster/default"


def declared() -> list[dict[str, Any]]:
    deployments: list[dict[str, Any]] = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    return deployments


def test_every_declared_deployment_is_registered_on_the_process_pool(platform: Platform) -> None:
    assert len(platform.deployments) == len(declared())
    assert CREATE in platform.deployments
    pool = platform.api("GET", "/work_pools/capstan")
    assert pool["type"] == "process"
    for full_name, dep_id in platform.deployments.items():
        dep = platform.api("GET", f"/deployments/{dep_id}")
        assert dep["work_pool_name"] == "capstan", full_name
        assert dep["pull_steps"] == [], full_name  # module-path entrypoints: nothing to fetch
        assert "." in dep["entrypoint"] and ":" not in dep["entrypoint"], full_name
        assert "capstan" in dep["tags"], full_name
        schema = dep["parameter_openapi_schema"]
        for name, prop in schema["properties"].items():  # the UI's parameter form: typed, described
            assert prop.get("description"), f"{full_name}: parameter {name} has no description"
    for slug in ("capstan-ssh-credentials", "capstan-cluster-spec"):
        assert platform.api("GET", f"/block_types/slug/{slug}")["slug"] == slug


def test_schedules_produce_runs_at_their_cron_time_in_the_configured_timezone(platform: Platform) -> None:
    scheduled = [d for d in declared() if d.get("schedules")]
    if not scheduled:
        pytest.skip("no scheduled deployment in prefect.yaml yet (backup-etcd/nightly comes with the flow)")
    zone = zoneinfo.ZoneInfo(platform.timezone)
    for dep in scheduled:
        dep_id = next(i for full, i in platform.deployments.items() if full.endswith(f"/{dep['name']}"))
        cron = dep["schedules"][0]["cron"].split()
        minute, hour = int(cron[0]), int(cron[1])
        body = {
            "deployments": {"id": {"any_": [dep_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }
        runs = platform.wait_for(
            f"scheduled runs of {dep['name']}",
            lambda body=body: platform.api("POST", "/flow_runs/filter", body) or None,
        )
        assert len(runs) >= 2
        for run in runs:
            local = datetime.fromisoformat(run["expected_start_time"]).astimezone(zone)
            assert (local.hour, local.minute) == (hour, minute), run["expected_start_time"]
        dep_doc = platform.api("GET", f"/deployments/{dep_id}")
        assert all(s["schedule"]["timezone"] == platform.timezone for s in dep_doc["schedules"])


def create_run(platform: Platform, spec: str, **params: Any) -> dict[str, Any]:
    """The call another system makes: POST /api/deployments/{id}/create_flow_run."""
    body = {"parameters": {"spec": spec, **params}, "tags": ["api-triggered"]}
    dep_id = platform.deployments[CREATE]
    run: dict[str, Any] = platform.api("POST", f"/deployments/{dep_id}/create_flow_run", body)
    return run


def renamed_spec(lab: Any, tmp_path: Path, name: str, **ssh: Any) -> Path:
    """The lab's spec under another cluster name (another lock), optionally with other SSH settings."""
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["ssh"].update(ssh)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.lab
def test_rest_python_and_cli_triggers_run_create_cluster_on_the_worker(
    platform: Platform, platform_lab: Any, tmp_path: Path
) -> None:
    """All three at once, each on its own cluster name (same hosts), so the lock does not serialise them."""
    from prefect.deployments import run_deployment

    specs = {
        how: str(renamed_spec(platform_lab, tmp_path, f"{platform_lab.name}-{how}"))
        for how in ("rest", "py", "cli")
    }
    rest = create_run(platform, specs["rest"], until="facts")
    py = run_deployment(CREATE, parameters={"spec": specs["py"], "until": "facts"}, timeout=0)
    cli = platform.prefect(
        "deployment", "run", CREATE, "-p", f"spec={specs['cli']}", "-p", "until=facts",
        "--watch", "--watch-timeout", "240",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Completed" in cli.stdout
    for run_id in (rest["id"], str(py.id)):
        final = platform.wait_final(run_id)
        assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
        names = {t["name"] for t in platform.task_runs_with(run_id, {"facts[cp1]", "facts[w1]"})}
        assert {"facts[cp1]", "facts[w1]"} <= names
        assert any(t.startswith("capstan-cluster:") for t in final["tags"])  # it held its cluster's lock


@pytest.mark.lab
def test_second_run_on_a_busy_cluster_fails_naming_the_run_that_holds_it(
    platform: Platform, platform_lab: Any
) -> None:
    """The holder is a flow run in this process that keeps the lock until told: no timing luck."""
    import contextvars

    from prefect import flow
    from prefect.context import get_run_context

    from capstan.flows.lock import cluster_lock

    lab = platform_lab
    holding, release = threading.Event(), threading.Event()
    holder: dict[str, Any] = {}

    @flow(name="hold-cluster")
    def hold_cluster(cluster: str) -> None:
        holder["name"] = get_run_context().flow_run.name  # type: ignore[union-attr]
        with cluster_lock(cluster, timeout=60):
            holding.set()
            release.wait(300)

    def run_holder() -> None:
        try:
            hold_cluster(lab.name)
        except BaseException as exc:  # reported by the assertions below
            holder["error"] = exc
        finally:
            holding.set()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run_holder,))
    thread.start()
    try:
        assert holding.wait(120) and "error" not in holder, holder
        second = create_run(platform, str(lab.spec_path), until="facts")
        busy = platform.wait_final(second["id"], timeout=240)
    finally:
        release.set()
        thread.join(120)
    assert "error" not in holder, holder
    assert busy["state"]["type"] == "FAILED"
    message = busy["state"]["message"]
    assert f"cluster {lab.name} is busy with flow run {holder['name']}" in message, message
    assert f"gave up after {platform.lock_timeout} s waiting for lock capstan-cluster-{lab.name}" in message
    assert not [t for t in platform.task_runs(second["id"]) if t["name"].startswith("facts[")]


@pytest.mark.lab
def test_failed_run_resumes_with_prefect_flow_run_retry(
    platform: Platform, platform_lab: Any, tmp_path: Path
) -> None:
    lab = platform_lab
    spec = str(renamed_spec(lab, tmp_path, f"{lab.name}-retry", connectTimeout=2))
    lab.cut("w1")
    try:
        first = create_run(platform, spec, until="facts")
        failed = platform.wait_final(first["id"])
    finally:
        lab.heal("w1")
    assert failed["state"]["type"] == "FAILED"
    assert "phase facts failed" in failed["state"]["message"] and "w1" in failed["state"]["message"]

    res = platform.prefect("flow-run", "retry", first["id"])
    assert res.returncode == 0, res.stdout + res.stderr
    resumed = platform.wait_final(first["id"])
    # Completed: so the failed attempt released the cluster's lock on its way out.
    assert resumed["state"]["type"] == "COMPLETED", resumed["state"]["message"]
    assert resumed["run_count"] >= 2

    by_name: dict[str, list[str]] = {}

    def resumed_recorded() -> bool:  # the retry's task runs are recorded from events, a little later
        by_name.clear()
        for t in platform.task_runs(first["id"]):
            by_name.setdefault(t["name"], []).append(t["state"]["name"])
        return "Cached" in by_name.get("facts[cp1]", []) and "Completed" in by_name.get("facts[w1]", [])

    platform.wait_for("the resumed run's task runs", resumed_recorded, 60)
    # cp1's facts ran once and came from the cache on retry; w1's ran again and completed.
    assert by_name["facts[cp1]"].count("Completed") == 1, by_name
    assert "Cached" in by_name["facts[cp1]"], by_name
    assert "Completed" in by_name["facts[w1]"], by_name
