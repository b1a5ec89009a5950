"""``capstan lab ...``: the lab's command line, a thin shell over :class:`capstan.lab.Lab`.

Every command that acts on one lab takes ``--name``; when it is left out and exactly one lab exists,
that one is meant. A ``CapstanError`` becomes one line on stderr and exit code 2, like the rest of the
capstan CLI; ``ssh`` exits with ssh's own code.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from capstan.errors import CapstanError, LabError
from capstan.lab.lab import Lab

app = typer.Typer(
    help="Local multi-host lab: network namespaces that look like machines.", no_args_is_help=True
)

P = ParamSpec("P")
R = TypeVar("R")
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="lab name (default: the only lab)")]


def _errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CapstanError as exc:
            typer.echo(f"capstan: error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _lab(name: str | None) -> Lab:
    if name is not None:
        return Lab.attach(name)
    labs = Lab.existing()
    if len(labs) == 1:
        return Lab.attach(labs[0])
    if not labs:
        raise LabError("no lab is up (capstan lab up)")
    raise LabError(f"several labs are up ({', '.join(labs)}): pass --name")


@app.command()
@_errors
def up(
    hosts: Annotated[
        int | None, typer.Option("--hosts", help="number of hosts (first 3 are control planes)")
    ] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="lab name")] = "lab",
    workers: Annotated[
        int | None, typer.Option("--workers", help="how many of the hosts are workers")
    ] = None,
) -> None:
    """Bring a lab up and print the path of its cluster.yaml."""
    lab = Lab.up(name, hosts, workers=workers)
    typer.echo(str(lab.spec_path))


@app.command()
@_errors
def down(name: NameOpt = None) -> None:
    """Tear a lab down completely (processes, namespaces, links, nft table, mounts, state)."""
    if name is None:
        name = _lab(None).name
    Lab.destroy(name)


@app.command()
@_errors
def status(name: NameOpt = None) -> None:
    """List hosts with IP, state (up/down/crashed), sshd reachability and injected faults."""
    labs = [name] if name else Lab.existing()
    if not labs:
        typer.echo("no labs")
        return
    for lab_name in labs:
        lab = Lab.attach(lab_name)
        typer.echo(f"lab {lab.name}: {lab.state.bridge} 10.250.{lab.state.octet}.0/24 spec {lab.spec_path}")
        for s in lab.status():
            faults = [f for f in ("cut" if s.cut else "", f"loss {s.loss}%" if s.loss else "") if f]
            faults += [f"partitioned from {p}" for p in s.partitions]
            sshd = "sshd ok" if s.sshd else "sshd unreachable"
            extra = f"  ({', '.join(faults)})" if faults else ""
            typer.echo(f"  {s.name:<8} {s.ip:<15} {s.state:<8} {sshd}{extra}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_errors
def ssh(
    host: Annotated[str, typer.Argument(help="host name")],
    cmd: Annotated[list[str] | None, typer.Argument(help="command to run (default: a login shell)")] = None,
    name: NameOpt = None,
) -> None:
    """Log into a host (or run a command) with the lab's key and known_hosts."""
    lab = _lab(name)
    argv = lab.ssh_argv(host, cmd or [])
    if not cmd and sys.stdin.isatty():
        argv.insert(1, "-t")
    raise typer.Exit(subprocess.call(argv))


@app.command()
@_errors
def crash(host: str, name: NameOpt = None) -> None:
    """Power-cut a host: kill its PID 1; its disk (upper layer) is kept."""
    _lab(name).crash(host)


@app.command()
@_errors
def boot(host: str, name: NameOpt = None) -> None:
    """Boot a crashed host again and wait for its sshd."""
    _lab(name).boot(host)


@app.command()
@_errors
def cut(host: str, name: NameOpt = None) -> None:
    """Take a host's link down (as if its cable were pulled)."""
    _lab(name).cut(host)


@app.command()
@_errors
def heal(host: str, name: NameOpt = None) -> None:
    """Undo every network fault of a host: link, partitions, loss."""
    _lab(name).heal(host)


@app.command()
@_errors
def partition(a: str, b: str, name: NameOpt = None) -> None:
    """Drop all traffic between hosts A and B."""
    _lab(name).partition(a, b)


@app.command()
@_errors
def loss(host: str, percent: int, name: NameOpt = None) -> None:
    """Drop PERCENT% of a host's packets at random, both directions (0 removes it)."""
    _lab(name).loss(host, percent)
