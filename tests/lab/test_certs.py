"""certs-check and certs-renew on a cluster made by the create flow (3 control-plane+etcd, 1 worker).

Two certificates issued by the cluster's own CAs but expiring in 2 days are planted: cp1's apiserver
serving certificate and cp2's etcd member certificate (both read only at start, so they need the
restarts renew does). Ground truth comes from the hosts: openssl on the files and on the apiserver's
port, etcdctl and kubectl's ``/readyz``. While renew runs, cp3 (which renew does not restart) keeps
answering a linearizable etcd read (quorum held) and its apiserver's ``/readyz``: the cluster stays
healthy throughout because only one node restarts at a time.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from lab_mirror import mirror_entries

from capstan.errors import CapstanError
from capstan.lab import Lab
from capstan.pki import CA_ETCD, CA_FILES, CA_KUBERNETES, leaf_specs
from capstan.pki.certkey import CertKey, load_cert, load_key, make_leaf
from capstan.pki.specs import leaf_name
from capstan.plan.material import pki_inputs
from capstan.spec import load_spec

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("prefect_api")]

CP = ["control-plane", "etcd"]
HOSTS = [("cp1", CP), ("cp2", CP), ("cp3", CP), ("w1", ["worker"])]
APISERVER = "/etc/kubernetes/pki/apiserver"
MEMBER = "/etc/ssl/etcd/member"
ADMIN = "--kubeconfig=/etc/kubernetes/admin.conf"
EC = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/ssl/etcd/ca.crt "
    "--cert=/etc/ssl/etcd/etcdctl.crt --key=/etc/ssl/etcd/etcdctl.key"
)


@pytest.fixture(scope="module")
def cluster(prefect_api: None) -> Iterator[Lab]:
    from capstan.flows.create import create_cluster

    lab = Lab.up(Lab.free_name(f"c{os.getpid()}br"), HOSTS, mirror_entries=mirror_entries())
    try:
        started = time.monotonic()
        create_cluster(spec=str(lab.spec_path))
        print(f"create: {time.monotonic() - started:.0f} s")
        yield lab
    finally:
        lab.down()


def sh(lab: Lab, host: str, command: str, timeout: float = 120) -> str:
    res = lab.exec(host, ["sh", "-c", command], timeout=timeout)
    assert res.returncode == 0, f"{host}: {command}: {res.stdout}{res.stderr[-1500:]}"
    return res.stdout


def read(lab: Lab, host: str, path: str) -> bytes:
    return base64.b64decode(sh(lab, host, f"base64 -w0 {path}"))


def not_after(lab: Lab, host: str, path: str) -> datetime:
    return x509.load_pem_x509_certificate(read(lab, host, path)).not_valid_after_utc


def plant(lab: Lab, host: str, kind: str, base: str, owner: str) -> datetime:
    """Put on ``host`` a leaf of ``kind`` from the cluster's CA expiring in 2 days; return its not_after."""
    inputs = pki_inputs(load_spec(lab.spec_path))
    spec = leaf_specs(inputs)[leaf_name(kind, host)]
    crt_path, key_path = CA_FILES[spec.issuer]
    ca = CertKey(
        load_cert(read(lab, "cp1", crt_path), crt_path), load_key(read(lab, "cp1", key_path), key_path)
    )
    now = datetime.now(UTC)
    leaf = make_leaf(
        spec.subject,
        ca=ca,
        server=spec.server_auth,
        client=spec.client_auth,
        algorithm=inputs.key_algorithm,
        now=now - timedelta(days=363),
        days=365,
    )
    for path, data, mode in (
        (f"{base}.crt", leaf.cert_pem(), "0644"),
        (f"{base}.key", leaf.key_pem(), "0600"),
    ):
        res = lab.exec(host, ["sh", "-c", f"cat > {path}.new"], input=data.decode())
        assert res.returncode == 0, res.stderr
        sh(
            lab,
            host,
            f"chown {owner}:{owner} {path}.new && chmod {mode} {path}.new && mv -f {path}.new {path}",
        )
    return leaf.not_after


def healthy(lab: Lab, host: str) -> str | None:
    """None when ``host``'s etcd answers a linearizable read and its apiserver's /readyz is ok; else why."""
    read_ = lab.exec(host, ["sh", "-c", f"{EC} get /capstan-certs-probe"], timeout=60)
    if read_.returncode != 0:
        return f"{host}: etcd read: {read_.stderr.strip()[-200:]}"
    server = f"https://{load_spec(lab.spec_path).host(host).bind_ip}:6443"  # this host's own apiserver
    ready = lab.exec(host, ["sh", "-c", f"kubectl {ADMIN} --server={server} get --raw=/readyz"], timeout=60)
    if ready.returncode != 0 or ready.stdout.strip() != "ok":
        return f"{host}: /readyz: {(ready.stdout + ready.stderr).strip()[-200:]}"
    return None


class Watch(threading.Thread):
    """Probe ``host``'s health over and over until stopped; keep every failure."""

    def __init__(self, lab: Lab, host: str) -> None:
        super().__init__(daemon=True)
        self.lab, self.host, self.stop, self.probes = lab, host, threading.Event(), 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            why = healthy(self.lab, self.host)
            self.probes += 1
            if why is not None:
                self.failures.append(why)
            self.stop.wait(0.5)


def served_not_after(lab: Lab) -> datetime:
    """The certificate the apiserver actually presents on port 6443."""
    out = sh(
        lab,
        "cp1",
        "openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 -enddate -noout",
    )
    return datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


def test_check_flags_a_planted_certificate_and_renew_replaces_it(cluster: Lab) -> None:
    from capstan.flows.certs import certs_check, certs_renew

    assert all(healthy(cluster, h) is None for h in ("cp1", "cp2", "cp3"))
    before = certs_check(spec=str(cluster.spec_path))
    assert before["flagged"] == [], before["flagged"]
    hosts = {c["host"] for c in before["certificates"]}
    paths = {c["path"] for c in before["certificates"]}
    assert hosts == {"cp1", "cp2", "cp3", "w1"}
    assert {
        f"{APISERVER}.crt",
        f"{MEMBER}.crt",
        "/etc/kubernetes/admin.conf",
        "/etc/ssl/etcd/ca.crt",
    } <= paths

    planted = {
        ("cp1", f"{APISERVER}.crt"): plant(cluster, "cp1", "kubernetes/apiserver", APISERVER, "root"),
        ("cp2", f"{MEMBER}.crt"): plant(cluster, "cp2", "etcd/member", MEMBER, "etcd"),
    }
    ca_before = {p: read(cluster, "cp1", p) for p in (CA_FILES[CA_KUBERNETES][0], CA_FILES[CA_ETCD][0])}
    flagged = certs_check(spec=str(cluster.spec_path))
    assert sorted(flagged["flagged"]) == sorted(f"{h}:{p}" for h, p in planted)
    rows = {c["path"]: c for c in flagged["certificates"] if c["host"] == "cp1"}
    assert rows[f"{APISERVER}.crt"]["days_left"] == 1 and rows[f"{APISERVER}.crt"]["status"] == "RENEW"
    assert "PRIVATE KEY" not in repr(flagged)

    watch = Watch(cluster, "cp3")
    watch.start()
    started = time.monotonic()
    try:
        result = certs_renew(spec=str(cluster.spec_path))
    finally:
        watch.stop.set()
        watch.join(timeout=120)
    print(f"renew: {time.monotonic() - started:.0f} s, {watch.probes} probes on cp3; {result['hosts']}")
    assert watch.probes >= 3 and watch.failures == [], watch.failures  # healthy throughout
    done = result["hosts"]
    assert list(done) == ["cp1", "cp2", "cp3", "w1"]  # etcd members first, one host at a time
    assert done["cp1"]["renewed"] == [f"{APISERVER}.crt", f"{APISERVER}.key"]
    assert done["cp1"]["restarted"] == ["kube-apiserver"]
    assert done["cp2"]["renewed"] == [f"{MEMBER}.crt", f"{MEMBER}.key"]
    assert done["cp2"]["restarted"] == ["etcd"]
    assert done["cp3"]["changed"] == 0 and done["w1"]["changed"] == 0
    assert result["flagged"] == []
    assert "PRIVATE KEY" not in repr(result)

    year = datetime.now(UTC) + timedelta(days=360)
    for host, path in planted:
        assert not_after(cluster, host, path) > year, (host, path)
    assert served_not_after(cluster) > year  # the apiserver was restarted onto the new certificate
    for p, data in ca_before.items():
        assert read(cluster, "cp1", p) == data  # the CAs are kept
    assert sh(cluster, "cp2", f"stat -c %U {MEMBER}.key").strip() == "etcd"
    assert all(healthy(cluster, h) is None for h in ("cp1", "cp2", "cp3"))
    assert "cp1" in sh(cluster, "cp1", f"kubectl {ADMIN} get nodes -o name")

    again = certs_renew(spec=str(cluster.spec_path))  # nothing left to renew: nothing restarted
    assert again["changed"] == 0 and all(not h["restarted"] for h in again["hosts"].values())


def test_renew_refuses_to_restart_a_member_while_another_is_unhealthy(cluster: Lab) -> None:
    from capstan.flows.certs import certs_renew

    planted = plant(cluster, "cp2", "etcd/member", MEMBER, "etcd")
    pid = sh(cluster, "cp2", "systemctl show -p MainPID etcd | cut -d= -f2").strip()
    assert pid not in ("", "0")
    sh(cluster, "cp3", "systemctl stop etcd")
    try:
        with pytest.raises(
            CapstanError, match=r"cp3: etcd endpoint health.*not restarting the etcd member on cp2"
        ):
            certs_renew(spec=str(cluster.spec_path))
        assert not_after(cluster, "cp2", f"{MEMBER}.crt") == planted  # nothing written
        assert (
            sh(cluster, "cp2", "systemctl show -p MainPID etcd | cut -d= -f2").strip() == pid
        )  # not restarted
    finally:
        sh(cluster, "cp3", "systemctl start etcd")
    result = certs_renew(spec=str(cluster.spec_path))  # healthy again: the renewal goes through
    assert result["hosts"]["cp2"]["restarted"] == ["etcd"]
    assert not_after(cluster, "cp2", f"{MEMBER}.crt") > datetime.now(UTC) + timedelta(days=360)
    assert all(healthy(cluster, h) is None for h in ("cp1", "cp2", "cp3"))
