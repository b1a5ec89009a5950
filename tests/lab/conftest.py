"""Fixtures for tests that need real lab hosts.

``lab``: a lab shared by the tests of one module, always torn down. A module picks its topology with a
module-level ``LAB_HOSTS`` (a count, or (name, roles) pairs; default 3 hosts = cp1..cp3).
``lab_factory``: make extra labs inside a test; every one is torn down at the end of the test.
``capstan_home`` (autouse, per module): CAPSTAN_HOME is a temporary directory, so the admin kubeconfigs
the report phase writes and known_hosts files never land in the real ~/.capstan.
Tests marked ``@pytest.mark.lab`` are skipped, with the reason, when this machine cannot run a lab.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from capstan.lab import Lab


@functools.cache
def lab_unavailable() -> str | None:
    """Why lab tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, mounts, nft)"
    for tool in ("ip", "nft", "nsenter", "unshare", "ssh", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"lab tests need `{tool}`"
    try:
        res = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is unavailable: {exc}"
    if res.returncode != 0:
        return f"`ip netns` is unavailable: {res.stderr.decode().strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = lab_unavailable()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True, scope="module")
def capstan_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setenv("CAPSTAN_HOME", str(tmp_path_factory.mktemp("capstan-home")))
    yield
    patch.undo()


def _name(tag: str) -> str:
    return Lab.free_name(f"t{os.getpid()}{tag}")


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    hosts = getattr(request.module, "LAB_HOSTS", 3)
    the_lab = Lab.up(_name(""), hosts)
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    made: list[Lab] = []

    def make(hosts: Any = 1, **kwargs: Any) -> Lab:
        new = Lab.up(_name(f"x{len(made) + 1}"), hosts, **kwargs)
        made.append(new)
        return new

    try:
        yield make
    finally:
        for one in made:
            if Lab.existing().count(one.name):
                one.down()
