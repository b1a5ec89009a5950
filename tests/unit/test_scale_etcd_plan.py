"""Adding etcd members, pure parts: which hosts are new, what etcd-add decides, what etcd-servers rewrites."""

from __future__ import annotations

import json

import pytest
import yaml
from test_create_support import cluster

from capstan.flows.scale import describe
from capstan.tasks.membership.etcd_add import (
    ETCD_ADD_PHASE,
    EtcdAddFailed,
    decide,
    initial_cluster,
    joining_env,
    parse_added,
)
from capstan.tasks.membership.etcd_servers import (
    ETCD_SERVERS_PHASE,
    EtcdServersError,
    config_endpoints,
    manifest_servers,
    running_servers,
    updated_cluster_configuration,
    with_servers,
)
from capstan.tasks.scale.model import (
    EtcdMember,
    ScaleRefused,
    parse_member_list,
    plan_scale,
    refuse_etcd,
    scale_phases,
    spec_endpoints,
)

EXTRA = (ETCD_ADD_PHASE, ETCD_SERVERS_PHASE)
HOSTS = [
    {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane", "etcd"]},
    {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
    {"name": "e2", "address": "10.0.0.32", "roles": ["etcd"]},
    {"name": "e3", "address": "10.0.0.33", "roles": ["etcd"]},
]
CP1 = EtcdMember("cp1", ("https://10.0.0.11:2380",), True, id=0xA1)
ENDPOINTS_1 = ["https://10.0.0.11:2379"]


def test_new_etcd_hosts_run_etcd_add_then_etcd_servers_on_every_control_plane() -> None:
    c = cluster(hosts=HOSTS)
    plan = plan_scale(c, {"cp1", "w1"}, [CP1], ENDPOINTS_1)
    assert plan.new_etcd == ("e2", "e3") and plan.new_nodes == ()
    assert plan.etcd_refresh == ("cp1",) and plan.etcd_servers
    assert plan.touched == ("e2", "e3", "cp1") and plan.untouched == ("w1",)
    phases = scale_phases(c, plan, EXTRA)
    assert [p.id for p in phases] == ["facts", "pki", "artifacts", "os-prep", "etcd-add", "etcd-servers"]
    hosts = {p.id: [h.name for h in p.hosts(c)] for p in phases}
    assert hosts["etcd-add"] == ["e2", "e3"] and hosts["facts"] == ["e2", "e3"]
    assert hosts["etcd-servers"] == ["cp1"]
    assert [p.concurrency for p in phases if p.id in ("etcd-add", "etcd-servers")] == ["serial", "serial"]
    text = "\n".join(describe(plan))
    assert "adding etcd members (one at a time, as learners, then promoted): e2, e3" in text
    assert (
        "--etcd-servers is brought to the spec's etcd hosts (one at a time, only where it differs): cp1"
        in text
    )


def test_membership_phases_come_before_any_join() -> None:
    hosts = [*HOSTS[:3], {"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane", "etcd"]}]
    c = cluster(hosts=hosts)
    plan = plan_scale(c, {"cp1", "w1"}, [CP1], ENDPOINTS_1)
    order = [p.id for p in scale_phases(c, plan, EXTRA)]
    assert order.index("etcd-add") < order.index("etcd-servers") < order.index("cp-join")
    hosts_of = {p.id: [h.name for h in p.hosts(c)] for p in scale_phases(c, plan, EXTRA)}
    assert hosts_of["etcd-add"] == ["e2", "cp2"]
    assert hosts_of["etcd-servers"] == ["cp1", "cp2"]  # cp2 is skipped by the phase until it has joined


def test_converged_etcd_touches_nothing_and_a_stale_configmap_reruns_etcd_servers() -> None:
    c = cluster(hosts=HOSTS)
    members = [
        CP1,
        EtcdMember("e2", ("https://10.0.0.32:2380",), True),
        EtcdMember("e3", ("https://10.0.0.33:2380",), True),
    ]
    done = plan_scale(c, {"cp1", "w1"}, members, spec_endpoints(c))
    assert done.new_hosts == () and not done.etcd_servers and scale_phases(c, done, EXTRA) == []
    assert "nothing to add" in "\n".join(describe(done))
    # an earlier run added e2 and e3 but died before etcd-servers finished: the ConfigMap says so
    stale = plan_scale(c, {"cp1", "w1"}, members, ENDPOINTS_1)
    assert stale.new_hosts == () and stale.etcd_refresh == ("cp1",)
    assert [p.id for p in scale_phases(c, stale, EXTRA)] == ["etcd-servers"]


def test_a_learner_or_an_unstarted_entry_is_not_a_member_yet() -> None:
    c = cluster(hosts=HOSTS)
    members = [
        CP1,
        EtcdMember("e2", ("https://10.0.0.32:2380",), True, learner=True),
        EtcdMember("", ("https://10.0.0.33:2380",), False),
    ]
    plan = plan_scale(c, {"cp1", "w1"}, members, spec_endpoints(c))
    assert plan.new_etcd == ("e2", "e3")


def test_members_the_spec_does_not_name_are_refused() -> None:
    c = cluster(hosts=HOSTS)
    refuse_etcd(c, [CP1])
    gone = EtcdMember("old", ("https://10.0.0.99:2380",), True, id=0xBEEF)
    with pytest.raises(ScaleRefused, match=r"not in the spec: old beef at https://10.0.0.99:2380"):
        refuse_etcd(c, [CP1, gone])
    ghost = EtcdMember("", ("https://10.0.0.98:2380",), False, id=0xF00)
    with pytest.raises(ScaleRefused, match=r"\(unstarted\) f00"):
        refuse_etcd(c, [CP1, ghost])


def test_member_list_keeps_ids_and_learners() -> None:
    text = json.dumps(
        {
            "members": [
                {"ID": 4390090927710084243, "peerURLs": ["https://10.0.0.32:2380"], "isLearner": True},
                {"ID": 13668033151171901709, "name": "cp1", "peerURLs": ["https://10.0.0.11:2380"]},
            ]
        }
    )
    learner, cp1 = parse_member_list(text, "cp1")
    assert learner.hex_id == "3cecbc7065d31c93" and learner.learner and not learner.started
    assert cp1.hex_id == "bdae9bbc11dd390d" and cp1.voting


def test_decide_per_host() -> None:
    c = cluster(hosts=HOSTS)
    e2 = c.host("e2")
    assert decide(e2, [CP1]).action == "add"
    leftover = EtcdMember("", ("https://10.0.0.32:2380",), False, id=7)
    d = decide(e2, [CP1, leftover])
    assert d.action == "add" and d.leftovers == (leftover,)  # removed, then added again
    learner = EtcdMember("e2", ("https://10.0.0.32:2380",), True, id=8, learner=True)
    d = decide(e2, [CP1, learner])
    assert d.action == "promote" and d.mine is learner
    assert decide(e2, [CP1, EtcdMember("e2", ("https://10.0.0.32:2380",), True)]).action == "member"
    other = EtcdMember("", ("https://10.0.0.33:2380",), False, id=9)
    with pytest.raises(
        EtcdAddFailed, match=r"e2: etcd lists members that never started .* 9 at https://10.0.0.33"
    ):
        decide(e2, [CP1, other])


def test_the_joining_member_gets_state_existing_and_every_member() -> None:
    c = cluster(hosts=HOSTS)
    e3 = c.host("e3")
    members = [CP1, EtcdMember("e2", ("https://10.0.0.32:2380",), True)]
    initial = initial_cluster(e3, members)
    assert initial == "cp1=https://10.0.0.11:2380,e2=https://10.0.0.32:2380,e3=https://10.0.0.33:2380"
    from capstan.render.etcd import etcd_env

    env = joining_env(etcd_env(c, e3, "existing", members=[e3]).content, initial).decode()
    assert f"ETCD_INITIAL_CLUSTER={initial}\n" in env
    assert "ETCD_INITIAL_CLUSTER_STATE=existing\n" in env and "ETCD_NAME=e3\n" in env
    with pytest.raises(EtcdAddFailed, match="never started"):
        initial_cluster(e3, [CP1, EtcdMember("", ("https://10.0.0.32:2380",), False, id=5)])


def test_parse_member_add_answer() -> None:
    text = json.dumps(
        {
            "header": {"cluster_id": 1},
            "member": {"ID": 4390090927710084243, "peerURLs": ["https://10.0.0.32:2380"], "isLearner": True},
            "members": [],
        }
    )
    added = parse_added(text, "cp1")
    assert added.hex_id == "3cecbc7065d31c93" and added.learner and not added.started
    with pytest.raises(EtcdAddFailed, match="cp1: member add answered unreadably"):
        parse_added("Member added", "cp1")


MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.11
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers=https://10.0.0.11:2379
    - --secure-port=6443
    image: registry.k8s.io/kube-apiserver:v1.36.4
    name: kube-apiserver
"""


def test_manifest_flag_is_rewritten_in_place() -> None:
    assert manifest_servers(MANIFEST, "cp1") == ["https://10.0.0.11:2379"]
    three = ["https://10.0.0.11:2379", "https://10.0.0.32:2379", "https://10.0.0.33:2379"]
    new = with_servers(MANIFEST, three)
    assert manifest_servers(new, "cp1") == three
    old_lines, new_lines = MANIFEST.splitlines(), new.splitlines()
    assert [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b] == [11]
    cmd = yaml.safe_load(new)["spec"]["containers"][0]["command"]
    assert "--etcd-servers=" + ",".join(three) in cmd
    assert with_servers(new, ["https://10.0.0.11:2379"]) == MANIFEST
    with pytest.raises(EtcdServersError, match=r"cp1: expected one --etcd-servers line .* found 0"):
        manifest_servers(MANIFEST.replace("etcd-servers", "etcd-other"), "cp1")


def test_kubeadm_config_endpoints_and_configmap_update() -> None:
    init = "kind: InitConfiguration\n---\nkind: ClusterConfiguration\netcd:\n  external:\n    endpoints:\n"
    init += "    - https://10.0.0.11:2379\n    caFile: /etc/kubernetes/pki/etcd/ca.crt\n"
    assert config_endpoints(init, "cp1") == ["https://10.0.0.11:2379"]
    assert config_endpoints("kind: JoinConfiguration\n", "cp2") is None
    cluster_doc = init.split("---\n", 1)[1]
    two = ["https://10.0.0.11:2379", "https://10.0.0.32:2379"]
    updated = updated_cluster_configuration(cluster_doc, two, "cm")
    assert updated is not None
    doc = yaml.safe_load(updated)
    assert doc["etcd"]["external"] == {"endpoints": two, "caFile": "/etc/kubernetes/pki/etcd/ca.crt"}
    assert updated_cluster_configuration(updated, two, "cm") is None
    with pytest.raises(EtcdServersError, match="cm: the ClusterConfiguration has no external etcd"):
        updated_cluster_configuration("kind: ClusterConfiguration\netcd: {local: {}}\n", two, "cm")


def test_running_apiserver_flags_from_pgrep() -> None:
    out = (
        "812 /usr/bin/python3 /usr/local/lib/capstan-standins/v1.36.4/kube-apiserver --advertise-address=x "
        "--etcd-servers=https://a:2379,https://b:2379 --secure-port=6443\n"
        "901 sudo pgrep -af kube-apiserver\n"
    )
    assert running_servers(out) == [["https://a:2379", "https://b:2379"]]
    assert running_servers("901 sudo pgrep -af kube-apiserver\n") == []
