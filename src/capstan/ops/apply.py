"""The executor: run planned operations' steps on a host, or only report them (dry run).

Steps run in order and the first failure stops the host: later steps usually depend on earlier
ones (directory before file, unit file before restart). Because every operation converges, the
retry after a failure only finds the remaining steps, so no rollback is attempted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from capstan.ops.base import Command, Op, OpResult, PutFile, Step
from capstan.remote.base import Transport

__all__ = ["apply"]

log = logging.getLogger("capstan.ops")


def apply(transport: Transport, ops: Op | Iterable[Op], *, dry_run: bool = False) -> OpResult:
    """Run every step of ``ops`` on ``transport``'s host (none when ``dry_run``).

    Raises whatever the transport raises (``CommandFailed``, ``TransportError``...) at the first
    failing step; the operations before it are already converged.
    """
    planned = (ops,) if isinstance(ops, Op) else tuple(ops)
    steps: list[Step] = []
    for op in planned:
        if not op.changed:
            log.debug("%s: %s", transport.host, op)
            continue
        verb = "would change" if dry_run else "changing"
        log.info("%s: %s %s (%d steps)", transport.host, verb, op.description, len(op.steps))
        for step in op.steps:
            if not dry_run:
                _run_step(transport, step)
            steps.append(step)
    changed = [op.description for op in planned if op.changed]
    if len(planned) == 1:
        description = planned[0].description
    else:
        description = f"{len(changed)} of {len(planned)} operations changed" + (
            f": {', '.join(changed)}" if changed else ""
        )
    return OpResult(
        changed=bool(steps),
        steps=tuple(steps),
        description=description,
        dry_run=dry_run,
        ops=planned,
    )


def _run_step(transport: Transport, step: Step) -> None:
    if isinstance(step, PutFile):
        transport.put(step.path, step.content, mode=step.mode, owner=step.owner, group=step.group, sudo=True)
    elif isinstance(step, Command):
        transport.run(
            step.argv,
            sudo=step.sudo,
            env=dict(step.env) or None,
            stdin=step.stdin,
            timeout=step.timeout,
            check=True,
        )
    else:  # pragma: no cover - Step is a closed union
        raise TypeError(f"unknown step {step!r}")
