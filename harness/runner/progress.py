"""Progress of a run as typed events, and the CLI's displays of them.

The library never prints: :func:`harness.run` hands each :data:`ProgressEvent` to its
``on_progress`` callback (and, without one, sends the messages to the ``harness`` logger).

- :class:`Tick` each second of load: the generator's :class:`LiveStats`;
- :class:`Message` for what happens once: the stack coming up, a timeline event sent,
  TorchServe READY again, a reload done, the report written;
- :class:`RunStarting` before a run's stack starts (says whether TorchServe is in it);
- :class:`RunFinished` when a run's results are written (its outcome, e.g. the baseline's).

Each event names its ``run`` (the scenario's name; ``baseline:<name>`` for a baseline run).
The displays: a rich Live line on a terminal, plain lines every 5 s otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from harness.load.generator import LiveStats
    from harness.runner.outcome import RunOutcome

PLAIN_EVERY_S = 5.0

logger = logging.getLogger("harness")


@dataclass(frozen=True)
class Tick:
    """One second of load: the generator's live figures."""

    run: str
    stats: LiveStats


@dataclass(frozen=True)
class Message:
    """Something that happened once (``level``: a :mod:`logging` level)."""

    run: str
    text: str
    level: int = logging.INFO


@dataclass(frozen=True)
class RunStarting:
    """A run is about to start its stack (``use_torchserve``: what the local share means)."""

    run: str
    use_torchserve: bool


@dataclass(frozen=True)
class RunFinished:
    """A run's results are written (``outcome``: its :class:`harness.RunOutcome`)."""

    run: str
    outcome: RunOutcome


ProgressEvent = Tick | Message | RunStarting | RunFinished
ProgressCallback = Callable[[ProgressEvent], None]


class Emitter:
    """Sends one run's events to ``on_progress``; without one, its messages go to logging."""

    def __init__(self, run: str, on_progress: ProgressCallback | None) -> None:
        self.run = run
        self.on_progress = on_progress

    def say(self, text: str, level: int = logging.INFO) -> None:
        """A :class:`Message` (or a log record when nobody listens)."""
        if self.on_progress is None:
            logger.log(level, "%s", text)
        else:
            self.on_progress(Message(self.run, text, level))

    def emit(self, event: ProgressEvent) -> None:
        """Any other event (dropped when nobody listens)."""
        if self.on_progress is not None:
            self.on_progress(event)


def format_stats(name: str, stats: LiveStats, use_torchserve: bool = True) -> str:
    """One line: elapsed/remaining, frames/s, p95, errors, fallback share.

    The fallback share is the TorchServe cohort's classifications answered locally in the last
    second (``LiveStats.fallback_share``): the old-pipeline cohort of a canary is never counted
    as one. Without TorchServe in the stack every inference is local by design, and the line
    says so. A rate of None (no previous tick yet) prints "-", never a false 0.
    """
    p95 = "-" if stats.p95_ms is None else f"{stats.p95_ms:.1f} ms"
    rate = stats.frames_per_s
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
    """A progress callback: keeps, per run, whether TorchServe is in the stack.

    ``on_finished`` is called with each :class:`RunFinished` (the CLI prints the baseline's
    outcome there).
    """

    def __init__(self, on_finished: Callable[[RunFinished], None] | None = None) -> None:
        self.use_torchserve: dict[str, bool] = {}
        self.on_finished = on_finished

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, Tick):
            self.tick(event.run, event.stats)
        elif isinstance(event, Message):
            self.line(f"[{event.run}] {event.text}")
        elif isinstance(event, RunStarting):
            self.use_torchserve[event.run] = event.use_torchserve
        elif self.on_finished is not None:
            self.on_finished(event)

    def _format(self, run: str, stats: LiveStats) -> str:
        return format_stats(run, stats, self.use_torchserve.get(run, True))

    def tick(self, run: str, stats: LiveStats) -> None:
        raise NotImplementedError  # pragma: no cover - each display defines it

    def line(self, text: str) -> None:
        raise NotImplementedError  # pragma: no cover - each display defines it


class PlainProgress(_Display):
    """Prints a live line at most every ``every_s`` seconds (CI logs, pipes); messages always."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = PLAIN_EVERY_S,
        on_finished: Callable[[RunFinished], None] | None = None,
    ) -> None:
        super().__init__(on_finished)
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = -1e9

    def tick(self, run: str, stats: LiveStats) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.line(self._format(run, stats))

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class LiveProgress(_Display):
    """A rich Live line refreshed on every tick (each second); messages print above it."""

    def __init__(self, live: Any, on_finished: Callable[[RunFinished], None] | None = None) -> None:
        super().__init__(on_finished)
        self.live = live

    def tick(self, run: str, stats: LiveStats) -> None:
        self.live.update(self._format(run, stats))

    def line(self, text: str) -> None:
        self.live.console.print(text, markup=False, highlight=False)


@contextmanager
def progress_display(
    stream: TextIO | None = None, on_finished: Callable[[RunFinished], None] | None = None
) -> Iterator[_Display]:
    """Yields a progress callback suited to ``stream`` (stderr by default)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield PlainProgress(stream, on_finished=on_finished)
        return
    from rich.console import Console
    from rich.live import Live

    with Live("", console=Console(file=stream), refresh_per_second=2, transient=False) as live:
        yield LiveProgress(live, on_finished)
