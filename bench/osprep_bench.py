"""OS preparation on lab hosts: first converge and converged re-run, on 3 and on 20 hosts (run as root).

    .venv/bin/python bench/osprep_bench.py [--sizes 3 20]

Prints wall time, mean per-host time, SSH round trips per host and the orchestrator's peak memory. A
round trip is one command or one file put on a host's (reused) connection. No asserts: figures only.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from capstan.facts import gather_facts
from capstan.lab import Lab
from capstan.ops import apply, osprep, osprep_query
from capstan.remote import Ok, fan_out
from capstan.remote.base import Result
from capstan.remote.fabric import FabricTransport


class Counting:
    """A transport wrapper that counts round trips (commands and puts)."""

    def __init__(self, inner: FabricTransport) -> None:
        self.inner = inner
        self.trips = 0
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return self.inner.host

    def _count(self) -> None:
        with self._lock:
            self.trips += 1

    def run(self, argv: Sequence[str] | str, **kw: Any) -> Result:
        self._count()
        return self.inner.run(argv, **kw)

    def put(self, path: str, data: bytes, **kw: Any) -> None:
        self._count()
        self.inner.put(path, data, **kw)

    def get(self, path: str, **kw: Any) -> bytes:
        self._count()
        return self.inner.get(path, **kw)

    def close(self) -> None:
        self.inner.close()


def converge(t: Counting) -> tuple[int, float]:
    started = time.monotonic()
    facts = gather_facts(t, osprep_query())
    result = apply(t, osprep(facts, hostname=t.host, runtime_sysctl_prefixes=("net.",)))
    return result.changed_count, time.monotonic() - started


def run_round(ts: Mapping[str, Counting]) -> tuple[float, float, float, int]:
    for t in ts.values():
        t.trips = 0
    started = time.monotonic()
    results = fan_out(lambda h: converge(ts[h]), list(ts))
    wall = time.monotonic() - started
    ok = [r.value for r in results.values() if isinstance(r, Ok)]
    if len(ok) != len(ts):
        raise SystemExit(f"failures: { {h: r for h, r in results.items() if not isinstance(r, Ok)} }")
    per_host = sum(s for _, s in ok) / len(ok)
    trips = sum(t.trips for t in ts.values()) / len(ts)
    return wall, per_host, trips, sum(c for c, _ in ok)


def bench(size: int) -> None:
    lab = Lab.up(Lab.free_name(f"bo{os.getpid() % 1000}"), size)
    try:
        ts = {
            h: Counting(
                FabricTransport(
                    lab.ip(h), name=h, known_hosts=lab.known_hosts_path, key_filename=lab.key_path
                )
            )
            for h in lab.hosts
        }
        for label in ("first run", "re-run"):
            wall, per_host, trips, changed = run_round(ts)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row = [str(size), label, f"{wall:.2f} s", f"{per_host:.2f} s", f"{trips:.1f}", str(changed)]
            print("| " + " | ".join([*row, f"{peak:.0f} MB"]) + " |", flush=True)
        for t in ts.values():
            t.close()
    finally:
        lab.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 20])
    args = parser.parse_args()
    print("| hosts | run | wall | per host | round trips/host | ops changed | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        bench(size)


if __name__ == "__main__":
    main()
