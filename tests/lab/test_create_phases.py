"""create-cluster phases facts..api-lb on a fresh 5-host lab, through the real Prefect flow.

One lab for the module (3 control-plane + etcd hosts, 2 workers). The first run must leave a real etcd
cluster, containerd and the node-local haproxy running, keys locked down; the second must change and
restart nothing; a third, after damage done by hand, must repair exactly the damage (in push mode).
Ground truth comes from inside the hosts (``lab.exec``), with the machine's own etcdctl.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.lab import Lab, MirrorEntry

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

CPS = ("cp1", "cp2", "cp3")
WORKERS = ("w1", "w2")
HOSTS = CPS + WORKERS
UNTIL = "api-lb"
SERVICES = ("etcd.service", "containerd.service", "kube-apiserver-lb.service")
ETCDCTL_TLS = [
    "--cacert=/etc/ssl/etcd/ca.crt",
    "--cert=/etc/ssl/etcd/etcdctl.crt",
    "--key=/etc/ssl/etcd/etcdctl.key",
]


def mirror_entries() -> list[MirrorEntry]:
    """The lab's default mirror, plus the kubeadm/kubelet/kubectl stand-ins if it lacks them."""
    from capstan.lab.artifacts import default_entries, mirror_path
    from capstan.lab.standins.build import mirror_entries as standin_entries
    from capstan.versions import artifacts_for, default_kubernetes_version

    version = default_kubernetes_version()
    entries = default_entries(version)
    have = {e.path for e in entries}
    kube = {
        mirror_path(a.url): a
        for a in artifacts_for(version, "amd64")
        if a.name in ("kubeadm", "kubelet", "kubectl")
    }
    for path, data in standin_entries([version]):
        art = kube.get(path)
        if art is not None and path not in have:
            entries.append(MirrorEntry(path, data, (art.name, art.arch, art.version)))
    return entries


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    from conftest import lab_unavailable  # tests/lab/conftest.py

    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    the_lab = Lab.up(Lab.free_name(f"t{os.getpid()}ph"), 5, mirror_entries=mirror_entries())
    try:
        yield the_lab
    finally:
        the_lab.down()


def run(spec: Path, until: str = UNTIL) -> dict[str, Any]:
    from capstan.flows.create import create_cluster

    result = create_cluster(spec=str(spec), until=until)
    assert isinstance(result, dict)
    return result


def print_timings(title: str, result: dict[str, Any]) -> None:
    """Per-phase wall time (the slowest host) and changes, visible with ``pytest -s``."""
    phases: dict[str, tuple[float, int]] = {}
    for host in result["hosts"].values():
        for phase, v in host["phases"].items():
            seconds, changes = phases.get(phase, (0.0, 0))
            phases[phase] = (max(seconds, v["seconds"]), changes + v["changed"])
    print(f"\n{title}: " + ", ".join(f"{p} {s:.1f}s/{c} changed" for p, (s, c) in phases.items()))


def main_pids(lab: Lab, host: str) -> dict[str, str]:
    out = {}
    for unit in SERVICES:
        res = lab.exec(host, ["systemctl", "show", "-p", "MainPID", unit])
        out[unit] = res.stdout.strip()
    return out


@pytest.fixture(scope="module")
def first_run(lab: Lab) -> dict[str, Any]:
    result = run(lab.spec_path)
    print_timings("fresh lab", result)
    return result


def test_fresh_lab_runs_every_phase_on_every_host(first_run: dict[str, Any]) -> None:
    assert set(first_run["hosts"]) == set(HOSTS)
    for name, host in first_run["hosts"].items():
        want = {"facts", "pki", "artifacts", "os-prep", "runtime", "api-lb"} | (
            {"etcd"} if name in CPS else set()
        )
        assert set(host["phases"]) == want, name
        for phase in ("pki", "artifacts", "runtime", "api-lb"):
            assert host["phases"][phase]["changed"] > 0, (name, phase)


def test_real_etcdctl_sees_three_healthy_started_members(lab: Lab, first_run: dict[str, Any]) -> None:
    endpoints = ",".join(f"https://{lab.ip(h)}:2379" for h in CPS)
    base = ["/usr/bin/etcdctl", f"--endpoints={endpoints}", *ETCDCTL_TLS]
    env = {"ETCDCTL_API": "3"}
    health = lab.exec("cp2", [*base, "endpoint", "health"], env=env)
    assert health.returncode == 0, health.stderr
    assert len(re.findall(r"is healthy", health.stdout + health.stderr)) == 3
    members = lab.exec("cp3", [*base, "member", "list"], env=env)
    rows = [line.split(", ") for line in members.stdout.strip().splitlines()]
    assert sorted((r[1], r[2]) for r in rows) == [("started", h) for h in CPS]


def test_containerd_answers_on_every_node(lab: Lab, first_run: dict[str, Any]) -> None:
    for host in HOSTS:
        res = lab.exec(host, ["ctr", "--address", "/run/containerd/containerd.sock", "version"])
        assert res.returncode == 0 and "Server:" in res.stdout, (host, res.stderr)


def test_containerd_runs_with_the_rendered_gc_setting(lab: Lab, first_run: dict[str, Any]) -> None:
    """The running containerd took the config: its GC scheduler reports the pause threshold 0 (the
    default 0.02 makes an idle containerd wake every few milliseconds, see the config template)."""
    sock = ["ctr", "--address", "/run/containerd/containerd.sock"]
    res = lab.exec("w1", [*sock, "plugins", "ls", "--detailed", "id==scheduler"])
    assert res.returncode == 0, res.stderr
    assert re.search(r"^\s*PauseThreshold\s+0$", res.stdout, re.MULTILINE), res.stdout


def test_haproxy_listens_locally_with_the_three_apiservers_as_backends(
    lab: Lab, first_run: dict[str, Any]
) -> None:
    for host in HOSTS:
        probe = lab.exec(host, ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6444"])
        assert probe.returncode == 0, (host, probe.stderr)
        cfg = lab.exec(host, ["cat", "/etc/kube-lb/haproxy.cfg"]).stdout
        servers = re.findall(r"^\s+server (\S+) (\S+)$", cfg, re.MULTILINE)
        assert servers == [(h, f"{lab.ip(h)}:6443") for h in CPS], host
        procs = lab.exec(host, ["pgrep", "-f", "haproxy -Ws -f /etc/kube-lb/haproxy.cfg"])
        assert procs.returncode == 0, host


def key_files(lab: Lab, host: str) -> dict[str, tuple[str, str]]:
    script = (
        "find /etc/kubernetes /etc/ssl/etcd -type f \\( -name '*.key' -o -name '*.conf' -o -name '*.json' \\)"
        " -exec stat -c '%n %a %U' {} + 2>/dev/null; true"
    )
    out = lab.exec(host, ["sh", "-c", script]).stdout
    return {p: (mode, owner) for p, mode, owner in (line.split() for line in out.splitlines())}


def test_keys_are_0600_and_a_worker_has_no_key(lab: Lab, first_run: dict[str, Any]) -> None:
    for host in CPS:
        keys = key_files(lab, host)
        assert "/etc/kubernetes/pki/ca.key" in keys and "/etc/ssl/etcd/member.key" in keys
        for path, (mode, owner) in keys.items():
            assert mode == "600", (host, path, mode)
            assert owner == (
                "etcd" if path in ("/etc/ssl/etcd/member.key", "/etc/ssl/etcd/peer.key") else "root"
            )
    for host in WORKERS:
        assert key_files(lab, host) == {}, host
        assert lab.exec(host, ["test", "-e", "/etc/kubernetes/kubelet.conf"]).returncode != 0


def counting_gathers(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count, per host, the fact gathers sent over SSH from now on (commands carrying the marker)."""
    from capstan.facts.query import MARKER
    from capstan.remote.fabric import FabricTransport

    seen: Counter[str] = Counter()
    real = FabricTransport.run

    def run(self: FabricTransport, argv: Any, **kw: Any) -> Any:
        if MARKER in (argv if isinstance(argv, str) else " ".join(argv)):
            seen[self.host] += 1
        return real(self, argv, **kw)

    monkeypatch.setattr(FabricTransport, "run", run)
    return seen


def test_second_run_changes_nothing_and_restarts_nothing(
    lab: Lab, first_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {h: main_pids(lab, h) for h in HOSTS}
    gathers = counting_gathers(monkeypatch)
    result = run(lab.spec_path)
    print_timings("converged re-run", result)
    assert result["changed"] == 0
    assert {h: v["changed"] for h, v in result["hosts"].items()} == dict.fromkeys(HOSTS, 0)
    assert {h: main_pids(lab, h) for h in HOSTS} == before
    # Phase 1's gather answered every later phase: nothing was sent that could change a host.
    assert dict(gathers) == dict.fromkeys(HOSTS, 1)


def test_push_mode_repairs_exactly_what_was_damaged(
    lab: Lab, first_run: dict[str, Any], tmp_path: Path
) -> None:
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["spec"]["artifacts"]["mode"] = "push"
    doc["spec"]["artifacts"]["cacheDir"] = str(tmp_path / "cache")
    spec = tmp_path / "push.yaml"
    spec.write_text(yaml.safe_dump(doc))
    runc = lab.exec("w1", ["sha256sum", "/usr/local/bin/runc"]).stdout.split()[0]
    assert lab.exec("w1", ["rm", "/usr/local/bin/runc", "/usr/local/bin/ctr"]).returncode == 0
    cfg = "/etc/kube-lb/haproxy.cfg"
    assert lab.exec("w2", ["sh", "-c", f"echo '# edited by hand' >> {cfg}"]).returncode == 0
    before = {h: main_pids(lab, h) for h in HOSTS}

    result = run(spec)
    print_timings("push-mode repair", result)

    changes = {
        (h, p): v["changed"]
        for h, host in result["hosts"].items()
        for p, v in host["phases"].items()
        if v["changed"]
    }
    # w1: runc and ctr uploaded; w2: the config restored and the balancer restarted with it.
    assert changes == {("w1", "artifacts"): 2, ("w2", "api-lb"): 2}
    assert lab.exec("w1", ["sha256sum", "/usr/local/bin/runc"]).stdout.split()[0] == runc
    assert lab.exec("w1", ["test", "-x", "/usr/local/bin/ctr"]).returncode == 0
    cached = sorted(
        p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*") if p.is_file()
    )
    assert cached == [
        "amd64/containerd/2.3.4/containerd-2.3.4-linux-amd64.tar.gz",
        "amd64/runc/1.4.3/runc.amd64",
    ]
    after = {h: main_pids(lab, h) for h in HOSTS}
    restarted = {(h, u) for h in HOSTS for u in SERVICES if after[h][u] != before[h][u]}
    assert restarted == {("w2", "kube-apiserver-lb.service")}


def test_an_etcd_setting_change_restarts_each_member_and_nothing_else(
    lab: Lab, first_run: dict[str, Any], tmp_path: Path
) -> None:
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["spec"]["etcd"] = {"snapshotCount": 20000}
    spec = tmp_path / "etcd.yaml"
    spec.write_text(yaml.safe_dump(doc))
    before = {h: main_pids(lab, h) for h in HOSTS}

    result = run(spec, until="etcd")
    print_timings("etcd setting change", result)

    changes = {
        (h, p): v["changed"]
        for h, host in result["hosts"].items()
        for p, v in host["phases"].items()
        if v["changed"]
    }
    assert changes == {(h, "etcd"): 3 for h in CPS}  # env file, restart, record
    after = {h: main_pids(lab, h) for h in HOSTS}
    restarted = {(h, u) for h in HOSTS for u in SERVICES if after[h][u] != before[h][u]}
    assert restarted == {(h, "etcd.service") for h in CPS}
    for h in CPS:
        env = lab.exec(h, ["cat", "/etc/etcd.env"]).stdout
        assert "ETCD_SNAPSHOT_COUNT=20000" in env and "ETCD_INITIAL_CLUSTER_STATE=new" in env
    endpoints = ",".join(f"https://{lab.ip(h)}:2379" for h in CPS)
    health = lab.exec(
        "cp1",
        ["/usr/bin/etcdctl", f"--endpoints={endpoints}", *ETCDCTL_TLS, "endpoint", "health"],
        env={"ETCDCTL_API": "3"},
    )
    assert health.returncode == 0 and len(re.findall(r"is healthy", health.stdout + health.stderr)) == 3
