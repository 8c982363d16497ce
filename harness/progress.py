"""Live progress of a run: a rich Live line on a terminal, plain lines every 5 s otherwise.

Besides the periodic line, ``event(text)`` prints a line of its own for what happens once: the
stack coming up, a timeline event sent, TorchServe READY again, a reload done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

PLAIN_EVERY_S = 5.0


def format_stats(name: str, stats: Any, use_torchserve: bool = True) -> str:
    """One line: elapsed/remaining, frames/s, p95, errors, local share.

    The local share is a *fallback* only when TorchServe is in the stack; without it every
    inference is local by design, and the line says so instead of "fallback 100%". A rate of
    None (no previous tick yet) prints "-", never a false 0.
    """
    p95 = "-" if stats.p95_ms is None else f"{stats.p95_ms:.1f} ms"
    rate = getattr(stats, "frames_per_s", None)
    fps = f"{'-':>7}" if rate is None else f"{rate:7.0f}"
    share = stats.fallback_share
    if use_torchserve:
        local = "fallback " + ("-" if share is None else f"{share:.0%}")
    else:
        local = "served locally (no TorchServe)"
    # A distributed load (workload.engine: locust) adds workers connected and their rates.
    workers = getattr(stats, "workers_line", None)
    return (
        f"[{name}] {stats.elapsed:5.1f}s elapsed, {stats.remaining:5.1f}s left | "
        f"{fps} frames/s | p95 {p95} | errors {stats.errors} | {local}"
        + (f" | {workers()}" if callable(workers) else "")
    )


class _Display:
    """Shared state: the run's name and whether TorchServe is in the stack."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.use_torchserve = True

    def set_stack(self, use_torchserve: bool) -> None:
        """Tell the display what the local share means for this run (see ``format_stats``)."""
        self.use_torchserve = use_torchserve

    def _event_line(self, text: str) -> str:
        return f"[{self.name}] {text}"


class PlainProgress(_Display):
    """Prints a line at most every ``every_s`` seconds (CI logs, pipes)."""

    def __init__(self, name: str, stream: TextIO | None = None, every_s: float = PLAIN_EVERY_S):
        super().__init__(name)
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = -1e9

    def __call__(self, stats: Any) -> None:
        """Called each second with the generator's LiveStats."""
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            print(format_stats(self.name, stats, self.use_torchserve), file=self.stream, flush=True)

    def event(self, text: str) -> None:
        """A line of its own for something that happened once."""
        print(self._event_line(text), file=self.stream, flush=True)


class LiveProgress(_Display):
    """A rich Live line refreshed on every update (each second); events print above it."""

    def __init__(self, name: str, live: Any) -> None:
        super().__init__(name)
        self.live = live

    def __call__(self, stats: Any) -> None:
        """Called each second with the generator's LiveStats."""
        self.live.update(format_stats(self.name, stats, self.use_torchserve))

    def event(self, text: str) -> None:
        """A line of its own, printed above the live line (which stays at the bottom)."""
        self.live.console.print(self._event_line(text), markup=False, highlight=False)


@contextmanager
def progress_display(name: str, stream: TextIO | None = None) -> Iterator[Any]:
    """Yields a progress callable suited to ``stream`` (stderr by default)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield PlainProgress(name, stream)
        return
    from rich.console import Console
    from rich.live import Live

    with Live("", console=Console(file=stream), refresh_per_second=2, transient=False) as live:
        yield LiveProgress(name, live)
