"""Suite-wide set-up shared by every test folder."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import structlog

# A suite started in the background (``make test &`` in a script, a CI step without job control)
# inherits SIGINT ignored, and every harness subprocess would inherit it too: the Ctrl-C tests
# would then interrupt a process that cannot be interrupted. Children of a Python handler get the
# default disposition at exec, i.e. what a terminal's Ctrl-C meets.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Whatever a test configures structlog to (an in-process backend calls configure_logging
    with its LOG_LEVEL, e.g. "warning"), the next test starts from the configuration before it:
    structlog's level filter sits before the processors that ``capture_logs`` swaps, so a
    leaked "warning" level hid every info event from a later test's capture."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
