"""Where a flow's ``spec`` parameter points: a cluster.yaml file or a ``ClusterSpec`` block.

Every lifecycle flow takes one string, ``spec``, so a person in the UI, a schedule and another system
calling the REST API all say the same thing:

- ``block:<name>``: the ``capstan-cluster-spec`` block ``<name>`` (its credentials block supplies the
  SSH key, in memory only);
- otherwise a path to cluster.yaml on the machine running the flow (the worker); a relative path is
  relative to the flow run's working directory, which for a process worker is a temporary directory,
  so deployments should use absolute paths or blocks;
- a bare name that is not an existing file and looks like a block name (lower-case letters, digits,
  dashes) is tried as a block, so ``spec=prod`` works; an existing file always wins, and ``block:``
  removes the doubt.

The private key never leaves this process: it is returned to the flow body, which hands it to the
session; it is not a parameter, a result or a log argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from capstan.errors import SpecError
from capstan.spec import load_spec
from capstan.spec.models import Cluster
from capstan.tasks.session import PrivateKey

BLOCK_PREFIX = "block:"
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class SpecSource:
    """A resolved ``spec`` parameter: the cluster, where it came from, and the key if a block had one."""

    cluster: Cluster
    origin: str
    private_key: PrivateKey | None = field(default=None, repr=False)


def resolve_spec(spec: str) -> SpecSource:
    """Resolve a flow's ``spec`` parameter (see the module docstring); errors are ``SpecError``."""
    text = spec.strip()
    if not text:
        raise SpecError("spec", "empty: give a cluster.yaml path or block:<name>")
    if text.startswith(BLOCK_PREFIX):
        return load_block(text[len(BLOCK_PREFIX) :].strip())
    path = Path(text).expanduser()
    if path.exists() or not _BLOCK_NAME.match(text):
        return SpecSource(load_spec(path), origin=f"file {path}")
    try:
        return load_block(text)
    except SpecBlockNotFound:
        raise SpecError("spec", f"{text!r} is neither a file nor a capstan-cluster-spec block") from None


class SpecBlockNotFound(SpecError):
    """No ``capstan-cluster-spec`` block has that name."""


def load_block(name: str) -> SpecSource:
    """Load the ``ClusterSpec`` block ``name`` (validating it) and take the key from its credentials."""
    from capstan.blocks import ClusterSpec

    if not _BLOCK_NAME.match(name):
        raise SpecError("spec", f"block name {name!r}: use lower-case letters, digits and dashes")
    where = f"block capstan-cluster-spec/{name}"
    try:
        block = cast(ClusterSpec, ClusterSpec.load(name))  # sync call: a block, not a coroutine
    except SpecError as exc:
        raise SpecError(exc.path, f"{exc.message} (in {where})") from None
    except ValueError as exc:  # Prefect: "Unable to find block document named ..."
        if "Unable to find" in str(exc):
            raise SpecBlockNotFound("spec", f"{where}: no such block") from None
        raise SpecError("spec", f"{where}: cannot load: {exc}") from None
    creds = block.credentials
    key = None
    if creds is not None:
        passphrase = creds.passphrase.get_secret_value() if creds.passphrase is not None else None
        key = PrivateKey(creds.private_key.get_secret_value(), passphrase)
    return SpecSource(block.cluster(), origin=where, private_key=key)
