"""backup-etcd and restore-etcd on a real 3-member cluster made by the create flow.

Three control-plane+etcd hosts; the cluster comes from ``create_cluster`` (real etcd 3.4 over TLS, the
kubeadm/kubelet/apiserver stand-ins on top). 10,000 keys are written through etcd's own gRPC gateway,
snapshots are taken by the flow, all etcd data is destroyed (power cut of every host, data dir wiped,
etcd started empty), and the restore flow must bring every key back with the API answering.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lab_mirror import mirror_entries

from capstan.errors import CapstanError, PhaseFailed
from capstan.lab import Lab
from capstan.tasks.etcd.model import is_snapshot_name

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

CP = ["control-plane", "etcd"]
HOSTS = ["cp1", "cp2", "cp3"]
KEYS = 10_000
BACKUPS = "/var/backups/etcd"
ADMIN = "--kubeconfig=/etc/kubernetes/admin.conf"
EC = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/ssl/etcd/ca.crt "
    "--cert=/etc/ssl/etcd/etcdctl.crt --key=/etc/ssl/etcd/etcdctl.key"
)
PUT_KEYS = r"""
import base64, http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile="/etc/ssl/etcd/ca.crt")
ctx.load_cert_chain("/etc/ssl/etcd/etcdctl.crt", "/etc/ssl/etcd/etcdctl.key")
prefix, count = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPSConnection("127.0.0.1", 2379, context=ctx, timeout=30)
b64 = lambda s: base64.b64encode(s.encode()).decode()
for start in range(0, count, 100):  # etcd allows 128 operations per transaction
    ops = [{"requestPut": {"key": b64(f"{prefix}{i:05d}"), "value": b64(f"value-{i}")}}
           for i in range(start, min(count, start + 100))]
    conn.request("POST", "/v3/kv/txn", json.dumps({"success": ops}), {"Content-Type": "application/json"})
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != 200 or not json.loads(body).get("succeeded"):
        sys.exit(f"txn at {start}: {answer.status} {body[:300]!r}")
"""


@pytest.fixture(scope="module")
def cluster(prefect_api: None) -> Iterator[Lab]:
    """A lab whose cluster the create flow made (down at the end of the module, whatever happens)."""
    from capstan.flows.create import create_cluster

    lab = Lab.up(
        Lab.free_name(f"t{os.getpid()}br"), [(h, CP) for h in HOSTS], mirror_entries=mirror_entries()
    )
    try:
        create_cluster(spec=str(lab.spec_path))
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def offhost(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offhost")


def sh(lab: Lab, host: str, command: str, timeout: float = 120) -> str:
    res = lab.exec(host, ["sh", "-c", command], timeout=timeout)
    assert res.returncode == 0, f"{host}: {command}: {res.stdout}{res.stderr[-1500:]}"
    return res.stdout


def key_count(lab: Lab, host: str) -> int:
    out = sh(lab, host, f"{EC} get /capstan-test/ --prefix --keys-only --limit=1 -w json")
    return int(json.loads(out).get("count", 0))


def healthy(lab: Lab, host: str) -> bool:
    return lab.exec(host, ["sh", "-c", f"{EC} endpoint health"], timeout=60).returncode == 0


def dated_dirs(lab: Lab, host: str) -> list[str]:
    out = lab.exec(host, ["ls", "-1", BACKUPS]).stdout
    return sorted(n for n in out.split() if is_snapshot_name(n))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_etcd_everywhere(lab: Lab) -> None:
    """Members wait for each other's quorum at start: start them at the same time."""
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(lambda h: sh(lab, h, "systemctl start etcd"), HOSTS))


def test_backup_writes_a_verified_snapshot_on_the_member_and_off_host(cluster: Lab, offhost: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from capstan.flows.backup import backup_etcd

    res = cluster.exec("cp1", ["python3", "-", "/capstan-test/k", str(KEYS)], input=PUT_KEYS, timeout=300)
    assert res.returncode == 0, res.stderr
    assert key_count(cluster, "cp2") == KEYS
    sh(cluster, "cp1", f"kubectl {ADMIN} create configmap before-backup -n default --from-literal=a=b")

    result = backup_etcd(spec=str(cluster.spec_path), destination=str(offhost))
    print_phase_seconds(result)

    snap = result["snapshot"]
    host, path = snap["host"], snap["path"]
    assert (
        host in HOSTS and path == f"{BACKUPS}/{snap['name']}/snapshot.db" and is_snapshot_name(snap["name"])
    )
    assert snap["keys"] >= KEYS and snap["revision"] > 0
    modes = sh(cluster, host, f"stat -c '%a %U' {path} {BACKUPS}/{snap['name']}").split("\n")
    assert modes[:2] == ["600 root", "700 root"]
    assert sh(cluster, host, f"cd {BACKUPS}/{snap['name']} && sha256sum -c snapshot.db.sha256").strip() == (
        "snapshot.db: OK"
    )
    on_host = sh(cluster, host, f"sha256sum {path}").split()[0]
    copy = offhost / result["cluster"] / snap["name"] / "snapshot.db"
    assert result["offhost"] == str(copy) and copy.is_file()
    assert sha256_file(copy) == on_host == snap["sha256"]
    assert (copy.parent / "snapshot.db.sha256").read_text().split()[0] == on_host
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert result["copies"] == [f"{host}:{path}", str(copy)]
    assert "private" not in json.dumps(result).lower()  # no key material in the summary

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"etcd-backup-{result['cluster']}"]))
        )
    assert arts, "no table artifact"
    rows = arts[0].data if isinstance(arts[0].data, list) else json.loads(str(arts[0].data))
    assert any(r["snapshot"] == snap["name"] and r["off-host"] == str(copy) for r in rows)


def test_an_unhealthy_member_is_skipped_and_the_cli_says_where_copies_went(
    cluster: Lab, offhost: Path
) -> None:
    from typer.testing import CliRunner

    from capstan.cli_etcd import app
    from capstan.flows.backup import backup_etcd

    cli = CliRunner().invoke(app, ["backup", "-f", str(cluster.spec_path), "--destination", str(offhost)])
    assert cli.exit_code == 0, cli.output
    usual, path = cli.output.split("copy: ")[1].split()[0].split(":")  # the first copy is on the member
    assert usual in HOSTS and path.startswith(f"{BACKUPS}/etcd-") and f"copy: {offhost}/" in cli.output
    sh(cluster, usual, "systemctl stop etcd")
    try:
        result = backup_etcd(spec=str(cluster.spec_path), destination=str(offhost))
    finally:
        sh(cluster, usual, "systemctl start etcd")
    assert usual in result["skipped"]
    assert result["snapshot"]["host"] != usual and result["snapshot"]["keys"] >= KEYS
    assert healthy(cluster, usual)


def test_off_host_copies_beyond_the_retention_are_pruned_and_foreign_files_stay(
    cluster: Lab, offhost: Path
) -> None:
    """Old copies (planted, and those of the tests above) go; other clusters and foreign files stay;
    a block that cannot be listed is not pruned, and the run says so."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.filesystems import RemoteFileSystem

    from capstan.flows.backup import backup_etcd
    from capstan.spec import load_spec
    from capstan.tasks.etcd.offhost import DirStore

    name = load_spec(cluster.spec_path).name
    base = offhost / name
    old, annotated, partial = "etcd-20000101T000000Z", "etcd-20000102T000000Z", "etcd-20000103T000000Z"
    for d in (base / old, base / annotated, base / partial, base / "etcd-by-hand", offhost / "other" / old):
        d.mkdir(parents=True, exist_ok=True)
        (d / "snapshot.db").write_bytes(b"not really etcd")
        if d.name != partial:
            (d / "snapshot.db.sha256").write_text(hashlib.sha256(b"not really etcd").hexdigest() + "\n")
    (base / annotated / "README").write_text("kept for the audit")
    (base / "notes.txt").write_text("foreign")
    before = DirStore(offhost).snapshots(name) or []

    result = backup_etcd(spec=str(cluster.spec_path), retention=2, destination=str(offhost))

    fresh = result["snapshot"]["name"]
    keep = sorted({*before, fresh})[-2:]
    assert fresh in keep and DirStore(offhost).snapshots(name) == keep
    pruned = result["offhost_retention"]
    assert pruned["where"] == str(offhost) and pruned["keep"] == 2 and not pruned["errors"]
    assert pruned["left"] == [annotated] and os.listdir(base / annotated) == ["README"]
    assert sorted(pruned["removed"]) == sorted({*before, partial} - {*keep, annotated})
    assert sorted(n for n in os.listdir(base) if is_snapshot_name(n)) == sorted([annotated, *keep])
    assert (base / "notes.txt").read_text() == "foreign" and (base / "etcd-by-hand" / "snapshot.db").is_file()
    assert DirStore(offhost).snapshots("other") == [old]
    gone = {r["snapshot"] for r in result["snapshots"] if r["host"] == "off-host" and r["state"] == "removed"}
    assert gone == set(pruned["removed"])

    # A block that cannot list its files: the copy is made and verified, retention says it was skipped.
    RemoteFileSystem(basepath=f"memory://capstan-{name}-offhost").save("etcd-unlistable", overwrite=True)
    result = backup_etcd(spec=str(cluster.spec_path), destination="block:remote-file-system/etcd-unlistable")
    assert result["offhost"].startswith("block:remote-file-system/etcd-unlistable:")
    skipped = result["offhost_retention"]["skipped"]
    assert skipped.startswith("block:remote-file-system/etcd-unlistable cannot list its files")
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"etcd-backup-{name}"])),
            sort=ArtifactSort.UPDATED_DESC,
        )
    assert f"off-host retention skipped: {skipped}" in (arts[0].description or "")


def test_retention_keeps_the_newest_two_on_every_member(
    cluster: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from prefect.filesystems import LocalFileSystem

    from capstan.flows.backup import backup_etcd

    basepath = tmp_path_factory.mktemp("block")
    LocalFileSystem(basepath=str(basepath)).save("etcd-offhost", overwrite=True)
    taken = []
    for _ in range(3):
        result = backup_etcd(
            spec=str(cluster.spec_path), retention=2, destination="block:local-file-system/etcd-offhost"
        )
        taken.append((result["snapshot"]["host"], result["snapshot"]["name"]))
        assert result["offhost"] == str(
            basepath / result["cluster"] / result["snapshot"]["name"] / "snapshot.db"
        )
    for host in HOSTS:
        assert len(dated_dirs(cluster, host)) <= 2
    last_host, last_name = taken[-1]
    assert len(dated_dirs(cluster, last_host)) == 2 and last_name in dated_dirs(cluster, last_host)
    if all(h == last_host for h, _ in taken):  # the usual case: the same follower every time
        assert dated_dirs(cluster, last_host) == [name for _, name in taken[1:]]


def test_a_snapshot_that_does_not_exist_is_refused(cluster: Lab) -> None:
    from capstan.flows.restore import restore_etcd

    with pytest.raises(CapstanError, match="snapshot etcd-20000101T000000Z not found"):
        restore_etcd(spec=str(cluster.spec_path), snapshot="etcd-20000101T000000Z")
    assert all(healthy(cluster, h) for h in HOSTS)


def test_a_checksum_mismatch_on_one_member_is_refused_naming_it(cluster: Lab) -> None:
    from capstan.flows.restore import restore_etcd

    newest = max((n, h) for h in HOSTS for n in dated_dirs(cluster, h))
    name, host = newest
    path = f"{BACKUPS}/{name}/snapshot.db"
    sh(cluster, host, f"printf 'rot' >> {path}")
    with pytest.raises(
        PhaseFailed, match=rf"phase etcd-restore-stage failed: {host}: {path} has sha256 .* refusing"
    ):
        restore_etcd(spec=str(cluster.spec_path), destination="block:local-file-system/etcd-offhost")
    for h in HOSTS:  # refused before anything was stopped
        assert healthy(cluster, h)
        sh(cluster, h, "test -f /etc/kubernetes/manifests/kube-apiserver.yaml")
    sh(cluster, host, f"rm -f {path}")  # the restore below copies it again from off-host


def test_restore_brings_back_every_key_after_all_etcd_data_is_destroyed(cluster: Lab) -> None:
    from capstan.flows.restore import restore_etcd

    sh(cluster, "cp1", f"kubectl {ADMIN} create configmap after-backup -n default --from-literal=a=b")
    for h in HOSTS:
        cluster.crash(h)
    for h in HOSTS:
        cluster.boot(h, wait=False)  # a member's boot waits for quorum: boot all, then wait
    for h in HOSTS:
        cluster.wait_ssh(h, timeout=120)
    for h in HOSTS:
        sh(cluster, h, "systemctl stop etcd; rm -rf /var/lib/etcd/member")
    start_etcd_everywhere(cluster)
    assert [key_count(cluster, h) for h in HOSTS] == [0, 0, 0]  # destroyed: an empty cluster

    result = restore_etcd(spec=str(cluster.spec_path), destination="block:local-file-system/etcd-offhost")
    print_phase_seconds(result)

    assert [key_count(cluster, h) for h in HOSTS] == [KEYS, KEYS, KEYS]
    for h in HOSTS:
        assert healthy(cluster, h)
        assert lab_has_no_pre_restore_dir(cluster, h)
        manifests = sh(cluster, h, "ls /etc/kubernetes/manifests").split()
        assert {"kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"} <= set(
            manifests
        )
    members = json.loads(sh(cluster, "cp2", f"{EC} member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == HOSTS
    nodes = sh(cluster, "cp1", f"kubectl {ADMIN} get nodes -o name").split()
    assert sorted(nodes) == [f"node/{h}" for h in HOSTS]
    assert lab_kubectl_ok(cluster, "get configmap before-backup -n default")
    assert not lab_kubectl_ok(cluster, "get configmap after-backup -n default")
    assert result["token"].startswith(f"{result['cluster']}-etcd-restore-")
    assert set(result["apiservers"].values()) == {"moved"}


def lab_has_no_pre_restore_dir(lab: Lab, host: str) -> bool:
    return not lab.exec(host, ["sh", "-c", "ls -d /var/lib/etcd.pre-restore-* 2>/dev/null"]).stdout.strip()


def lab_kubectl_ok(lab: Lab, args: str) -> bool:
    return lab.exec("cp1", ["sh", "-c", f"kubectl {ADMIN} {args}"], timeout=60).returncode == 0


def print_phase_seconds(result: dict[str, Any]) -> None:
    """Where a flow's time went (shown with -s; figures, not asserts)."""
    slowest: dict[str, float] = {}
    for info in result["hosts"].values():
        for phase, p in info["phases"].items():
            slowest[phase] = max(slowest.get(phase, 0.0), p["seconds"])
    print(", ".join(f"{phase} {sec:.1f} s" for phase, sec in slowest.items()))
