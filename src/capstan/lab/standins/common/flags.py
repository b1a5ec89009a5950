"""Command-line flags the way Kubernetes components (pflag) take them.

Why not argparse: components get ``--name=value`` and ``--name value``, booleans as ``--flag`` or
``--flag=false``, and must tolerate flags they do not model (a newer kubeadm may pass one) while
saying so in the log; argparse's prefix matching and error exits fit none of that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field


class FlagError(Exception):
    """A flag is malformed, has a bad value, or a required one is missing."""


@dataclass(frozen=True)
class Flag:
    name: str
    default: str | None = None
    boolean: bool = False
    required: bool = False


@dataclass
class Flags:
    values: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def get_str(self, name: str) -> str:
        return self.values.get(name, "")

    def get_bool(self, name: str) -> bool:
        raw = self.values.get(name, "false").lower()
        if raw in ("true", "1", "t"):
            return True
        if raw in ("false", "0", "f", ""):
            return False
        raise FlagError(f"--{name}: invalid boolean {raw!r}")

    def get_int(self, name: str) -> int:
        raw = self.values.get(name, "")
        try:
            return int(raw)
        except ValueError:
            raise FlagError(f"--{name}: invalid integer {raw!r}") from None

    def get_list(self, name: str) -> list[str]:
        return [p.strip() for p in self.values.get(name, "").split(",") if p.strip()]

    def get_duration(self, name: str) -> float:
        return parse_duration(self.values.get(name, ""), name)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(raw: str, name: str = "duration") -> float:
    """A Go duration (``40s``, ``1m30s``, ``500ms``) in seconds."""
    if raw in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(raw) or pos == 0:
        raise FlagError(f"--{name}: invalid duration {raw!r}")
    return total


def parse(argv: Iterable[str], known: Iterable[Flag]) -> Flags:
    """Parse ``argv``; unknown ``--flags`` are collected in ``Flags.unknown``, positionals are errors."""
    spec = {f.name: f for f in known}
    out = Flags({f.name: f.default for f in spec.values() if f.default is not None})
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unexpected argument {arg!r} (flags only)")
        name, eq, value = arg.lstrip("-").partition("=")
        flag = spec.get(name)
        if flag is None:
            out.unknown.append(arg)
            continue
        if not eq:
            if flag.boolean:
                value = "true"
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        out.values[name] = value
    missing = [f"--{f.name}" for f in spec.values() if f.required and not out.values.get(f.name)]
    if missing:
        raise FlagError("required flag(s) missing: " + ", ".join(missing))
    return out
