"""The pure half of ``capstan certs``: flagging, what a renewal rewrites, what it restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from capstan.pki import (
    CA_FILES,
    CA_KUBERNETES,
    SA_FILES,
    ClusterPKI,
    NodeIdentity,
    PKIInputs,
    files_for_host,
    generate,
    leaf_specs,
)
from capstan.pki.certkey import make_leaf
from capstan.pki.specs import leaf_name
from capstan.tasks.certs.model import (
    APISERVER,
    CONTROLLER_MANAGER,
    ETCD,
    SCHEDULER,
    cert_paths,
    check_rows,
    key_paths,
    plan_host,
    renew_order,
    restarts_for,
    updated_record,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CP = frozenset({"control-plane", "etcd"})
INPUTS = PKIInputs(
    cluster_name="certs",
    cluster_domain="cluster.local",
    service_cidr="10.233.0.0/18",
    nodes=(
        NodeIdentity("cp1", "10.0.0.11", "", CP),
        NodeIdentity("cp2", "10.0.0.12", "", CP),
        NodeIdentity("w1", "10.0.0.21", "", frozenset({"worker"})),
    ),
    endpoint_host="127.0.0.1",
    endpoint_port=6443,
)
ROOT_PATHS = tuple(p for pair in CA_FILES.values() for p in pair) + SA_FILES
APISERVER_CRT = "/etc/kubernetes/pki/apiserver.crt"
APISERVER_KEY = "/etc/kubernetes/pki/apiserver.key"
MEMBER_CRT = "/etc/ssl/etcd/member.crt"


@pytest.fixture(scope="module")
def pki() -> ClusterPKI:
    return generate(INPUTS, now=NOW)[0]


def on_host(pki: ClusterPKI, node: str) -> dict[str, bytes]:
    return {p: hf.content for p, hf in files_for_host(pki, node).items()}


def roots(pki: ClusterPKI) -> dict[str, bytes]:
    files = on_host(pki, "cp1")
    return {p: files[p] for p in ROOT_PATHS}


def plant(pki: ClusterPKI, files: dict[str, bytes], kind: str, node: str, base: str, days_left: int) -> None:
    """Replace one leaf with one from the same CA that expires in ``days_left`` days."""
    spec = leaf_specs(INPUTS)[leaf_name(kind, node)]
    ck = make_leaf(
        spec.subject,
        ca=pki.get(spec.issuer),
        server=spec.server_auth,
        client=spec.client_auth,
        algorithm=INPUTS.key_algorithm,
        now=NOW - timedelta(days=365 - days_left),
        days=365,
    )
    files[f"{base}.crt"] = ck.cert_pem()
    files[f"{base}.key"] = ck.key_pem()


def test_cert_paths_never_include_keys() -> None:
    paths = cert_paths(INPUTS, "cp1")
    assert APISERVER_CRT in paths and "/etc/kubernetes/admin.conf" in paths and MEMBER_CRT in paths
    assert not [p for p in paths if p.endswith(".key")]
    assert "/var/lib/kubelet/pki/kubelet-client-current.pem" in cert_paths(INPUTS, "w1")
    assert APISERVER_KEY in key_paths(INPUTS, "cp1")


def test_check_flags_what_expires_within_the_threshold_and_reads_kubeconfigs(pki: ClusterPKI) -> None:
    cp1 = on_host(pki, "cp1")
    plant(pki, cp1, "kubernetes/apiserver", "cp1", "/etc/kubernetes/pki/apiserver", days_left=2)
    files = {"cp1": {p: cp1[p] for p in cert_paths(INPUTS, "cp1") if p in cp1}, "w1": {}}
    rows = check_rows(files, NOW, timedelta(days=30))
    assert rows[0].path == APISERVER_CRT and rows[0].days_left == 2 and rows[0].flagged
    assert rows[0].status == "RENEW" and rows[0].as_dict()["kind"] == "leaf"
    assert [r.path for r in rows if r.flagged] == [APISERVER_CRT]
    assert "/etc/kubernetes/admin.conf" in {r.path for r in rows}  # the kubeconfig's client cert
    assert all(r.host == "cp1" for r in rows)
    assert not [r for r in check_rows(files, NOW, timedelta(days=1)) if r.flagged]
    later = check_rows(files, NOW + timedelta(days=3), timedelta(days=0))
    assert later[0].status == "EXPIRED"
    text = repr([r.as_dict() for r in rows])
    assert "PRIVATE KEY" not in text


def test_renew_rewrites_only_the_expiring_leaf_and_restarts_its_reader(pki: ClusterPKI) -> None:
    cp1 = on_host(pki, "cp1")
    plant(pki, cp1, "kubernetes/apiserver", "cp1", "/etc/kubernetes/pki/apiserver", days_left=2)
    plan = plan_host(INPUTS, roots(pki), "cp1", cp1, NOW, timedelta(days=30))
    assert sorted(plan.files) == [APISERVER_CRT, APISERVER_KEY]
    assert plan.restarts == (APISERVER,)
    assert "expires" in plan.reasons[APISERVER_CRT]
    new = x509.load_pem_x509_certificate(plan.files[APISERVER_CRT])
    assert new.not_valid_after_utc - NOW > timedelta(days=300)
    assert new.issuer == pki.get(CA_KUBERNETES).cert.subject  # same CA: nothing else needs to change
    assert "PRIVATE KEY" not in repr(plan)
    # the CAs are never part of a renewal
    assert not set(plan.files) & set(ROOT_PATHS)


def test_an_etcd_member_cert_restarts_etcd_and_a_kubeconfig_its_pod(pki: ClusterPKI) -> None:
    cp2 = on_host(pki, "cp2")
    plant(pki, cp2, "etcd/member", "cp2", "/etc/ssl/etcd/member", days_left=2)
    plan = plan_host(INPUTS, roots(pki), "cp2", cp2, NOW, timedelta(days=30))
    assert sorted(plan.files) == [MEMBER_CRT, "/etc/ssl/etcd/member.key"]
    assert plan.restarts == (ETCD,)
    assert restarts_for(["/etc/kubernetes/scheduler.conf"], etcd=True, control_plane=True) == (SCHEDULER,)
    assert restarts_for(
        ["/etc/kubernetes/controller-manager.conf", "/etc/ssl/etcd/peer.crt", APISERVER_CRT],
        etcd=True,
        control_plane=True,
    ) == (ETCD, APISERVER, CONTROLLER_MANAGER)
    assert (
        restarts_for(
            ["/etc/kubernetes/admin.conf", "/etc/ssl/etcd/etcdctl.crt"], etcd=True, control_plane=True
        )
        == ()
    )
    assert restarts_for([MEMBER_CRT], etcd=False, control_plane=True) == ()


def test_a_healthy_host_needs_nothing_and_missing_files_are_left_to_create(pki: ClusterPKI) -> None:
    cp1 = on_host(pki, "cp1")
    assert not plan_host(INPUTS, roots(pki), "cp1", cp1, NOW, timedelta(days=30)).files
    w1 = on_host(pki, "w1")
    plan = plan_host(INPUTS, roots(pki), "w1", w1, NOW, timedelta(days=30))
    assert not plan.files  # kubelet.conf is the kubelet's own
    del cp1[MEMBER_CRT]
    plan = plan_host(INPUTS, roots(pki), "cp1", cp1, NOW, timedelta(days=30))
    assert MEMBER_CRT not in plan.files and "missing" in plan.skipped[MEMBER_CRT]


def test_everything_is_renewed_when_the_window_is_wider_than_a_leaf_lives(pki: ClusterPKI) -> None:
    cp1 = on_host(pki, "cp1")
    plan = plan_host(INPUTS, roots(pki), "cp1", cp1, NOW, timedelta(days=400))
    assert APISERVER_CRT in plan.files and MEMBER_CRT in plan.files
    assert plan.restarts == (ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER)


def test_updated_record_replaces_only_the_named_hashes() -> None:
    record = b"aaa  /etc/etcd.env\nbbb  /etc/ssl/etcd/member.crt\n-  /etc/ssl/etcd/peer.crt\n"
    new = updated_record(record, {"/etc/ssl/etcd/member.crt": "ccc", "/nope": "x"})
    assert new == b"aaa  /etc/etcd.env\nccc  /etc/ssl/etcd/member.crt\n-  /etc/ssl/etcd/peer.crt\n"
    assert updated_record(b"", {"a": "b"}) == b""


def test_renew_order_puts_etcd_members_first_then_control_planes() -> None:
    hosts = [("w1", False, False), ("cp1", True, True), ("cp2", False, True), ("e1", True, False)]
    assert renew_order(hosts) == ["cp1", "e1", "cp2", "w1"]
