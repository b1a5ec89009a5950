"""Run one function per host in a bounded thread pool and keep every host's outcome.

Kubespray's worst habit is that one unreachable host stops a run; here every host is tried, each
outcome is kept (``Ok(value)`` or ``Err(exception)``) in host order, and the caller decides what a
failure means. ``raise_failures`` turns the failures into one ``HostsFailed`` error naming every
failed host, with ``retryable`` telling a Prefect retry condition whether trying again can help.

Context variables (Prefect's run context, log capture) are copied into each worker thread so
``fn`` behaves as if it ran in the caller's thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from capstan.errors import CapstanError, TransportError

__all__ = ["Err", "HostsFailed", "Ok", "Outcome", "fan_out", "raise_failures"]

H = TypeVar("H")
T = TypeVar("T")


@dataclass(frozen=True)
class Ok(Generic[T]):
    value: T

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Err:
    error: Exception

    @property
    def ok(self) -> bool:
        return False


Outcome = Ok[T] | Err


class HostsFailed(CapstanError):
    """Some hosts failed during a fan-out; ``errors`` maps each failed host to its exception."""

    def __init__(self, what: str, errors: Mapping[str, Exception], total: int) -> None:
        self.errors = dict(errors)
        details = "; ".join(str(e) if str(e).startswith(f"{h}:") else f"{h}: {e}" for h, e in errors.items())
        super().__init__(f"{what} failed on {len(errors)} of {total} hosts ({', '.join(errors)}): {details}")

    @property
    def retryable(self) -> bool:
        """True when every failure is a transport problem (a retry may succeed)."""
        return all(isinstance(e, TransportError) for e in self.errors.values())


def _default_name(item: object) -> str:
    for attr in ("host", "name"):
        value = getattr(item, attr, None)
        if isinstance(value, str):
            return value
    return str(item)


def fan_out(
    fn: Callable[[H], T],
    hosts: Sequence[H],
    *,
    limit: int = 20,
    name: Callable[[H], str] = _default_name,
) -> dict[str, Ok[T] | Err]:
    """Call ``fn(host)`` for every host, at most ``limit`` at once; never stop at a failure.

    Returns ``{name: Ok(value) | Err(exception)}`` in the order of ``hosts``. Only ``Exception``
    is caught: ``KeyboardInterrupt`` and friends still stop the caller.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    names = [name(h) for h in hosts]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise CapstanError(f"fan_out: duplicate host names {', '.join(dupes)}")
    if not hosts:
        return {}

    def one(host: H) -> Ok[T] | Err:
        try:
            return Ok(fn(host))
        except Exception as exc:
            return Err(exc)

    with ThreadPoolExecutor(max_workers=min(limit, len(hosts)), thread_name_prefix="capstan-fanout") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, h) for h in hosts]
        return {n: f.result() for n, f in zip(names, futures, strict=True)}


def raise_failures(results: Mapping[str, Ok[T] | Err], what: str = "operation") -> dict[str, T]:
    """Return every host's value, or raise ``HostsFailed`` naming each host that failed."""
    errors = {h: r.error for h, r in results.items() if isinstance(r, Err)}
    if errors:
        raise HostsFailed(what, errors, len(results))
    return {h: r.value for h, r in results.items() if isinstance(r, Ok)}
