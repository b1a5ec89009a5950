"""Host-operation layer timings against a throwaway sshd on 127.0.0.1 (run as root).

    .venv/bin/python bench/ops_bench.py [--runs 50]

Measures what the flows pay per host: opening a connection, one command on the warm connection,
a full facts gather, pure planning of OS preparation, and 10 parallel commands sharing one
connection. Lab numbers (network namespaces, many hosts) come with the lab; this one needs only
openssh-server. Only loopback traffic; the sshd is started and stopped here, by PID.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from capstan.facts import FactsQuery, gather_facts
from capstan.ops import apply, osprep, osprep_query
from capstan.remote import fan_out
from capstan.remote.fabric import FabricTransport


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sshd(root: Path, port: int) -> subprocess.Popen[bytes]:
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile none\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")]
    proc = subprocess.Popen(sshd, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.02)
    proc.terminate()
    raise SystemExit("sshd did not start")


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _row(name: str, samples: list[float]) -> None:
    p95 = sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]
    print(f"{name:<44} {statistics.median(samples):8.1f} {p95:8.1f} {len(samples):5d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        print("needs root and /usr/sbin/sshd", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root, port = Path(tmp), _free_port()
        proc = _start_sshd(root, port)
        try:

            def transport() -> FabricTransport:
                return FabricTransport(
                    "127.0.0.1",
                    name="bench",
                    port=port,
                    key_filename=root / "client",
                    known_hosts=root / "kh",
                )

            print(f"{'measure (ms)':<44} {'median':>8} {'p95':>8} {'runs':>5}")

            def connect_and_run() -> None:
                t = transport()
                t.run(["true"])
                t.close()

            _row("new connection + 1 command", _time(connect_and_run, args.runs))
            warm = transport()
            warm.run(["true"])
            _row("1 command on the warm connection", _time(lambda: warm.run(["true"]), args.runs * 3))
            _row("put 64 KiB (atomic)", _time(lambda: warm.put(f"{tmp}/f", b"x" * 65536), args.runs))
            query = osprep_query() | FactsQuery()
            _row(
                "gather facts (osprep query + binaries)", _time(lambda: gather_facts(warm, query), args.runs)
            )
            facts = gather_facts(warm, query)
            _row("plan osprep (pure)", _time(lambda: osprep(facts, hostname="bench"), args.runs * 10))
            ops = osprep(facts, hostname="bench", runtime_sysctl_prefixes=("net.",))
            _row("apply osprep, dry run", _time(lambda: apply(warm, ops, dry_run=True), args.runs * 10))

            def parallel() -> None:
                fan_out(lambda i: warm.run(["true"]), list(range(10)), name=str)

            _row("10 parallel commands, one connection", _time(parallel, args.runs))
            warm.close()
            print("(every command pays the remote login shell's start-up: root's ~/.bashrc on this machine")
            print(
                " runs pyenv init, ~100 ms; lab hosts get a clean /root. Facts also run the binaries' version"
            )
            print(" commands.)")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
