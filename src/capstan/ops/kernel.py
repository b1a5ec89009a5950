"""Kernel settings: sysctls, kernel modules, swap.

Each setting is applied at runtime *and* persisted (``/etc/sysctl.d``, ``/etc/modules-load.d``,
``/etc/fstab``) so a reboot keeps it. Capstan owns its persist files whole, which makes them
deterministic and cheap to compare by sha256.

Two lab realities are handled as converged states, not failures: a module that cannot be loaded
because there is no ``modprobe`` (the lab kernel has ``br_netfilter`` built in), and runtime
sysctls the caller asked to leave alone (outside ``net.*`` they are shared by every lab host).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from capstan.facts.model import HostFacts
from capstan.ops.base import Command, Op, PutFile
from capstan.ops.files import file

__all__ = [
    "MODULES_FILE",
    "SYSCTL_FILE",
    "kernel_module",
    "kernel_modules",
    "render_sysctl_file",
    "swap_off",
    "sysctl",
    "sysctls",
]

SYSCTL_FILE = "/etc/sysctl.d/99-capstan.conf"
MODULES_FILE = "/etc/modules-load.d/capstan.conf"
_HEADER = "# Managed by capstan: changes here are overwritten on the next run.\n"
_APPEAR_WITH_MODULES = ("net.bridge.",)  # keys that exist only once their module is loaded


def _norm(value: str) -> str:
    return " ".join(value.split())


def sysctl(facts: HostFacts, key: str, value: str | int, *, runtime: bool = True) -> Op:
    """Ensure the running kernel has ``key = value`` (``sysctl -w``). Needs ``key`` in ``sysctls``.

    ``runtime=False`` plans nothing (the value is only persisted by ``sysctls``). A key the kernel
    does not have is reported, not forced, unless a module loaded earlier in the run creates it.
    """
    want = _norm(str(value))
    desc = f"sysctl {key} = {want}"
    current = facts.sysctl(key)
    if not runtime:
        return Op(desc, (), "runtime value left alone on request; persisted only")
    if current is not None and _norm(current) == want:
        return Op(desc, (), "already set")
    if current is None and not key.startswith(_APPEAR_WITH_MODULES):
        return Op(desc, (), "not available in this kernel; persisted only")
    return Op(desc, (Command(("sysctl", "-w", f"{key}={want}")),))


def render_sysctl_file(values: Mapping[str, str | int]) -> bytes:
    return (_HEADER + "".join(f"{k} = {_norm(str(v))}\n" for k, v in values.items())).encode()


def sysctls(
    facts: HostFacts,
    values: Mapping[str, str | int],
    *,
    path: str = SYSCTL_FILE,
    runtime_prefixes: Sequence[str] | None = None,
) -> list[Op]:
    """Persist ``values`` in ``path`` and set each at runtime.

    ``runtime_prefixes`` limits the runtime changes to keys starting with one of them (``None``:
    all keys); the file always holds every key. Needs ``path`` in ``files`` and every key in
    ``sysctls``.
    """
    ops = [file(facts, path, render_sysctl_file(values), description=f"sysctl file {path}")]
    for key, value in values.items():
        runtime = runtime_prefixes is None or key.startswith(tuple(runtime_prefixes))
        ops.append(sysctl(facts, key, value, runtime=runtime))
    return ops


def kernel_module(facts: HostFacts, name: str) -> Op:
    """Ensure module ``name`` is loaded now; ``modprobe`` only when it is missing and exists."""
    desc = f"kernel module {name}"
    mods = facts.modules
    n = name.replace("-", "_")
    if n in mods.loaded:
        return Op(desc, (), "loaded")
    if n in mods.builtin or n in mods.sysfs:
        return Op(desc, (), "built into the kernel")
    if not mods.supported:
        return Op(desc, (), "skipped: this kernel has no loadable modules")
    if not facts.has_tool("modprobe"):
        return Op(desc, (), "skipped: modprobe not available")
    return Op(desc, (Command(("modprobe", name)),))


def kernel_modules(facts: HostFacts, names: Iterable[str], *, path: str = MODULES_FILE) -> list[Op]:
    """Persist ``names`` in a modules-load.d file and load each now. Needs ``path`` in ``files``."""
    names = list(names)
    content = (_HEADER + "".join(f"{n}\n" for n in names)).encode()
    return [file(facts, path, content, description=f"modules file {path}")] + [
        kernel_module(facts, n) for n in names
    ]


def _comment_swap(fstab: bytes) -> bytes | None:
    text = fstab.decode("utf-8", "surrogateescape")
    out, changed = [], False
    for raw in text.splitlines(keepends=True):
        fields = raw.split()
        if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "swap":
            out.append("# disabled by capstan (kubelet needs swap off): " + raw)
            changed = True
        else:
            out.append(raw)
    return "".join(out).encode("utf-8", "surrogateescape") if changed else None


def swap_off(facts: HostFacts, *, fstab: str = "/etc/fstab") -> Op:
    """Turn swap off now (``swapoff -a``) and for good (swap lines in ``fstab`` commented out).

    Needs ``fstab`` in the facts query's ``contents``.
    """
    steps: list[Command | PutFile] = []
    if facts.swap.active:
        steps.append(Command(("swapoff", "-a")))
    info = facts.file(fstab)
    current = facts.content(fstab)
    if info is not None and current is not None:
        new = _comment_swap(current)
        if new is not None:
            steps.append(PutFile(fstab, new, info.mode or 0o644, info.owner, info.group))
    return Op("swap off", tuple(steps), "" if steps else "no active swap, none in fstab")
