"""Lab benchmark: wall time of `up` and `down` for 20 hosts, and idle memory per host.

Targets (printed, never asserted): up <= 15 s, down <= 5 s, idle host <= 40 MB PSS. Memory is the
PSS of every process of a host (its PID namespace plus the unshare holding it), from
/proc/<pid>/smaps_rollup, measured after the hosts have idled for a few seconds. Run as root:
``.venv/bin/python bench/lab_bench.py [--hosts 20]``. The mirror is built (or taken from its cache)
before the timed `up`, so the figure is the hosts' bring-up; the first build time is printed apart.
"""

from __future__ import annotations

import argparse
import statistics
import time

from capstan.lab import Lab
from capstan.lab.artifacts import default_entries
from capstan.lab.mirror import cached_mirror
from capstan.lab.state import lab_root


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to idle before measuring memory")
    args = parser.parse_args()

    t0 = time.monotonic()
    cached_mirror(lab_root() / ".mirror-cache", default_entries())
    print(f"mirror build or cache hit: {time.monotonic() - t0:.2f} s")

    name = Lab.free_name("bench")
    t0 = time.monotonic()
    lab = Lab.up(name, args.hosts)
    up = time.monotonic() - t0
    try:
        print(f"up   {args.hosts} hosts: {up:.2f} s (target <= 15 s)")
        time.sleep(args.idle)  # let every host settle to idle before measuring (a benchmark, not a test)
        per_host = [sum(pss_kb(p) for p in lab.pids(h)) / 1024 for h in lab.hosts]
        print(
            f"idle memory per host (PSS): mean {statistics.mean(per_host):.1f} MB, "
            f"max {max(per_host):.1f} MB, total {sum(per_host):.0f} MB (target <= 40 MB per host)"
        )
    finally:
        t0 = time.monotonic()
        lab.down()
        print(f"down {args.hosts} hosts: {time.monotonic() - t0:.2f} s (target <= 5 s)")


if __name__ == "__main__":
    main()
