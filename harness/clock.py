"""RunClock: the one monotonic clock of a run; t=0 when the load starts, shared by every part."""

from __future__ import annotations

import asyncio
import time


class RunClock:
    """Seconds since ``start()`` on ``time.perf_counter``; load, collectors and timeline share it."""

    def __init__(self) -> None:
        self._t0: float | None = None

    def start(self) -> None:
        """Set t=0 to now."""
        self._t0 = time.perf_counter()

    def now(self) -> float:
        """Seconds since ``start()``; raises RuntimeError before it."""
        if self._t0 is None:
            raise RuntimeError("RunClock.now() called before start()")
        return time.perf_counter() - self._t0

    async def sleep_until(self, t: float) -> None:
        """Sleep until the clock reads ``t`` (returns at once when it already has)."""
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
