"""pki phase planning: each host gets exactly its own files, keys 0600, etcd's keys owned by etcd."""

from __future__ import annotations

import pytest
from test_create_support import SimHost, changed, cluster, words

from capstan.ops import Op
from capstan.pki import files_for_host, generate
from capstan.plan.material import pki_inputs
from capstan.spec.models import Cluster
from capstan.tasks.create.pki import ETCD_USER, PkiFile, pki_files, pki_plan, pki_query


@pytest.fixture(scope="module")
def spec() -> Cluster:
    return cluster()


@pytest.fixture(scope="module")
def wanted(spec: Cluster) -> dict[str, list[PkiFile]]:
    pki, _ = generate(pki_inputs(spec))
    return {h.name: pki_files(h, files_for_host(pki, h.name)) for h in spec.hosts}


def plan(sim: SimHost, spec: Cluster, name: str, files: list[PkiFile]) -> list[Op]:
    host = spec.host(name)
    return pki_plan(sim.facts(pki_query(files)), host, files, etcd_home=spec.spec.etcd.data_dir)


def test_a_worker_gets_the_ca_certificate_and_no_key_at_all(
    spec: Cluster, wanted: dict[str, list[PkiFile]]
) -> None:
    paths = [f.path for f in wanted["w1"]]
    assert paths == ["/etc/kubernetes/pki/ca.crt"]
    sim = SimHost("w1")
    ops = plan(sim, spec, "w1", wanted["w1"])
    assert "install -d -m 0755 /etc/kubernetes/pki" in words(ops)
    assert "put /etc/kubernetes/pki/ca.crt" in words(ops)
    assert "useradd" not in words(ops) and ".key" not in words(ops)


def test_kubelet_conf_is_left_to_kubeadm_on_every_host(
    spec: Cluster, wanted: dict[str, list[PkiFile]]
) -> None:
    for files in wanted.values():
        assert "/etc/kubernetes/kubelet.conf" not in [f.path for f in files]


def test_etcd_member_keys_belong_to_etcd_and_every_key_is_0600(
    spec: Cluster, wanted: dict[str, list[PkiFile]]
) -> None:
    files = {f.path: f for f in wanted["cp1"]}
    for name in ("member", "peer"):
        key = files[f"/etc/ssl/etcd/{name}.key"]
        assert (key.owner, key.mode, key.secret) == (ETCD_USER, 0o600, True)
    assert files["/etc/ssl/etcd/etcdctl.key"].owner == "root"
    assert files["/etc/kubernetes/pki/ca.key"].owner == "root"
    for f in files.values():
        assert f.mode == (0o600 if f.secret else 0o644), f.path
        assert f.secret == f.path.endswith((".key", ".conf")), f.path


def test_fresh_etcd_member_creates_the_account_before_files_that_name_it(
    spec: Cluster, wanted: dict[str, list[PkiFile]]
) -> None:
    sim = SimHost("cp1")
    ops = plan(sim, spec, "cp1", wanted["cp1"])
    order = changed(ops)
    assert order[:2] == ["group etcd", "user etcd"]
    text = words(ops)
    assert (
        "useradd --no-create-home --shell /usr/sbin/nologin --system --gid etcd --home-dir /var/lib/etcd"
        in text
    )
    assert "put /etc/ssl/etcd/member.key" in text and "mode 0600 etcd:etcd" in text
    assert "PRIVATE KEY" not in text and "BEGIN" not in text  # step texts never show content
    assert sim.apply(ops) == len(order)
    assert sim.files["/etc/ssl/etcd/peer.key"].owner == "etcd"


def test_converged_host_yields_no_step(spec: Cluster, wanted: dict[str, list[PkiFile]]) -> None:
    for name in ("cp1", "w1"):
        sim = SimHost(name)
        sim.apply(plan(sim, spec, name, wanted[name]))
        again = plan(sim, spec, name, wanted[name])
        assert changed(again) == [], name
        assert all(not op.steps for op in again)


def test_only_what_differs_is_written(spec: Cluster, wanted: dict[str, list[PkiFile]]) -> None:
    sim = SimHost("cp2")
    sim.apply(plan(sim, spec, "cp2", wanted["cp2"]))
    sim.files["/etc/kubernetes/pki/apiserver.crt"].data = b"a stale certificate"
    sim.files["/etc/ssl/etcd/peer.key"].mode = 0o644
    sim.files["/etc/ssl/etcd/member.key"].owner = "root"
    ops = plan(sim, spec, "cp2", wanted["cp2"])
    assert changed(ops) == [
        "certificate /etc/kubernetes/pki/apiserver.crt",
        "key /etc/ssl/etcd/member.key",
        "key /etc/ssl/etcd/peer.key",
    ]
    text = words(ops)
    assert "chmod 0600 /etc/ssl/etcd/peer.key" in text and "chown etcd:etcd /etc/ssl/etcd/member.key" in text
    assert "put /etc/ssl/etcd/" not in text  # a mode or owner fix re-uploads nothing


def test_a_host_receives_only_its_own_keys(spec: Cluster, wanted: dict[str, list[PkiFile]]) -> None:
    own = {f.path: f.content for f in wanted["cp2"]}
    other = {f.path: f.content for f in wanted["cp3"]}
    assert own["/etc/ssl/etcd/member.key"] != other["/etc/ssl/etcd/member.key"]
    shared = {p for p in own if own[p] == other.get(p)}
    assert {p for p in shared if p.endswith(".key")} == {
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/sa.key",
    }
