"""upgrade-cluster's pure planning: version rules, worker batches, what a re-run still has to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_create_support import cluster, spec_doc

from capstan.cli import main
from capstan.errors import CapstanError
from capstan.spec import parse_spec
from capstan.spec.models import Upgrade
from capstan.tasks.upgrade.plan import (
    NodeState,
    UpgradeRefused,
    Version,
    batches,
    check_versions,
    etcd_versions,
    node_done,
    pauses,
    plan_upgrade,
    target_version,
    version_problems,
    worker_batches,
)
from capstan.tasks.upgrade.state import NodeInfo, health_problems, parse_cluster_version

T = Version.parse("1.36.4")


# ---- versions ----------------------------------------------------------------------------------
def test_target_must_be_a_pinned_version_and_the_error_lists_them() -> None:
    assert target_version("v1.36.4") == T
    with pytest.raises(UpgradeRefused) as err:
        target_version("1.37.0")
    msg = str(err.value)
    assert msg.startswith("--to 1.37.0: not a supported version")
    assert "1.36.4, 1.36.3, 1.35.8, 1.34.11" in msg and "\n" not in msg
    with pytest.raises(UpgradeRefused, match=r"--to: 'latest' is not MAJOR\.MINOR\.PATCH"):
        target_version("latest")


def test_one_minor_up_and_patch_upgrades_are_allowed() -> None:
    assert version_problems(T, {"control plane": "v1.35.8", "w1": "v1.35.8", "w2": "v1.36.3"}) == []
    assert version_problems(T, {"w1": "v1.36.4"}) == []  # already there: nothing wrong


def test_skipping_a_minor_is_refused_naming_the_node() -> None:
    problems = version_problems(T, {"cp1": "v1.36.4", "w2": "v1.34.11"})
    assert problems == ["w2 runs v1.34.11: v1.36.4 would skip a minor version; upgrade to 1.35 first"]


@pytest.mark.parametrize("have", ["v1.36.5", "v1.37.0"])
def test_any_downgrade_is_refused(have: str) -> None:
    with pytest.raises(UpgradeRefused, match=f"w1 runs {have}: refusing to downgrade to v1.36.4"):
        check_versions(T, {"w1": have})


def test_patch_downgrade_within_the_minor_is_refused_too() -> None:
    problems = version_problems(Version.parse("1.36.3"), {"control plane": "v1.36.4"})
    assert problems == ["control plane runs v1.36.4: refusing to downgrade to v1.36.3"]


def test_other_major_and_unreadable_versions_are_refused() -> None:
    problems = version_problems(T, {"a": "v2.36.4", "b": ""})
    assert problems[0].startswith("a runs v2.36.4: upgrading across major versions")
    assert problems[1] == "b: cannot read its version (none reported)"


def test_all_problems_in_one_line() -> None:
    with pytest.raises(UpgradeRefused) as err:
        check_versions(T, {"w1": "v1.34.11", "w2": "v1.37.0"})
    assert "w1 runs" in str(err.value) and "w2 runs" in str(err.value) and "\n" not in str(err.value)


def test_version_order_is_numeric() -> None:
    assert Version.parse("1.34.11") > Version.parse("1.34.9")
    assert T.v == "v1.36.4" and str(T) == "1.36.4"


def test_etcd_pins_of_both_versions() -> None:
    assert etcd_versions("v1.35.8", T) == ("3.6.14", "3.6.14")
    assert etcd_versions(None, T) == (None, "3.6.14")
    assert etcd_versions("v1.20.0", T) == (None, "3.6.14")  # not pinned: unknown, never guessed


# ---- batches -----------------------------------------------------------------------------------
def policy(batch: int | str) -> Upgrade:
    return Upgrade(worker_batch=batch)


@pytest.mark.parametrize(
    ("batch", "workers", "size"),
    [
        ("20%", 10, 2),
        ("20%", 4, 1),  # 0.8 rounds down to 0: at least 1
        ("20%", 1, 1),
        ("30%", 10, 3),  # 0.3 * 10 is 3.0000000000000004 in floats: exactly 3 here
        ("33.3%", 3, 1),
        ("50%", 5, 2),
        ("100%", 7, 7),
        (2, 5, 2),
        (9, 5, 5),  # never more than there are
    ],
)
def test_batch_size_count_or_percent_at_least_one(batch: int | str, workers: int, size: int) -> None:
    assert policy(batch).batch_size(workers) == size


def test_float_exact_percent_of_the_pool() -> None:
    # float arithmetic would give 0.07 * 100 = 7.000000000000001 and 0.57 * 100 = 56.99999999999999
    assert policy("7%").batch_size(100) == 7
    assert policy("57%").batch_size(100) == 57


@pytest.mark.parametrize("bad", [0, -1, "0%", "101%", "abc", "20 %"])
def test_bad_batch_policies_are_rejected(bad: Any) -> None:
    doc = spec_doc(upgrade={"workerBatch": bad})
    with pytest.raises(CapstanError, match="upgrade"):
        parse_spec(doc)


def test_batches_cut_in_order_with_a_smaller_last_one() -> None:
    assert batches(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="at least 1"):
        batches(["a"], 0)


def test_worker_batches_size_from_the_whole_pool_not_what_is_left() -> None:
    workers = [f"w{i}" for i in range(1, 11)]
    assert worker_batches(policy("20%"), workers, workers[7:]) == [["w8", "w9"], ["w10"]]
    assert worker_batches(policy("20%"), workers, []) == []


# ---- pauses ------------------------------------------------------------------------------------
def test_pause_parameter_overrides_the_spec() -> None:
    spec_policy = Upgrade.model_validate({"pause": {"beforeNode": True}})
    assert pauses(spec_policy, None) == (True, False)
    assert pauses(spec_policy, "none") == (False, False)
    assert pauses(spec_policy, "after-node") == (False, True)
    with pytest.raises(
        UpgradeRefused, match="pause: 'always': expected one of none, before-node, after-node"
    ):
        pauses(spec_policy, "always")


# ---- what is left to do --------------------------------------------------------------------------
def states(kubelets: dict[str, str], matching: set[str]) -> list[NodeState]:
    return [NodeState(n, v, n in matching) for n, v in kubelets.items()]


def test_plan_orders_control_planes_then_worker_batches() -> None:
    c = cluster(upgrade={"workerBatch": 1})
    old = {n: "v1.35.8" for n in ("cp1", "cp2", "cp3", "w1", "w2")}
    plan = plan_upgrade(c, T, states(old, set()), "v1.35.8")
    assert plan.control_planes == ("cp1", "cp2", "cp3")
    assert plan.worker_batches == (("w1",), ("w2",))
    assert plan.pending == ("cp1", "cp2", "cp3", "w1", "w2") and plan.done == ()
    assert not plan.etcd_changes
    assert plan.describe()[0] == "etcd stays at 3.6.14 (the same pin for both versions): skipped"


def test_a_rerun_skips_nodes_that_report_the_version_and_have_its_binaries() -> None:
    c = cluster()
    kubelets = {"cp1": "v1.36.4", "cp2": "v1.36.4", "cp3": "v1.36.4", "w1": "v1.36.4", "w2": "v1.35.8"}
    # w1 reports the new version but its binaries are not the target's (replaced by hand): not done
    plan = plan_upgrade(c, T, states(kubelets, {"cp1", "cp2", "cp3"}), "v1.36.4")
    assert plan.done == ("cp1", "cp2", "cp3")
    assert plan.control_planes == ()
    assert plan.worker_batches == (("w1",), ("w2",))  # 20% of 2 workers: 1 per batch
    assert "already at v1.36.4: cp1, cp2, cp3" in plan.describe()


def test_node_done_needs_both_facts() -> None:
    assert node_done(NodeState("w1", "v1.36.4", True), T)
    assert not node_done(NodeState("w1", "v1.36.4", False), T)
    assert not node_done(NodeState("w1", "v1.35.8", True), T)
    assert not node_done(NodeState("w1", "", True), T)


# ---- cluster facts (pure parts) ------------------------------------------------------------------
def test_cluster_version_from_kubeadm_config() -> None:
    doc = yaml.safe_dump({"kind": "ClusterConfiguration", "kubernetesVersion": "v1.35.8"})
    assert parse_cluster_version({"ClusterConfiguration": doc}) == "v1.35.8"
    assert parse_cluster_version({}) is None
    assert parse_cluster_version({"ClusterConfiguration": "{{"}) is None


def test_health_problems_name_missing_and_notready_nodes() -> None:
    nodes = {
        "cp1": NodeInfo("cp1", "v1.35.8", True, ""),
        "w1": NodeInfo("w1", "v1.35.8", False, "kubelet down"),
    }
    assert health_problems(nodes, ["cp1", "w1", "w2"]) == [
        "w1: NotReady (kubelet down)",
        "w2: not registered as a Node",
    ]


# ---- command line --------------------------------------------------------------------------------
def test_upgrade_is_mounted_and_refuses_an_unknown_version_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["upgrade", "--help"]) == 0
    assert "--to" in capsys.readouterr().out
    spec = tmp_path / "cluster.yaml"
    spec.write_text(yaml.safe_dump(spec_doc()))
    assert main(["upgrade", "-f", str(spec), "--to", "1.99.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "capstan: error: --to 1.99.0: not a supported version (supported: 1.36.4, 1.36.3, 1.35.8, 1.34.11)"
    ]


def test_the_session_cluster_carries_the_target_version_and_nothing_else_changes() -> None:
    from capstan.flows.upgrade import with_version
    from capstan.tasks.create.artifacts import pinned

    c = cluster(kubernetes={"version": "1.35.8"})
    up = with_version(c, T)
    assert up.spec.kubernetes.version == "1.36.4" and c.spec.kubernetes.version == "1.35.8"
    assert up.model_dump(exclude={"spec": {"kubernetes": {"version"}}}) == c.model_dump(
        exclude={"spec": {"kubernetes": {"version"}}}
    )
    assert pinned(up, "amd64")["kubeadm"].version == "1.36.4"
