"""Safe defaults for every Prefect process capstan starts: offline, quiet, loopback only.

Set before Prefect is imported (its settings are read at import). A user's own settings win: only
unset variables are filled in.
"""

from __future__ import annotations

import logging
import os

DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_SERVER_API_HOST": "127.0.0.1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # The embedded server (`capstan create` without a server) gets 2 minutes to start, not Prefect's
    # 20 s: on a busy orchestrator the first start (database migrations) takes longer than that.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # The server learns of task runs only from events, and by default writes each event in its own
    # transaction: a 30-host create-cluster run (some 650 task-run events) then cost the server ~20
    # CPU-seconds and it fell behind by whole runs. In batches of up to 100, flushed every second
    # (whole seconds only: Prefect rounds the interval down), the same work is a fraction of that.
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


class _NoUserErrorTracebacks(logging.Filter):
    """A capstan user error (bad spec, unreachable host, failed command) is reported in one line;
    Prefect's engine logs it with a traceback, which on a terminal only hides the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        from capstan.errors import CapstanError

        if record.exc_info and isinstance(record.exc_info[1], CapstanError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_console_tracebacks() -> None:
    """Install the filter on the console handlers Prefect configured (call after importing prefect)."""
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(_NoUserErrorTracebacks())
