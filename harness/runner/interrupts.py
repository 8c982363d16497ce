"""Termination signals handled like Ctrl-C, and the exit code that says which one came.

``timeout``, CI cancellation, ``docker stop`` and systemd send SIGTERM; a closed terminal sends
SIGHUP. Inside :class:`TerminationSignals` both take the exact path of a Ctrl-C: whatever
handles SIGINT at that moment runs (asyncio's, which cancels the measurement so partial results
are kept; Python's default, which raises KeyboardInterrupt; the stack's teardown deferral,
which holds it until every process is stopped). The exit code is the shell convention
128 + signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from harness.exitcodes import ExitCode

HANDLED = (signal.SIGTERM, signal.SIGHUP)

_active: TerminationSignals | None = None


class TerminationSignals:
    """Context manager: SIGTERM and SIGHUP act as Ctrl-C while inside; remembers the first
    interrupting signal (``signum``; None when none came or it was a plain Ctrl-C).

    A signal the process inherited as ignored stays ignored (``nohup`` ignores SIGHUP).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> TerminationSignals:
        global _active
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                # An inherited "ignore" is the caller's decision (``nohup harness run ...``
                # ignores SIGHUP so a closed terminal does not stop the run): keep it.
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handler)
        _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        _active = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored (a background job): interrupt anyway, we were asked to stop
            raise KeyboardInterrupt

    @property
    def name(self) -> str:
        """The interrupting signal's name (SIGINT for Ctrl-C)."""
        return signal.Signals(self.signum or signal.SIGINT).name

    def exit_code(self) -> ExitCode:
        """128 + the interrupting signal's number (130 for Ctrl-C)."""
        return ExitCode.for_signal(self.signum or signal.SIGINT)


def interrupt_name() -> str:
    """The signal that interrupted the current run (SIGINT when none is known)."""
    return _active.name if _active is not None else signal.SIGINT.name
