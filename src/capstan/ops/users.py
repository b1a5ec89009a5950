"""Accounts and identity: system users and groups (for services such as etcd), the hostname.

Existing accounts are left exactly as they are: changing a uid or home under a running service is
not something to do silently, so only creation is converged.
"""

from __future__ import annotations

from capstan.facts.model import HostFacts
from capstan.ops.base import Command, Op, script

__all__ = ["group", "hostname", "user"]

_SET_HOSTNAME = r"""printf '%s\n' "$1" > /etc/hostname
if command -v hostname >/dev/null 2>&1; then hostname "$1"
else printf '%s' "$1" > /proc/sys/kernel/hostname; fi
"""


def group(facts: HostFacts, name: str, *, system: bool = True) -> Op:
    """Ensure group ``name`` exists (``groupadd --system``). Needs ``name`` in ``groups``."""
    desc = f"group {name}"
    if facts.group(name) is not None:
        return Op(desc, (), "exists")
    argv = ("groupadd", "--system", name) if system else ("groupadd", name)
    return Op(desc, (Command(argv),))


def user(
    facts: HostFacts,
    name: str,
    *,
    system: bool = True,
    group: str | None = None,
    home: str | None = None,
    shell: str = "/usr/sbin/nologin",
    comment: str | None = None,
) -> Op:
    """Ensure user ``name`` exists (``useradd --system``, no home created, no login shell).

    ``group`` must exist already (order a ``group`` op first). Needs ``name`` in ``users``.
    """
    desc = f"user {name}"
    if facts.user(name) is not None:
        return Op(desc, (), "exists")
    argv = ["useradd", "--no-create-home", "--shell", shell]
    if system:
        argv.append("--system")
    if group:
        argv += ["--gid", group]
    if home:
        argv += ["--home-dir", home]
    if comment:
        argv += ["--comment", comment]
    return Op(desc, (Command((*argv, name)),))


def hostname(facts: HostFacts, name: str) -> Op:
    """Ensure the running hostname and ``/etc/hostname`` are ``name``.

    Works without systemd's hostnamectl (the lab has none). Needs ``/etc/hostname`` in ``contents``.
    """
    desc = f"hostname {name}"
    persisted = facts.content("/etc/hostname")
    if (
        facts.hostname == name
        and persisted is not None
        and persisted.decode(errors="replace").strip() == name
    ):
        return Op(desc, (), "already set")
    return Op(desc, (script(_SET_HOSTNAME, name),))
