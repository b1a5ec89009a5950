"""The pure parts of the kubeadm phases: guards from facts, kubeadm command lines, node readiness."""

from __future__ import annotations

from typing import Any

import pytest

from capstan.kube import node_view, poll_until, readiness_problems, readyz_problem, registration_problems
from capstan.kube.access import ApiAccess, KubeError, parse_kubeconfig
from capstan.kube.readiness import collapse
from capstan.render import RenderedFile
from capstan.tasks.create._kubeadm import (
    KUBEADM_CONFIG,
    NodeState,
    broken_init_message,
    init_action,
    init_argv,
    join_action,
    join_argv,
    kube_files,
)


def node(
    name: str, ready: str | None = "True", version: str = "v1.36.4", message: str = ""
) -> dict[str, object]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready, "message": message}]
    return {
        "metadata": {"name": name},
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": version}},
    }


# ---- kubeadm init guard -------------------------------------------------------------------------
def test_init_runs_when_kubeadm_never_ran() -> None:
    assert init_action(NodeState(manifests=False, kubelet_config=False)) == "init"


def test_init_is_done_when_api_ready_node_registered_and_config_uploaded() -> None:
    state = NodeState(True, True, api_ready=True, registered=True, cluster_config=True)
    assert init_action(state) == "done"


def test_init_never_runs_twice_even_without_kubelet_config() -> None:
    state = NodeState(True, False, api_ready=True, registered=True, cluster_config=True)
    assert init_action(state) == "done"


@pytest.mark.parametrize(("registered", "config"), [(False, True), (True, False), (False, False)])
def test_init_that_died_after_starting_the_control_plane_is_finished(registered: bool, config: bool) -> None:
    state = NodeState(True, True, api_ready=True, registered=registered, cluster_config=config)
    assert init_action(state) == "finish"
    assert "--skip-phases=preflight" in init_argv(finish=True)


def test_manifests_without_a_ready_api_is_broken_never_reset() -> None:
    assert init_action(NodeState(True, True, api_ready=False)) == "broken"
    message = broken_init_message("cp1", "https://10.0.0.1:6443", "HTTP 500")
    assert message.startswith("cp1: ") and "\n" not in message
    assert "kubeadm reset" in message and "CA" in message


def test_init_command_reads_capstans_config_and_hides_the_token() -> None:
    argv = init_argv()
    assert argv[1:4] == ["init", "--config", KUBEADM_CONFIG]
    assert "--skip-token-print" in argv
    assert not any("ignore-preflight" in a for a in argv)


# ---- kubeadm join guard -------------------------------------------------------------------------
@pytest.mark.parametrize("control_plane", [False, True])
def test_join_runs_on_a_fresh_node(control_plane: bool) -> None:
    assert join_action(NodeState(False, False), control_plane) == "join"


def test_join_with_leftovers_asks_the_api_first() -> None:
    assert join_action(NodeState(False, True), False) == "wait"
    assert join_action(NodeState(True, False), True) == "wait"


def test_worker_registered_is_done() -> None:
    assert join_action(NodeState(False, True, registered=True), False) == "done"


def test_control_plane_needs_its_apiserver_ready_too() -> None:
    assert join_action(NodeState(True, True, api_ready=True, registered=True), True) == "done"
    assert join_action(NodeState(True, True, api_ready=False, registered=True), True) == "broken"


def test_leftovers_but_not_registered_after_waiting_is_broken() -> None:
    assert join_action(NodeState(False, True, api_ready=False, registered=False), False) == "broken"


def test_worker_join_ignores_exactly_the_files_capstan_placed() -> None:
    argv = join_argv(control_plane=False)
    assert argv[1:4] == ["join", "--config", KUBEADM_CONFIG]
    flag = next(a for a in argv if a.startswith("--ignore-preflight-errors="))
    names = flag.split("=", 1)[1].split(",")
    assert names == ["FileAvailable--etc-kubernetes-kubelet.conf", "FileAvailable--etc-kubernetes-pki-ca.crt"]
    assert "all" not in (n.lower() for n in names)


def test_control_plane_join_role_comes_from_the_config_not_a_flag() -> None:
    argv = join_argv(control_plane=True)
    assert "--control-plane" not in argv  # kubeadm refuses mixing --config with it
    flag = next(a for a in argv if a.startswith("--ignore-preflight-errors="))
    assert flag.split("=", 1)[1] == "FileAvailable--etc-kubernetes-kubelet.conf"


def test_kube_files_are_kubelet_units_and_etc_kubernetes_only() -> None:
    files = {
        p: RenderedFile(p, b"x")
        for p in (
            "/etc/systemd/system/kubelet.service",
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "/etc/kubernetes/kubeadm-config.yaml",
            "/etc/kubernetes/encryption-config.yaml",
            "/etc/systemd/system/containerd.service",
            "/etc/etcd.env",
            "/etc/crictl.yaml",
        )
    }
    assert sorted(kube_files(files)) == [
        "/etc/kubernetes/encryption-config.yaml",
        "/etc/kubernetes/kubeadm-config.yaml",
        "/etc/systemd/system/kubelet.service",
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    ]


# ---- readiness ----------------------------------------------------------------------------------
def test_node_view_reads_ready_condition_and_version() -> None:
    view = node_view(node("w1", "False", message="cni plugin not initialized"))
    assert (view.name, view.ready, view.kubelet_version) == ("w1", False, "v1.36.4")
    assert view.reason == "cni plugin not initialized"
    assert node_view(node("w2", None)).ready is False


def test_all_ready_at_the_version_has_no_problem() -> None:
    nodes = [node("cp1"), node("w1")]
    assert readiness_problems(nodes, ["cp1", "w1"], "1.36.4") == []
    assert readiness_problems(nodes, ["cp1"], "v1.36.4") == []


def test_each_problem_names_its_node() -> None:
    nodes = [node("cp1", "False", message="cni plugin not initialized"), node("w1", version="v1.35.2")]
    problems = readiness_problems(nodes, ["cp1", "w1", "w2"], "1.36.4")
    assert problems == [
        "cp1: NotReady (cni plugin not initialized)",
        "w1: kubelet v1.35.2, want v1.36.4",
        "w2: not registered as a Node",
    ]


def test_registration_ignores_readiness() -> None:
    nodes = [node("w1", "False")]
    assert registration_problems(nodes, ["w1"]) == []
    assert registration_problems(nodes, ["w2"]) == ["w2: not registered as a Node"]


def test_readyz_answers() -> None:
    assert readyz_problem(200, "ok") == ""
    body = "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed"
    assert readyz_problem(500, body) == "HTTP 500: [-]etcd failed: reason withheld; readyz check failed"
    assert readyz_problem(None, "", "ConnectError: refused") == "ConnectError: refused"


def test_same_problem_on_many_nodes_is_said_once() -> None:
    problems = ["cp1: NotReady (no cni)", "w1: NotReady (no cni)", "w2: not registered as a Node", "API down"]
    assert collapse(problems) == ["cp1, w1: NotReady (no cni)", "w2: not registered as a Node", "API down"]


def test_poll_until_returns_as_soon_as_nothing_is_left() -> None:
    answers = [["w1: NotReady"], []]
    slept: list[float] = []
    now = [0.0]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    poll_until(lambda: answers.pop(0), 10, "nodes", clock=lambda: now[0], sleep=sleep)
    assert slept == [1.0]


def test_poll_until_fails_with_the_last_problems_after_the_deadline() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    calls = []

    def check() -> list[str]:
        calls.append(now[0])
        return [f"w1: NotReady at {now[0]:.1f}"]

    with pytest.raises(KubeError, match=r"nodes: not done after 3 s: w1: NotReady at 3\.0"):
        poll_until(check, 3, "nodes", interval=1.0, clock=lambda: now[0], sleep=sleep)
    assert calls[-1] == 3.0  # a last look at the deadline


# ---- admin access -------------------------------------------------------------------------------
KUBECONFIG = b"""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6444", certificate-authority-data: Q0E=}}]
users: [{name: admin, user: {client-certificate-data: Q0VSVA==, client-key-data: U0VDUkVU}}]
contexts: [{name: admin@c, context: {cluster: c, user: admin}}]
current-context: admin@c
"""


def test_admin_kubeconfig_never_shows_in_repr() -> None:
    access = ApiAccess(
        parse_kubeconfig(KUBECONFIG, "cp1:/etc/kubernetes/admin.conf"), "https://10.0.0.1:6443"
    )
    assert "U0VDUkVU" not in repr(access) and "client-key" not in repr(access)
    assert access.at("https://10.0.0.2:6443").server == "https://10.0.0.2:6443"


def test_a_file_that_is_no_kubeconfig_is_named() -> None:
    with pytest.raises(KubeError, match=r"^cp1:/etc/kubernetes/admin\.conf: not a kubeconfig"):
        parse_kubeconfig(b"- just a list\n", "cp1:/etc/kubernetes/admin.conf")


# ---- the node's files and the kubelet service ----------------------------------------------------
def facts_for(
    files: dict[str, RenderedFile],
    *,
    present: bool,
    kubelet: str = "inactive",
    set_up: bool = False,
    stale: str = "",
    recorded: bool = True,
) -> Any:
    from capstan.facts.model import FileInfo, HostFacts, UnitState
    from capstan.ops import sha256_hex

    infos: dict[str, FileInfo | None] = {}
    for path, f in kube_files(files).items():
        content = b"old" if path == stale else f.content
        infos[path] = (
            FileInfo(kind="regular file", mode=f.mode, owner="root", group="root", sha256=sha256_hex(content))
            if present
            else None
        )
        infos[path.rsplit("/", 1)[0]] = (
            FileInfo(kind="directory", mode=0o755, owner="root", group="root") if present else None
        )
    from capstan.tasks.create._common import applied_record

    units = {
        p: sha256_hex(files[p].content)
        for p in (
            "/etc/systemd/system/kubelet.service",
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        )
    }
    record = applied_record(units) if recorded else b"other"
    infos["/var/lib/capstan/applied"] = FileInfo(kind="directory") if present else None
    infos["/var/lib/capstan/applied/kubelet"] = (
        FileInfo(kind="regular file", mode=0o600, owner="root", group="root", sha256=sha256_hex(record))
        if present
        else None
    )
    infos["/etc/kubernetes/manifests/kube-apiserver.yaml"] = FileInfo(kind="regular file") if set_up else None
    infos["/var/lib/kubelet/config.yaml"] = FileInfo(kind="regular file") if set_up else None
    enabled = "enabled" if present else "disabled"
    return HostFacts(
        host="cp1",
        tools=frozenset({"systemctl"}),
        units={"kubelet": UnitState(active_state=kubelet, enabled_state=enabled)},
        files=infos,
    )


NODE_FILES = {
    p: RenderedFile(p, f"content of {p}".encode(), mode=0o600 if "kubeadm-config" in p else 0o644)
    for p in (
        "/etc/systemd/system/kubelet.service",
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "/etc/kubernetes/kubeadm-config.yaml",
        "/etc/kubernetes/audit-policy.yaml",
        "/etc/containerd/config.toml",
    )
}


def steps(ops: list[Any]) -> list[str]:
    return [str(s) for op in ops for s in op.steps]


def test_fresh_node_gets_its_files_and_an_enabled_but_not_started_kubelet() -> None:
    from capstan.tasks.create._kube import node_ops

    done = steps(node_ops(NODE_FILES, facts_for(NODE_FILES, present=False)))
    assert "put /etc/kubernetes/kubeadm-config.yaml (46 bytes, mode 0600 root:root)" in done
    assert not any("containerd" in s for s in done)  # the runtime phase's file
    assert done[-3:-1] == ["systemctl daemon-reload", "systemctl enable kubelet"]  # kubeadm starts it
    assert done[-1].startswith("put /var/lib/capstan/applied/kubelet")


def test_converged_node_changes_nothing_and_restarts_nothing() -> None:
    from capstan.tasks.create._kube import node_ops

    facts = facts_for(NODE_FILES, present=True, kubelet="active", set_up=True)
    assert steps(node_ops(NODE_FILES, facts)) == []


def test_a_changed_kubelet_unit_restarts_a_running_kubelet() -> None:
    from capstan.tasks.create._kube import node_ops

    facts = facts_for(
        NODE_FILES,
        present=True,
        kubelet="active",
        set_up=True,
        stale="/etc/systemd/system/kubelet.service",
        recorded=False,
    )
    assert steps(node_ops(NODE_FILES, facts))[-3:-1] == [
        "systemctl daemon-reload",
        "systemctl restart kubelet",
    ]


def test_a_unit_written_by_a_run_that_died_before_the_restart_restarts_now() -> None:
    from capstan.tasks.create._kube import node_ops

    facts = facts_for(NODE_FILES, present=True, kubelet="active", set_up=True, recorded=False)
    done = steps(node_ops(NODE_FILES, facts))
    assert done[0] == "systemctl restart kubelet" and done[1].startswith(
        "put /var/lib/capstan/applied/kubelet"
    )


def test_a_set_up_node_whose_kubelet_is_down_gets_it_started() -> None:
    from capstan.tasks.create._kube import node_ops

    facts = facts_for(NODE_FILES, present=True, kubelet="inactive", set_up=True)
    assert steps(node_ops(NODE_FILES, facts)) == ["systemctl start kubelet"]
