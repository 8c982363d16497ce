"""Collector protocol and CollectorSet: every collector sampled once per second on the RunClock.

Sample k is taken at t = (k + 1) * interval and covers the window [k * interval,
(k + 1) * interval): each collector's series entry ``t`` is the WINDOW START, the same key as
the load generator's per-second windows. A baseline sample at t = 0 is taken first (counter
deltas and CPU need a previous point) and is not a window. A failed sample records None and a
counted error; it never stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol, runtime_checkable

from harness.clock import RunClock

log = logging.getLogger(__name__)


@runtime_checkable
class Collector(Protocol):
    """A 1-s sampler. ``sample`` appends one window (t = window start) to its series."""

    name: str

    async def baseline(self) -> None:
        """Take the reference point (before the first window)."""

    async def sample(self, t: float, dt: float) -> None:
        """Record the window starting at ``t`` and lasting ``dt`` seconds (real elapsed)."""

    def series(self) -> dict[str, Any]:
        """``{"t": [...], <metric>: [...], ...}`` plus scalar fields such as ``errors``."""

    async def close(self) -> None:
        """Release resources (HTTP sessions, NVML)."""


class CollectorSet:
    """Samples every added collector each ``interval_s`` until ``stop`` is set."""

    def __init__(self, clock: RunClock, interval_s: float = 1.0) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self._collectors: list[Collector] = []

    def add(self, collector: Collector) -> None:
        """Add a collector (before ``run``); names must be unique."""
        if any(c.name == collector.name for c in self._collectors):
            raise ValueError(f"duplicate collector name {collector.name!r}")
        self._collectors.append(collector)

    @property
    def collectors(self) -> list[Collector]:
        """The collectors, in order added."""
        return list(self._collectors)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample on window boundaries of the clock until ``stop`` is set, then close all.

        The clock must be started (the runner starts it with the load). After ``stop`` one
        last partial window is sampled so the tail of the run is covered.
        """
        try:
            await self._all("baseline")
            t_prev = self.clock.now()
            k = int(t_prev // self.interval_s)
            while not stop.is_set():
                t_next = (k + 1) * self.interval_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(t_next - self.clock.now(), 0.0))
                now = self.clock.now()
                await self._all("sample", k * self.interval_s, now - t_prev)
                t_prev = now
                k += 1
        finally:
            for c in self._collectors:
                try:
                    await c.close()
                except Exception:  # closing must not mask the run's own error
                    log.exception("closing collector %s failed", c.name)

    async def _all(self, method: str, *args: float) -> None:
        async def one(c: Collector) -> None:
            try:
                await getattr(c, method)(*args)
            except Exception:
                # A collector bug records nothing for this window; the run goes on.
                log.exception("collector %s.%s failed", c.name, method)

        await asyncio.gather(*(one(c) for c in self._collectors))

    def series(self) -> dict[str, dict[str, Any]]:
        """Collector name -> its series (see each collector for the keys)."""
        return {c.name: c.series() for c in self._collectors}
