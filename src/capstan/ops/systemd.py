"""systemd units: unit files and service state (enabled, running, restarted on change).

Restarting is the disruptive part, so it happens only when something the service reads changed in
this same run: callers pass the ``Op``s of its config files (``depends_on``) or a flag. A changed
unit file triggers ``daemon-reload`` first (and only then). Only ``is-active``/``is-enabled`` are
relied on, because the lab's systemctl emulator implements those but not ``show --value``.
"""

from __future__ import annotations

from collections.abc import Iterable

from capstan.errors import PlanError
from capstan.facts.model import HostFacts
from capstan.ops.base import Command, Op, Step, any_changed
from capstan.ops.files import file

__all__ = ["UNIT_DIR", "service", "unit_file"]

UNIT_DIR = "/etc/systemd/system"


def unit_file(facts: HostFacts, name: str, content: bytes | str, *, directory: str = UNIT_DIR) -> Op:
    """Ensure the unit file ``directory/name`` has ``content``. Needs that path in ``files``."""
    path = f"{directory}/{name}"
    return file(facts, path, content, mode=0o644, description=f"unit file {path}")


def service(
    facts: HostFacts,
    name: str,
    *,
    enabled: bool = True,
    running: bool = True,
    config_changed: bool = False,
    unit_changed: bool = False,
    depends_on: Iterable[Op] = (),
) -> Op:
    """Ensure unit ``name`` is enabled/disabled and running/stopped as asked.

    A running service is restarted when ``config_changed`` or ``unit_changed`` is true, or when
    any of ``depends_on`` changes something; a stopped one is simply started. Needs ``name`` in
    the facts query's ``units``.
    """
    state = facts.unit(name)
    config_changed = config_changed or any_changed(depends_on)
    desc = f"service {name}" + (" enabled" if enabled else "") + (" running" if running else " stopped")
    if state.enabled_state == "masked" and (enabled or running):
        raise PlanError(f"{facts.host}: unit {name} is masked; unmask it before capstan can manage it")
    steps: list[Step] = []
    if unit_changed:
        steps.append(Command(("systemctl", "daemon-reload")))
    if enabled and not state.enabled:
        steps.append(Command(("systemctl", "enable", name)))
    elif not enabled and state.enabled_state in ("enabled", "enabled-runtime"):
        steps.append(Command(("systemctl", "disable", name)))
    if running and not state.active:
        steps.append(Command(("systemctl", "start", name)))
    elif running and (config_changed or unit_changed):
        steps.append(Command(("systemctl", "restart", name)))
    elif not running and state.active:
        steps.append(Command(("systemctl", "stop", name)))
    if steps and not facts.has_tool("systemctl"):
        raise PlanError(f"{facts.host}: cannot manage service {name}: systemctl not found")
    note = "" if steps else f"{state.enabled_state or 'unknown'}, {state.active_state or 'unknown'}"
    return Op(desc, tuple(steps), note)
