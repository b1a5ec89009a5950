"""One exception tree for everything capstan reports to a user.

The CLI turns any ``CapstanError`` into a single line on stderr and exit code 2, so every error
raised for bad input must carry a message that stands on its own: it names the field, file or host.
Anything that is not a ``CapstanError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class CapstanError(Exception):
    """Base of every error capstan raises on purpose."""


class SpecError(CapstanError):
    """The cluster spec (or an imported inventory) is invalid; ``path`` names the YAML location."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, str]]:
        return (type(self), (self.path, self.message))


class PKIError(CapstanError):
    """Certificate material is missing, inconsistent or cannot be loaded."""


class RenderError(CapstanError):
    """A template could not be rendered (a missing variable is a bug in capstan, reported clearly)."""


class ArtifactError(CapstanError):
    """An artifact has no known checksum, or its checksum does not match."""


class PlanError(CapstanError):
    """The plan cannot be built from this spec and these facts."""


class TransportError(CapstanError):
    """Talking to a host failed below the command level (connect, channel, timeout). Retryable."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}")

    def __reduce__(self) -> tuple[type[TransportError], tuple[str, str]]:
        # Exceptions cross process boundaries in Prefect states; rebuild from our own arguments.
        return (type(self), (self.host, self.message))


class ConnectError(TransportError):
    """The host could not be reached or refused the SSH session."""


class TransportTimeout(TransportError):
    """The host stopped answering within the configured timeout."""


class HostKeyError(CapstanError):
    """A host presented a key that differs from the one recorded for it. Never retried."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}")

    def __reduce__(self) -> tuple[type[HostKeyError], tuple[str, str]]:
        return (type(self), (self.host, self.message))


class CommandFailed(CapstanError):
    """A command ran and exited non-zero. Not retryable: running it again will fail again."""

    def __init__(self, host: str, argv: list[str] | str, exit_code: int, stderr: str = "") -> None:
        self.host = host
        self.argv = argv
        self.exit_code = exit_code
        self.stderr = stderr
        cmd = argv if isinstance(argv, str) else " ".join(argv)
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:])
        msg = f"{host}: `{cmd}` exited {exit_code}"
        super().__init__(f"{msg}: {tail}" if tail else msg)

    def __reduce__(self) -> tuple[type[CommandFailed], tuple[str, list[str] | str, int, str]]:
        return (type(self), (self.host, self.argv, self.exit_code, self.stderr))


class PhaseFailed(CapstanError):
    """A phase failed on one or more hosts; the message names each host and its error."""


class LabError(CapstanError):
    """The local lab could not be brought up, torn down or changed."""
