"""``FakeTransport``: a scripted, in-memory host for unit tests (our version of httpx's MockTransport).

Tests describe what a host answers (a table of command → result), keep an in-memory filesystem for
``put``/``get``, and afterwards assert on ``calls``/``commands``: which commands ran, in which
order, with which flags. It can also be told to fail like a real host does (``ConnectError``,
``TransportTimeout``) to prove that callers retry, report and carry on correctly.

Commands are matched on their text: ``shlex.join(argv)`` for word lists, the script itself for
scripts. A rule matches by exact text, by ``re.Pattern.search`` or by a predicate; the first rule
that matches (in the order they were added) answers.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from capstan.errors import CommandFailed, ConnectError, TransportError
from capstan.remote.base import Argv, Result, failed_argv

__all__ = ["FakeCall", "FakeFile", "FakeTransport", "UnscriptedCommand"]

Matcher = str | re.Pattern[str] | Callable[[str], bool]
Answer = Result | str | Callable[["FakeCall"], Result]


_SUCCESS = Result(0)


class UnscriptedCommand(AssertionError):
    """A command ran that no rule answers and the fake has no default: a test is incomplete."""


@dataclass(frozen=True)
class FakeCall:
    """One recorded call. ``command`` is the matched text (argv joined, or the script)."""

    kind: str  # "run", "put" or "get"
    command: str
    argv: Argv = ""
    sudo: bool = False
    env: Mapping[str, str] | None = None
    stdin: bytes | None = field(default=None, repr=False)
    timeout: float | None = None


@dataclass
class FakeFile:
    data: bytes
    mode: int = 0o644
    owner: str | None = None
    group: str | None = None


@dataclass
class _Rule:
    matcher: Matcher
    answer: Result | Callable[[FakeCall], Result]
    times: int | None

    def matches(self, text: str) -> bool:
        if isinstance(self.matcher, str):
            return self.matcher == text
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.search(text) is not None
        return self.matcher(text)


class FakeTransport:
    """A ``Transport`` whose answers are scripted by the test. Thread-safe, so fan-out tests work."""

    def __init__(
        self,
        host: str = "fake",
        *,
        files: Mapping[str, bytes] | None = None,
        default: Result | None = _SUCCESS,
    ) -> None:
        self._host = host
        self._rules: list[_Rule] = []
        self._failures: list[TransportError] = []
        self._down: TransportError | None = None
        self._lock = threading.Lock()
        self.default = default
        self.files: dict[str, FakeFile] = {p: FakeFile(d) for p, d in (files or {}).items()}
        self.calls: list[FakeCall] = []
        self.closed = False

    @property
    def host(self) -> str:
        return self._host

    # -- scripting -----------------------------------------------------------------------------

    def on(
        self,
        match: Matcher,
        answer: Answer = "",
        *,
        exit_code: int = 0,
        stderr: str = "",
        times: int | None = None,
    ) -> FakeTransport:
        """Answer commands matching ``match``; a ``str`` answer is stdout with ``exit_code``/``stderr``."""
        if isinstance(answer, str):
            answer = Result(exit_code, answer, stderr)
        with self._lock:
            self._rules.append(_Rule(match, answer, times))
        return self

    def fail_next(self, error: TransportError | None = None, *, times: int = 1) -> FakeTransport:
        """Make the next ``times`` calls raise ``error`` (default: ``ConnectError``-like refusal)."""
        exc = error or ConnectError(self._host, "connection refused (fake)")
        with self._lock:
            self._failures.extend([exc] * times)
        return self

    def go_down(self, error: TransportError | None = None) -> FakeTransport:
        """Every call raises ``error`` until ``come_back()``: a host that is off."""
        self._down = error or ConnectError(self._host, "no route to host (fake)")
        return self

    def come_back(self) -> FakeTransport:
        self._down = None
        return self

    @property
    def commands(self) -> list[str]:
        """The text of every ``run`` in order (puts and gets left out)."""
        return [c.command for c in self.calls if c.kind == "run"]

    # -- Transport API -------------------------------------------------------------------------

    def run(
        self,
        argv: Argv,
        *,
        sudo: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> Result:
        text = argv if isinstance(argv, str) else shlex.join(argv)
        call = FakeCall("run", text, argv, sudo, dict(env) if env else None, stdin, timeout)
        self._record(call)
        result = self._answer(call)
        if check and result.exit_code != 0:
            raise CommandFailed(self._host, failed_argv(argv), result.exit_code, result.stderr)
        return result

    def put(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
        sudo: bool = False,
    ) -> None:
        self._record(FakeCall("put", path, sudo=sudo, stdin=data))
        with self._lock:
            self.files[path] = FakeFile(bytes(data), mode, owner, group)

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        self._record(FakeCall("get", path, sudo=sudo))
        with self._lock:
            found = self.files.get(path)
        if found is None:
            raise CommandFailed(self._host, ["cat", "--", path], 1, f"cat: {path}: No such file or directory")
        return found.data

    def close(self) -> None:
        self.closed = True

    # -- internals -----------------------------------------------------------------------------

    def _record(self, call: FakeCall) -> None:
        with self._lock:
            self.calls.append(call)
            if self._down is not None:
                raise self._down
            if self._failures:
                raise self._failures.pop(0)

    def _answer(self, call: FakeCall) -> Result:
        with self._lock:
            for rule in self._rules:
                if rule.times == 0 or not rule.matches(call.command):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                answer = rule.answer
                break
            else:
                if self.default is None:
                    raise UnscriptedCommand(f"{self._host}: no rule answers {call.command!r}")
                return self.default
        return answer(call) if callable(answer) else answer
