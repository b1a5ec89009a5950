"""Suite-wide fixtures.

``prefect_api``: one temporary Prefect server (SQLite, loopback) for every test that runs a flow,
started once per session. The flow-run heartbeat is switched off: it adds a fixed second to each flow
run and only serves zombie detection, which tests do not need.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from capstan.prefect_env import apply_defaults

apply_defaults()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=300),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
