"""Is the cluster there yet? Pure evaluation of Node objects and health answers, plus deadline polling.

The evaluation is pure (Node objects as plain dicts in, problems as one-line strings out), so unit tests
cover it without a cluster; the flows poll it against the API with :func:`poll_until` until there is no
problem left or the deadline passes, then fail with the last problems, each naming its node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from capstan.kube.access import KubeError

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class NodeView:
    """What readiness needs from one Node object."""

    name: str
    ready: bool
    reason: str
    kubelet_version: str
    unschedulable: bool


def node_view(node: Obj) -> NodeView:
    """The readiness-relevant part of a Node (as the API returns it, as a dict)."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    ready, reason = False, "no Ready condition yet"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
            reason = str(cond.get("message") or cond.get("reason") or "")
            break
    return NodeView(
        name=str(meta.get("name", "")),
        ready=ready,
        reason="" if ready else reason,
        kubelet_version=str((status.get("nodeInfo") or {}).get("kubeletVersion", "")),
        unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
    )


def want_version(version: str) -> str:
    """``v1.36.4`` from ``1.36.4`` or ``v1.36.4``: how kubelets report their version."""
    return version if version.startswith("v") else f"v{version}"


def registration_problems(nodes: Iterable[Obj], expected: Iterable[str]) -> list[str]:
    """One problem per expected node that has no Node object."""
    have = {node_view(n).name for n in nodes}
    return [f"{name}: not registered as a Node" for name in expected if name not in have]


def readiness_problems(nodes: Iterable[Obj], expected: Iterable[str], version: str) -> list[str]:
    """One problem per expected node that is missing, NotReady, or runs another kubelet version."""
    views = {v.name: v for v in (node_view(n) for n in nodes)}
    want = want_version(version)
    problems: list[str] = []
    for name in expected:
        v = views.get(name)
        if v is None:
            problems.append(f"{name}: not registered as a Node")
        elif not v.ready:
            problems.append(f"{name}: NotReady ({v.reason})" if v.reason else f"{name}: NotReady")
        elif v.kubelet_version != want:
            problems.append(f"{name}: kubelet {v.kubelet_version or 'version unknown'}, want {want}")
    return problems


def readyz_problem(status_code: int | None, body: str, error: str = "") -> str:
    """Empty when an apiserver's /readyz answered 200 ``ok``; otherwise why not, on one line."""
    if status_code is None:
        return error or "no answer"
    if status_code == 200:
        return ""
    text = body.strip()
    failed = [x.strip() for x in text.splitlines() if "fail" in x.lower()]
    detail = "; ".join(failed[:3]) if failed else (text.splitlines()[0] if text else "")
    return f"HTTP {status_code}" + (f": {detail}" if detail else "")


def collapse(problems: list[str]) -> list[str]:
    """``["cp1: NotReady (x)", "w1: NotReady (x)"]`` -> ``["cp1, w1: NotReady (x)"]`` (order kept)."""
    by_text: dict[str, list[str]] = {}
    for problem in problems:
        name, sep, text = problem.partition(": ")
        if not sep:
            name, text = "", problem
        by_text.setdefault(text, []).append(name)
    return [
        f"{', '.join(n for n in names if n)}: {text}" if any(names) else text
        for text, names in by_text.items()
    ]


def poll_until(
    check: Callable[[], list[str]],
    timeout: float,
    what: str,
    *,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``check`` until it returns no problems; after ``timeout`` seconds raise with the last ones.

    ``check`` is called at least once, and once more at the deadline, so a slow first answer never
    turns into a timeout without a final look.
    """
    deadline = clock() + timeout
    while True:
        problems = check()
        if not problems:
            return
        left = deadline - clock()
        if left <= 0:
            raise KubeError(f"{what}: not done after {timeout:.0f} s: " + "; ".join(collapse(problems)))
        sleep(min(interval, left))
