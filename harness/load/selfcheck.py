"""Self-check: is the generator's own measurement trustworthy?

A run is INVALID (neither passed nor failed) when its latency figures cannot be trusted:

- ``FELL_BEHIND``: more than ``MAX_LATE_SHARE`` of frames sent over the late threshold;
- ``CPU_SATURATED``: the generator's process CPU saturated (>= ``CPU_SATURATED_PERCENT`` of one
  core over the sending period) - a saturated generator's latencies include its own queueing;
- ``SUT_STOPPED_READING``: the system under test stopped reading (frames could not be sent
  because its socket buffers were full) or went silent (no reply to anything sent over more than
  ``reply_timeout_s``): the generator kept its schedule, but the frames it could not send or
  never saw answered have no latency, so the percentiles would leave the worst out;
- ``OVER_RANGE``: replies slower than the run's latency limit (``reply_timeout_s``), which the
  histograms do not hold (never folded into the top bucket): raise ``reply_timeout_s``.

The first two blame this machine; the last two the system under test or the run's limits.
"""

from __future__ import annotations

import time

import psutil

MAX_LATE_SHARE = 0.01
CPU_SATURATED_PERCENT = 95.0
# How each INVALID reason starts, for code that tells them apart (CLI hints, CI retries).
FELL_BEHIND = "generator fell behind"
CPU_SATURATED = "generator CPU saturated"
SUT_STOPPED_READING = "system under test stopped reading"
OVER_RANGE = "latency above the run's limit"


class CpuMeter:
    """CPU use of this process between ``start()`` and ``stop()``, percent of one core."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.percent: float | None = None

    def _cpu(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def start(self) -> None:
        """Take the reference point."""
        self._cpu0 = self._cpu()
        self._wall0 = time.perf_counter()

    def stop(self) -> float:
        """CPU percent of one core since ``start()`` (also kept in ``percent``)."""
        wall = time.perf_counter() - self._wall0
        self.percent = 100.0 * (self._cpu() - self._cpu0) / wall if wall > 0 else 0.0
        return self.percent

    def current(self) -> float:
        """CPU percent since ``start()`` without stopping (for the live display)."""
        wall = time.perf_counter() - self._wall0
        return 100.0 * (self._cpu() - self._cpu0) / wall if wall > 0 else 0.0


def invalid_reasons(
    late_share: float,
    late_threshold_ms: float,
    cpu_percent: float,
    frames_considered: int,
) -> list[str]:
    """The reasons the run is INVALID (empty list: the generator kept up)."""
    reasons: list[str] = []
    if frames_considered and late_share > MAX_LATE_SHARE:
        reasons.append(
            f"{FELL_BEHIND}: {late_share:.1%} of frames sent > {late_threshold_ms:g} ms"
            f" late (limit {MAX_LATE_SHARE:.0%})"
        )
    if cpu_percent >= CPU_SATURATED_PERCENT:
        reasons.append(
            f"{CPU_SATURATED}: {cpu_percent:.0f}% of one core (limit {CPU_SATURATED_PERCENT:.0f}%)"
        )
    return reasons


def sut_stopped_reason(
    unsent: int, unanswered: int, silent_from_s: float | None, reply_timeout_s: float
) -> str | None:
    """The ``SUT_STOPPED_READING`` reason, or None when the system under test kept reading.

    ``unsent``: frames not sent because its send buffer was full; ``unanswered``: frames sent
    after its last reply and never answered; ``silent_from_s``: the run-clock time of its last
    reply (of the first frame sent, when it never answered), None when it did not go silent for
    more than ``reply_timeout_s``.
    """
    if not unsent and silent_from_s is None:
        return None
    since = "" if silent_from_s is None else f" after t={silent_from_s:.1f} s"
    return (
        f"{SUT_STOPPED_READING}: no reply{since}; {unsent} frames could not be sent (its "
        f"socket buffers were full) and {unanswered} sent frames got no reply within "
        f"reply_timeout_s {reply_timeout_s:g} s - the generator kept its schedule"
    )


def over_range_reason(count: int, max_ms: float | None, limit_ms: float) -> str | None:
    """The ``OVER_RANGE`` reason for ``count`` replies above the limit, else None."""
    if not count:
        return None
    slowest = "" if max_ms is None else f", the slowest {max_ms:,.0f} ms"
    return (
        f"{OVER_RANGE}: {count} replies took longer than reply_timeout_s ({limit_ms:,.0f} ms)"
        f"{slowest}; the latency figures leave them out - raise workload.reply_timeout_s"
    )
