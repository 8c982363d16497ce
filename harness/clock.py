"""One monotonic measurement clock shared by the load generator, collectors and timeline.

t = 0 is the moment the load starts; every ``t`` in results.json is on this clock.
"""

from __future__ import annotations

import asyncio
import time


class ClockNotStartedError(RuntimeError):
    """Raised when the clock is read before :meth:`RunClock.start`."""


class RunClock:
    """Seconds since the load started, from ``time.perf_counter`` (monotonic, high resolution)."""

    def __init__(self) -> None:
        self._t0: float | None = None

    def start(self) -> None:
        """Set t = 0 to now. Starting twice is an error: all parts must share one origin."""
        if self._t0 is not None:
            raise RuntimeError("RunClock already started")
        self._t0 = time.perf_counter()

    def start_at(self, perf_counter_value: float) -> None:
        """Set t = 0 to a given ``time.perf_counter`` value (a distributed load worker's
        conversion of the master's t0, taken once). Same rule as :meth:`start`: once only."""
        if self._t0 is not None:
            raise RuntimeError("RunClock already started")
        self._t0 = perf_counter_value

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called."""
        return self._t0 is not None

    @property
    def t0(self) -> float:
        """The perf_counter value at t = 0 (to convert raw perf_counter stamps)."""
        if self._t0 is None:
            raise ClockNotStartedError("RunClock not started")
        return self._t0

    def now(self) -> float:
        """Seconds since t = 0."""
        if self._t0 is None:
            raise ClockNotStartedError("RunClock not started")
        return time.perf_counter() - self._t0

    def to_clock(self, perf_counter_value: float) -> float:
        """Convert a raw ``time.perf_counter()`` stamp to this clock's seconds."""
        return perf_counter_value - self.t0

    async def sleep_until(self, t: float) -> None:
        """Sleep until the clock reads ``t`` (returns at once if already past).

        asyncio.sleep may wake a little early on some loops, so loop until really past.
        """
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)
