"""upgrade-cluster's pure planning: which versions may be reached, what is left to do, in what order.

Everything here is decided from facts gathered beforehand (Node objects, the cluster's kubeadm-config,
per-node binary checks), never from a state file: a re-run after a failure computes the same plan
minus what is already done, so it continues where the last run stopped.

Version rules, as kubeadm's own policy and Kubespray's upgrade playbook apply them: one minor at a
time (a node or the control plane two minors behind the target is refused, naming it), never
downgrade (not even a patch), and only versions capstan has pinned sums for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from capstan.errors import CapstanError
from capstan.spec.models import Cluster, Upgrade
from capstan.versions import pins_for, supported_kubernetes_versions

PauseMode = Literal["none", "before-node", "after-node"]
PAUSE_MODES: tuple[str, ...] = ("none", "before-node", "after-node")
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class UpgradeRefused(CapstanError):
    """The upgrade cannot start: a version rule, an unhealthy cluster, or a bad parameter."""


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str, what: str = "version") -> Version:
        m = _VERSION.fullmatch(text.strip())
        if m is None:
            raise UpgradeRefused(f"{what}: {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.36.4)")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def v(self) -> str:
        """How kubelets and kubeadm spell it: ``v1.36.4``."""
        return f"v{self}"


def target_version(text: str) -> Version:
    """The ``--to`` version, which must be one capstan has pins for (else the list of those)."""
    supported = supported_kubernetes_versions()
    version = Version.parse(text, "--to")
    if str(version) not in supported:
        raise UpgradeRefused(f"--to {text}: not a supported version (supported: {', '.join(supported)})")
    return version


def version_problems(target: Version, running: Mapping[str, str]) -> list[str]:
    """Why ``running`` (who -> version, e.g. ``control plane`` or a node name) cannot go to ``target``.

    A downgrade, another major, or a skipped minor; one line each, naming who. An unreadable version
    is a problem too: deciding blind is how a cluster gets skewed.
    """
    problems = []
    for who, text in running.items():
        try:
            have = Version.parse(text, who)
        except UpgradeRefused:
            problems.append(f"{who}: cannot read its version ({text or 'none reported'})")
            continue
        if have.major != target.major:
            problems.append(f"{who} runs {have.v}: upgrading across major versions is not supported")
        elif have > target:
            problems.append(f"{who} runs {have.v}: refusing to downgrade to {target.v}")
        elif target.minor > have.minor + 1:
            problems.append(
                f"{who} runs {have.v}: {target.v} would skip a minor version; "
                f"upgrade to {have.major}.{have.minor + 1} first"
            )
    return problems


def check_versions(target: Version, running: Mapping[str, str]) -> None:
    problems = version_problems(target, running)
    if problems:
        raise UpgradeRefused("upgrade refused: " + "; ".join(problems))


def etcd_versions(current: str | None, target: Version) -> tuple[str | None, str]:
    """(etcd pinned for the current version or None when unknown, etcd pinned for the target)."""
    want = pins_for(str(target)).etcd
    if current is None:
        return None, want
    try:
        have = pins_for(str(Version.parse(current))).etcd
    except CapstanError:  # the cluster runs a version capstan has no pins for: etcd is unknown
        return None, want
    return have, want


def batches(names: Sequence[str], size: int) -> list[list[str]]:
    """``names`` cut into consecutive batches of ``size`` (the last one may be smaller)."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(names[i : i + size]) for i in range(0, len(names), size)]


def worker_batches(policy: Upgrade, all_workers: Sequence[str], pending: Sequence[str]) -> list[list[str]]:
    """The pending workers in batches sized by the policy against the whole worker pool.

    ``20%`` of 10 workers is 2 per batch even when only 3 are left to do (a re-run), so a re-run is as
    cautious as the first run was.
    """
    if not pending:
        return []
    size = policy.batch_size(len(all_workers)) or 1
    return batches(pending, size)


def pauses(policy: Upgrade, override: str | None) -> tuple[bool, bool]:
    """(before each node, after each node): the flow's ``pause`` parameter, else the spec's."""
    if override is None or override == "":
        return policy.pause.before_node, policy.pause.after_node
    if override not in PAUSE_MODES:
        raise UpgradeRefused(f"pause: {override!r}: expected one of {', '.join(PAUSE_MODES)}")
    return override == "before-node", override == "after-node"


@dataclass(frozen=True)
class NodeState:
    """What the cluster and the host say about one node."""

    name: str
    kubelet: str
    """The Node's status.nodeInfo.kubeletVersion ("" when the Node is missing)."""
    binaries_match: bool
    """kubeadm, kubelet and kubectl on the host have the target version's pinned sums."""


def node_done(state: NodeState, target: Version) -> bool:
    """A node is done when its Node reports the target kubelet AND its binaries are the target's."""
    return state.kubelet == target.v and state.binaries_match


@dataclass(frozen=True)
class UpgradePlan:
    """What this run does, in order; nodes already done are listed apart and not touched."""

    target: Version
    control_planes: tuple[str, ...]
    worker_batches: tuple[tuple[str, ...], ...]
    done: tuple[str, ...]
    etcd_from: str | None
    etcd_to: str
    etcd_hosts: tuple[str, ...]

    @property
    def etcd_changes(self) -> bool:
        return self.etcd_from is not None and self.etcd_from != self.etcd_to

    @property
    def pending(self) -> tuple[str, ...]:
        return self.control_planes + tuple(n for b in self.worker_batches for n in b)

    def describe(self) -> list[str]:
        lines = []
        if self.etcd_changes:
            members = ", ".join(self.etcd_hosts)
            lines.append(f"etcd {self.etcd_from} -> {self.etcd_to}: members one at a time ({members})")
        elif self.etcd_from is None:
            lines.append(
                f"etcd: the current version is not pinned; etcd is left as it is ({self.etcd_to} wanted)"
            )
        else:
            lines.append(f"etcd stays at {self.etcd_to} (the same pin for both versions): skipped")
        if self.control_planes:
            lines.append(f"control planes, one at a time: {' -> '.join(self.control_planes)}")
        for i, batch in enumerate(self.worker_batches, 1):
            lines.append(f"worker batch {i}: {', '.join(batch)}")
        if self.done:
            lines.append(f"already at {self.target.v}: {', '.join(self.done)}")
        return lines


def plan_upgrade(
    cluster: Cluster,
    target: Version,
    states: Iterable[NodeState],
    cluster_version: str | None,
) -> UpgradePlan:
    """Order the work: control planes in spec order, then pending workers in policy-sized batches."""
    by_name = {s.name: s for s in states}
    done = tuple(h.name for h in cluster.nodes if h.name in by_name and node_done(by_name[h.name], target))
    cps = tuple(h.name for h in cluster.control_planes if h.name not in done)
    workers = [h.name for h in cluster.workers]
    pending_workers = [w for w in workers if w not in done]
    etcd_from, etcd_to = etcd_versions(cluster_version, target)
    return UpgradePlan(
        target=target,
        control_planes=cps,
        worker_batches=tuple(
            tuple(b) for b in worker_batches(cluster.spec.upgrade, workers, pending_workers)
        ),
        done=done,
        etcd_from=etcd_from,
        etcd_to=etcd_to,
        etcd_hosts=tuple(h.name for h in cluster.etcd_hosts),
    )
