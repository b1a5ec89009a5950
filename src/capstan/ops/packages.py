"""OS packages: install only what is missing, with the family's package manager.

A converged host yields no step at all, so hosts without network access (the lab, air-gapped
sites with pre-baked images) pass as long as the packages are already there. Names may differ per
family, so callers can pass ``{"debian": [...], "rhel": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from capstan.errors import PlanError
from capstan.facts.model import HostFacts
from capstan.ops.base import Command, Op, script

__all__ = ["packages"]

_APT = 'apt-get update -q && apt-get install -y -q --no-install-recommends "$@"'
_TIMEOUT = 900.0


def packages(facts: HostFacts, names: Sequence[str] | Mapping[str, Sequence[str]]) -> Op:
    """Ensure ``names`` are installed (apt on Debian/Ubuntu, dnf/yum on the RHEL family).

    Needs the names in the facts query's ``packages``.
    """
    family = facts.os.family
    wanted = list(names.get(family, ()) if isinstance(names, Mapping) else names)
    missing = [n for n in wanted if facts.package(n) is None]
    desc = f"packages {' '.join(wanted)}" if wanted else "packages (none for this OS family)"
    if not missing:
        return Op(desc, (), "all installed")
    if family == "debian":
        step = script(_APT, *missing, env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=_TIMEOUT)
    elif family == "rhel":
        tool = "dnf" if facts.has_tool("dnf") or not facts.has_tool("yum") else "yum"
        step = Command((tool, "install", "-y", *missing), timeout=_TIMEOUT)
    else:
        raise PlanError(
            f"{facts.host}: cannot install {', '.join(missing)} on {facts.os.pretty_name or facts.os.id!r}: "
            "capstan installs packages on Debian/Ubuntu (apt) and the RHEL family (dnf) only"
        )
    return Op(desc, (step,), f"missing: {', '.join(missing)}")
