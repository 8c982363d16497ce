"""Live progress of a run: a rich Live line on a terminal, plain lines every 5 s otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

PLAIN_EVERY_S = 5.0


def format_stats(name: str, stats: Any) -> str:
    """One line: elapsed/remaining, frames/s, p95, errors, fallback share."""
    p95 = "-" if stats.p95_ms is None else f"{stats.p95_ms:.1f} ms"
    fallback = "-" if stats.fallback_share is None else f"{stats.fallback_share:.0%}"
    return (
        f"[{name}] {stats.elapsed:5.1f}s elapsed, {stats.remaining:5.1f}s left | "
        f"{stats.frames_per_s:7.0f} frames/s | p95 {p95} | errors {stats.errors} | "
        f"fallback {fallback}"
    )


class PlainProgress:
    """Prints a line at most every ``every_s`` seconds (CI logs, pipes)."""

    def __init__(self, name: str, stream: TextIO | None = None, every_s: float = PLAIN_EVERY_S):
        self.name = name
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = -1e9

    def __call__(self, stats: Any) -> None:
        """Called each second with the generator's LiveStats."""
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            print(format_stats(self.name, stats), file=self.stream, flush=True)


class LiveProgress:
    """A rich Live line refreshed on every update (each second)."""

    def __init__(self, name: str, live: Any) -> None:
        self.name = name
        self.live = live

    def __call__(self, stats: Any) -> None:
        """Called each second with the generator's LiveStats."""
        self.live.update(format_stats(self.name, stats))


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
