"""API-triggered scale-out end to end: real server, real worker, lab hosts, real kubectl.

One lab, cp1 (control plane + etcd) and workers w1..w4. The cluster is created (in this process, from
a ``capstan-cluster-spec`` block that lists cp1 and w1, with the lab key in an SSH credentials block),
then scale-out is triggered three ways, each adding one worker to the block first:

- REST: ``examples/api_scale_out.py`` as a subprocess (block edit, ``GET /deployments/name/...``,
  ``POST /deployments/{id}/create_flow_run``, polling until final), adding w2;
- Python: ``run_deployment("scale-cluster/api", ...)``, adding w3;
- CLI: ``prefect deployment run 'scale-cluster/api' --param spec=block:... --watch``, adding w4.

Each run must complete on the worker (process pool, a worker PID recorded), run only on the new host
(no task of an existing host), and leave the new node Ready in what the real kubectl sees through the
admin kubeconfig create wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from capstan.blocks import ClusterSpec, SSHCredentials

Platform = Any  # conftest.Platform
REPO = Path(__file__).resolve().parents[2]
SCALE = "scale-cluster/api"
KUBECTL = "/usr/bin/kubectl"
HOSTS = [("cp1", ["control-plane", "etcd"])] + [(f"w{i}", ["worker"]) for i in range(1, 5)]
RUN_TIMEOUT = 900  # seconds per scale-out run: a 2-core machine shared with other lab tests

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def capstan_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """create's report phase writes the admin kubeconfig here, not under ~/.capstan."""
    home = tmp_path_factory.mktemp("capstan-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("CAPSTAN_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(scope="module")
def scale_lab(platform: Platform) -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces, mounts, nft)")
    from capstan.lab import Lab

    lab = Lab.up(Lab.free_name(f"p{os.getpid()}sa"), HOSTS)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def spec_block(platform: Platform, scale_lab: Any) -> str:
    """A cluster spec block listing cp1 and w1 only, its key in an SSH credentials block."""
    lab = scale_lab
    doc = yaml.safe_load(lab.spec_path.read_text())
    del doc["spec"]["ssh"]["keyPath"]  # the key comes from the credentials block, as on a real server
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] in ("cp1", "w1")]
    block = str(lab.name).lower()
    creds = SSHCredentials(user="root", private_key=lab.key_path.read_text())
    creds.save(f"{block}-ssh", overwrite=True)
    ClusterSpec(spec=yaml.safe_dump(doc, sort_keys=False), credentials=creds).save(block, overwrite=True)
    return block


@pytest.fixture(scope="module")
def kubeconfig(platform: Platform, spec_block: str, capstan_home: Path) -> str:
    """The cluster created (in this process) from the block; the admin kubeconfig create wrote."""
    from capstan.flows.create import create_cluster

    started = time.monotonic()
    created: dict[str, Any] = create_cluster(spec=f"block:{spec_block}")
    print(f"create cp1+w1 from block {spec_block}: {time.monotonic() - started:.1f} s")
    path = str(created["kubeconfig"])
    assert ready_nodes(path) == {"cp1", "w1"}
    return path


def ready_nodes(kubeconfig: str) -> set[str]:
    """Names of the Nodes whose Ready condition is True, as the real kubectl reports them."""
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    ready = set()
    for node in json.loads(out)["items"]:
        conds = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        if conds.get("Ready") == "True":
            ready.add(node["metadata"]["name"])
    return ready


def add_to_block(block: str, name: str, address: str) -> None:
    """What a Python caller does before triggering: the block's spec gains one worker, validated."""
    spec = cast(ClusterSpec, ClusterSpec.load(block))
    doc = yaml.safe_load(spec.spec)
    doc["spec"]["hosts"].append({"name": name, "address": address, "roles": ["worker"]})
    spec.spec = yaml.safe_dump(doc, sort_keys=False)
    spec.save(block, overwrite=True)


def assert_scaled_on_worker(platform: Platform, run_id: str, block: str, new: str, kubeconfig: str) -> None:
    run = platform.wait_final(run_id, timeout=RUN_TIMEOUT)
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    assert run["parameters"]["spec"] == f"block:{block}"
    assert run["deployment_id"] == platform.deployments[SCALE]
    assert run["work_pool_name"] == "capstan" and run["infrastructure_pid"], run  # the worker ran it
    names = {t["name"] for t in platform.task_runs_with(run_id, {f"worker-join[{new}]"})}
    assert f"worker-join[{new}]" in names, sorted(names)
    hosts = {m.group(1) for n in names if (m := re.search(r"\[([^\]]+)\]$", n))}
    assert hosts == {new}, sorted(names)  # the existing hosts were left alone
    assert new in ready_nodes(kubeconfig)


def test_rest_python_and_cli_triggers_each_add_a_ready_worker(
    platform: Platform, scale_lab: Any, spec_block: str, kubeconfig: str
) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    lab, block = scale_lab, spec_block

    # 1. REST, as another system makes the calls: the example script, in its own process.
    started = time.monotonic()
    rest = subprocess.run(
        [sys.executable, str(REPO / "examples" / "api_scale_out.py"), "--api", platform.api_url,
         "--block", block, "--name", "w2", "--address", lab.ip("w2"), "--wait",
         "--timeout", str(RUN_TIMEOUT)],
        env=platform.env, capture_output=True, text=True, timeout=RUN_TIMEOUT + 60,
    )  # fmt: skip
    print(f"REST +w2: {time.monotonic() - started:.1f} s")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    found = re.search(r"^flow run (\S+) \(.*\): (http://\S+/runs/flow-run/\1)$", rest.stdout, re.M)
    assert found, rest.stdout
    assert found.group(2).startswith(platform.api_url.removesuffix("/api"))
    assert f"flow run {found.group(1)}: Completed" in rest.stdout
    assert_scaled_on_worker(platform, found.group(1), block, "w2", kubeconfig)

    # 2. Python: run_deployment waits for the run (the worker executes it).
    add_to_block(block, "w3", lab.ip("w3"))
    started = time.monotonic()
    py = cast(FlowRun, run_deployment(SCALE, parameters={"spec": f"block:{block}"}, timeout=RUN_TIMEOUT))
    print(f"run_deployment +w3: {time.monotonic() - started:.1f} s")
    assert_scaled_on_worker(platform, str(py.id), block, "w3", kubeconfig)

    # 3. The Prefect CLI.
    add_to_block(block, "w4", lab.ip("w4"))
    started = time.monotonic()
    cli = platform.prefect(
        "deployment", "run", SCALE, "--param", f"spec=block:{block}",
        "--watch", "--watch-timeout", str(RUN_TIMEOUT), timeout=RUN_TIMEOUT + 60,
    )  # fmt: skip
    print(f"prefect deployment run +w4: {time.monotonic() - started:.1f} s")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    run_id = re.search(r"UUID: (\S+)", cli.stdout)
    assert run_id, cli.stdout
    assert_scaled_on_worker(platform, run_id.group(1), block, "w4", kubeconfig)

    assert ready_nodes(kubeconfig) == {"cp1", "w1", "w2", "w3", "w4"}


def test_example_refuses_a_host_already_in_the_block_and_changes_nothing(
    platform: Platform, spec_block: str
) -> None:
    block = spec_block
    before = cast(ClusterSpec, ClusterSpec.load(block)).spec
    count = {"deployments": {"id": {"any_": [platform.deployments[SCALE]]}}}
    runs_before = platform.api("POST", "/flow_runs/count", count)
    res = subprocess.run(
        [sys.executable, str(REPO / "examples" / "api_scale_out.py"), "--block", block,
         "--name", "w1", "--address", "10.250.255.250"],
        env=platform.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("api_scale_out: error:")]
    assert errors == [
        f"api_scale_out: error: --name w1: block {block} already has a host of that name (spec.hosts)"
    ]
    assert cast(ClusterSpec, ClusterSpec.load(block)).spec == before
    assert platform.api("POST", "/flow_runs/count", count) == runs_before
