"""create-cluster end to end on lab hosts: a working cluster, a converged re-run, resume, topologies.

Ground truth comes from the real tools, not from capstan: etcdctl on an etcd host, the machine's real
kubectl against the admin kubeconfig the report phase wrote, and the node-local haproxy's config plus a
request through it. Service restarts are seen as changed main PIDs and process start times.

Resume uses Prefect's own retry of the failed flow run (``prefect flow-run retry <id> --entrypoint``,
which re-runs that same flow run locally when it has no deployment): tasks are cached per flow run
(inputs + task source + run id), so the retried run skips every (phase, host) that completed before.
The power cut happens from a hook around the runtime phase that the phase itself knows nothing about,
so the failure lands deterministically in phase 5 on the crashed host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from capstan.lab import Lab
from capstan.lab.artifacts import default_entries, mirror_path
from capstan.lab.mirror import MirrorEntry

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

CP_ETCD = ["control-plane", "etcd"]
HA = [("cp1", CP_ETCD), ("cp2", CP_ETCD), ("cp3", CP_ETCD), ("w1", ["worker"]), ("w2", ["worker"])]
UNITS = ("etcd", "containerd", "kubelet", "kube-apiserver-lb")
KUBECTL = "/usr/bin/kubectl"
ETCDCTL_CERTS = (
    "--cacert=/etc/ssl/etcd/ca.crt --cert=/etc/ssl/etcd/etcdctl.crt --key=/etc/ssl/etcd/etcdctl.key"
)


# ---- labs ---------------------------------------------------------------------------------------
def standin_entries() -> list[MirrorEntry] | None:
    """The lab mirror plus the Kubernetes stand-ins, when the default mirror does not serve them yet."""
    from capstan.lab.standins.build import mirror_entries
    from capstan.versions import artifacts_for, default_kubernetes_version

    base = default_entries()
    if any(e.artifact is not None and e.artifact[0] == "kubeadm" for e in base):
        return None
    version = default_kubernetes_version()
    tie = {}
    for cni in ("calico", "flannel", "cilium"):
        for art in artifacts_for(version, "amd64", cni=cni):
            tie[mirror_path(art.url)] = (art.name, art.arch, art.version)
    have = {e.path for e in base}
    extra = [MirrorEntry(p, data, tie.get(p)) for p, data in mirror_entries([version]) if p not in have]
    return base + extra


def up(name: str, hosts: Any) -> Lab:
    return Lab.up(Lab.free_name(f"t{os.getpid()}{name}"), hosts, mirror_entries=standin_entries())


@pytest.fixture(scope="class")
def ha_lab() -> Iterator[Lab]:
    lab = up("ha", HA)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def labs() -> Iterator[Callable[[str, Any], Lab]]:
    made: list[Lab] = []

    def make(name: str, hosts: Any) -> Lab:
        made.append(up(name, hosts))
        return made[-1]

    try:
        yield make
    finally:
        for lab in made:
            lab.down()


# ---- ground truth -------------------------------------------------------------------------------
def sh(lab: Lab, host: str, command: str, timeout: float = 60) -> str:
    res = lab.exec(host, ["sh", "-c", command], timeout=timeout)
    assert res.returncode == 0, f"{host}: {command}: {res.stdout}{res.stderr}"
    return res.stdout


def create(lab: Lab, **kw: Any) -> dict[str, Any]:
    from capstan.flows.create import create_cluster

    started = time.monotonic()
    result: dict[str, Any] = create_cluster(spec=str(lab.spec_path), **kw)
    print(f"create on {len(lab.hosts)} hosts: {time.monotonic() - started:.1f} s")
    for host, h in result["hosts"].items():
        print(
            f"  {host}: " + ", ".join(f"{p} {v['changed']}/{v['seconds']}s" for p, v in h["phases"].items())
        )
    return result


def kubectl_nodes(kubeconfig: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def assert_nodes_ready(result: dict[str, Any], lab: Lab, names: list[str], version: str) -> None:
    kubeconfig = result["kubeconfig"]
    assert kubeconfig and os.stat(kubeconfig).st_mode & 0o777 == 0o600
    wide = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "wide"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    print(wide)
    rows = [line.split() for line in wide.splitlines()[1:]]
    assert sorted(r[0] for r in rows) == sorted(names)
    for row in rows:
        assert row[1] == "Ready" and row[4] == f"v{version}", row
        assert row[5] == lab.ip(row[0])  # INTERNAL-IP is the host's ip


def etcd_health(lab: Lab, host: str, members: list[str]) -> None:
    endpoints = ",".join(f"https://{lab.ip(m)}:2379" for m in members)
    out = sh(lab, host, f"etcdctl {ETCDCTL_CERTS} --endpoints={endpoints} endpoint health -w json")
    health = json.loads(out)
    assert len(health) == len(members) and all(h["health"] for h in health), health
    listed = json.loads(sh(lab, host, f"etcdctl {ETCDCTL_CERTS} --endpoints={endpoints} member list -w json"))
    assert sorted(m["name"] for m in listed["members"]) == sorted(members)


def started_processes(lab: Lab, hosts: list[str]) -> dict[str, dict[str, str]]:
    """Per host: each capstan unit's and static pod's PID with its start time (field 22 of stat)."""
    script = (
        "for u in " + " ".join(UNITS) + "; do "
        'p=$(systemctl show -p MainPID "$u" 2>/dev/null | cut -d= -f2); '
        '[ -n "$p" ] && [ "$p" != 0 ] && echo "$u $p $(cut -d" " -f22 /proc/$p/stat)"; done; '
        "for c in kube-apiserver kube-controller-manager kube-scheduler; do "
        'p=$(pgrep -o -f "capstan-standins/.*/$c" || true); '
        '[ -n "$p" ] && echo "$c $p $(cut -d" " -f22 /proc/$p/stat)"; done; true'
    )
    out: dict[str, dict[str, str]] = {}
    for host in hosts:
        lines = [line.split(" ", 1) for line in sh(lab, host, script).splitlines()]
        out[host] = {name: rest for name, rest in lines}
    return out


def assert_all_unchanged(result: dict[str, Any]) -> None:
    changed = {
        f"{host}/{phase}": v["changed"]
        for host, h in result["hosts"].items()
        for phase, v in h["phases"].items()
        if v["changed"]
    }
    assert changed == {} and result["changed"] == 0


# ---- the HA cluster -----------------------------------------------------------------------------
class TestHighlyAvailable:
    """One 5-host lab (3 control plane + etcd, 2 workers) for the create and its converged re-run."""

    def test_create_makes_a_working_cluster(self, ha_lab: Lab) -> None:
        from capstan.spec import load_spec

        spec = load_spec(ha_lab.spec_path)
        result = create(ha_lab)
        assert set(result["hosts"]) == {"cp1", "cp2", "cp3", "w1", "w2"}
        etcd_health(ha_lab, "cp1", ["cp1", "cp2", "cp3"])
        assert_nodes_ready(result, ha_lab, ["cp1", "cp2", "cp3", "w1", "w2"], spec.spec.kubernetes.version)
        cps = [ha_lab.ip(c) for c in ("cp1", "cp2", "cp3")]
        for worker in ("w1", "w2"):
            config = sh(ha_lab, worker, "cat /etc/kube-lb/haproxy.cfg")
            backends = [line.split() for line in config.splitlines() if line.strip().startswith("server ")]
            assert sorted(b[2].rsplit(":", 1)[0] for b in backends) == sorted(cps)
            # through the balancer on 127.0.0.1:6444, with the node's own credentials and the cluster CA
            readyz = sh(
                ha_lab, worker, f"{KUBECTL} --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz"
            )
            assert readyz.strip() == "ok"
            server = sh(ha_lab, worker, "grep 'server:' /etc/kubernetes/kubelet.conf")
            assert "https://127.0.0.1:6444" in server

    def test_rerun_changes_nothing_and_restarts_nothing(self, ha_lab: Lab) -> None:
        hosts = ["cp1", "cp2", "cp3", "w1", "w2"]
        before = started_processes(ha_lab, hosts)
        assert {"etcd", "containerd", "kubelet", "kube-apiserver"} <= set(before["cp1"])
        assert {"containerd", "kubelet", "kube-apiserver-lb"} <= set(before["w1"])
        result = create(ha_lab)
        assert_all_unchanged(result)
        assert started_processes(ha_lab, hosts) == before


# ---- resume -------------------------------------------------------------------------------------
def retry_flow_run(flow_run_id: str) -> subprocess.CompletedProcess[str]:
    """``prefect flow-run retry`` of a run without a deployment: re-runs that very run in a subprocess."""
    from prefect.settings import PREFECT_API_URL

    import capstan.flows.create as create_module

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    entrypoint = f"{create_module.__file__}:create_cluster"
    prefect = Path(sys.executable).with_name("prefect")
    return subprocess.run(
        [str(prefect), "flow-run", "retry", flow_run_id, "--entrypoint", entrypoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def task_states(flow_run_id: str) -> dict[str, list[str]]:
    """Task run name -> the state names of its runs in this flow run (one per attempt of the run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> dict[str, list[str]]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        out: dict[str, list[str]] = {}
        for run in sorted(runs, key=lambda r: r.expected_start_time or r.created or 0):
            out.setdefault(run.name, []).append(run.state.name if run.state else "")
        return out

    result = run_coro_as_sync(read())
    assert result is not None
    return result


def flow_run_result(flow_run_id: str) -> tuple[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> tuple[str, Any]:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
        assert run.state is not None
        value = await run.state.result(raise_on_failure=False) if run.state.is_completed() else None
        return run.state.type.value, value

    result = run_coro_as_sync(read())
    assert result is not None
    return result


def test_power_cut_in_runtime_phase_then_prefect_retry_resumes(
    labs: Callable[[str, Any], Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    from capstan.flows.create import create_cluster
    from capstan.tasks.runner import HOST_PHASES

    lab = labs("resume", [("cp1", CP_ETCD), ("w1", ["worker"]), ("w2", ["worker"])])
    runtime = HOST_PHASES["runtime"]

    def power_cut_w2(session: Any, host: Any) -> Any:
        if host.name == "w2":
            lab.crash("w2")
        return runtime(session, host)

    monkeypatch.setitem(HOST_PHASES, "runtime", power_cut_w2)
    started = time.monotonic()
    state = create_cluster(spec=str(lab.spec_path), return_state=True)
    print(f"failed run: {time.monotonic() - started:.1f} s")
    monkeypatch.undo()
    assert state.is_failed()
    assert "phase runtime failed" in str(state.message) and "w2" in str(state.message)
    assert "cp1:" not in str(state.message) and "w1:" not in str(state.message)
    flow_run_id = str(state.state_details.flow_run_id)
    for host in ("cp1", "w1"):  # their runtime phase completed and stays done
        assert sh(lab, host, "systemctl is-active containerd").strip() == "active"
    lab.boot("w2")
    assert sh(lab, "w2", "test -f /etc/sysctl.d/99-capstan.conf && echo kept").strip() == "kept"

    started = time.monotonic()
    retried = retry_flow_run(flow_run_id)
    print(f"retried run: {time.monotonic() - started:.1f} s")
    assert retried.returncode == 0, retried.stdout[-3000:] + retried.stderr[-3000:]
    kind, summary = flow_run_result(flow_run_id)
    assert kind == "COMPLETED"
    hosts = summary["hosts"]
    # cached from the first attempt: these counts are the first attempt's changes; a re-execution on
    # the converged hosts would have found nothing to change
    for host in ("cp1", "w1"):
        for phase in ("pki", "artifacts", "os-prep", "runtime"):
            assert hosts[host]["phases"][phase]["changed"] > 0, (host, phase)
    assert hosts["w2"]["phases"]["runtime"]["changed"] > 0  # done now, on the rebooted host
    resumed = ("runtime[cp1]", "runtime[w1]", "os-prep[w2]", "artifacts[w2]")
    deadline = time.monotonic() + 60  # the server records task runs from events, up to a second late
    while True:
        states = task_states(flow_run_id)
        if all("Cached" in states.get(n, [])[1:] for n in resumed) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for name in resumed:
        assert states[name][0] == "Completed" and "Cached" in states[name][1:], (name, states[name])
    assert "Cached" not in states["runtime[w2]"], states["runtime[w2]"]
    assert states["runtime[w2]"][-1] == "Completed"
    assert_nodes_ready(summary, lab, ["cp1", "w1", "w2"], summary_version(lab))


def summary_version(lab: Lab) -> str:
    from capstan.spec import load_spec

    return load_spec(lab.spec_path).spec.kubernetes.version


# ---- other topologies ---------------------------------------------------------------------------
def test_single_node_cluster(labs: Callable[[str, Any], Lab]) -> None:
    lab = labs("single", [("node1", ["control-plane", "etcd", "worker"])])
    result = create(lab)
    etcd_health(lab, "node1", ["node1"])
    assert_nodes_ready(result, lab, ["node1"], summary_version(lab))
    nodes = kubectl_nodes(result["kubeconfig"])
    assert not nodes[0]["spec"].get("taints")  # the only node also runs workloads


def test_ha_with_a_separate_etcd_group(labs: Callable[[str, Any], Lab]) -> None:
    topo = [
        ("etcd1", ["etcd"]),
        ("etcd2", ["etcd"]),
        ("etcd3", ["etcd"]),
        ("cp1", ["control-plane"]),
        ("cp2", ["control-plane"]),
        ("w1", ["worker"]),
    ]
    lab = labs("xetcd", topo)
    result = create(lab)
    etcd_health(lab, "etcd1", ["etcd1", "etcd2", "etcd3"])
    assert_nodes_ready(result, lab, ["cp1", "cp2", "w1"], summary_version(lab))
    for host in ("cp1", "cp2"):  # no etcd member on the control planes
        assert lab.exec(host, ["sh", "-c", "pgrep -x etcd"]).returncode != 0
