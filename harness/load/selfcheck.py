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

from harness.results.model import InvalidKind, InvalidReason

MAX_LATE_SHARE = 0.01
CPU_SATURATED_PERCENT = 95.0
# The kinds of INVALID reason this module gives (InvalidReason.kind: CLI hints, CI retries).
FELL_BEHIND = InvalidKind.FELL_BEHIND
CPU_SATURATED = InvalidKind.CPU_SATURATED
SUT_STOPPED_READING = InvalidKind.SUT_STOPPED_READING
OVER_RANGE = InvalidKind.OVER_RANGE

# Appended to the generator's own hints: where to go when one machine is not enough.
MORE_LOAD = (
    ". To spread the load over several processes or machines, use workload.engine: locust "
    "(README, section 'More load than one machine')"
)
# What to do about each (the fell-behind one is made specific to the stack by the runner).
HINTS: dict[InvalidKind, str] = {
    FELL_BEHIND: (
        "this machine was too busy for the generator to keep its schedule; rerun on a quieter "
        "or bigger machine, or drive the stack from another host (driver: external). "
        "workload.late_threshold_ms loosens the check, at the cost of latency figures that may "
        "include the generator's own delay" + MORE_LOAD
    ),
    CPU_SATURATED: (
        "one generator process tops out near 7,500 frames/s on one core "
        "(benchmarks/generator_ceiling.py); offer fewer sessions per run, or run the harness on "
        "another host against driver: external" + MORE_LOAD
    ),
    SUT_STOPPED_READING: (
        "the system under test stopped reading its WebSocket connections (paused, deadlocked "
        "or overloaded): see its logs in the run's logs/ folder; this machine kept the schedule"
    ),
    OVER_RANGE: (
        "replies slower than workload.reply_timeout_s are outside the latency histograms; "
        "raise reply_timeout_s above the slowest reply to measure them"
    ),
}


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
) -> list[InvalidReason]:
    """The reasons the run is INVALID (empty list: the generator kept up)."""
    reasons: list[InvalidReason] = []
    if frames_considered and late_share > MAX_LATE_SHARE:
        reasons.append(
            InvalidReason(
                kind=FELL_BEHIND,
                message=f"generator fell behind: {late_share:.1%} of frames sent > "
                f"{late_threshold_ms:g} ms late (limit {MAX_LATE_SHARE:.0%})",
                measured=late_share,
                limit=MAX_LATE_SHARE,
                unit="share",
                hint=HINTS[FELL_BEHIND],
            )
        )
    if cpu_percent >= CPU_SATURATED_PERCENT:
        reasons.append(
            InvalidReason(
                kind=CPU_SATURATED,
                message=f"generator CPU saturated: {cpu_percent:.0f}% of one core (limit "
                f"{CPU_SATURATED_PERCENT:.0f}%)",
                measured=cpu_percent,
                limit=CPU_SATURATED_PERCENT,
                unit="%",
                hint=HINTS[CPU_SATURATED],
            )
        )
    return reasons


def sut_stopped_reason(
    unsent: int, unanswered: int, silent_from_s: float | None, reply_timeout_s: float
) -> InvalidReason | None:
    """The ``SUT_STOPPED_READING`` reason, or None when the system under test kept reading.

    ``unsent``: frames not sent because its send buffer was full; ``unanswered``: frames sent
    after its last reply and never answered; ``silent_from_s``: the run-clock time of its last
    reply (of the first frame sent, when it never answered), None when it did not go silent for
    more than ``reply_timeout_s``. ``measured``: the frames without a latency (unsent +
    unanswered); ``limit``: reply_timeout_s.
    """
    if not unsent and silent_from_s is None:
        return None
    since = "" if silent_from_s is None else f" after t={silent_from_s:.1f} s"
    return InvalidReason(
        kind=SUT_STOPPED_READING,
        message=f"system under test stopped reading: no reply{since}; {unsent} frames could "
        f"not be sent (its socket buffers were full) and {unanswered} sent frames got no reply "
        f"within reply_timeout_s {reply_timeout_s:g} s - the generator kept its schedule",
        measured=float(unsent + unanswered),
        limit=reply_timeout_s,
        unit="count",
        hint=HINTS[SUT_STOPPED_READING],
    )


def over_range_reason(count: int, max_ms: float | None, limit_ms: float) -> InvalidReason | None:
    """The ``OVER_RANGE`` reason for ``count`` replies above the limit, else None
    (``measured``: the slowest reply, ms; ``limit``: the limit, ms)."""
    if not count:
        return None
    slowest = "" if max_ms is None else f", the slowest {max_ms:,.0f} ms"
    return InvalidReason(
        kind=OVER_RANGE,
        message=f"latency above the run's limit: {count} replies took longer than "
        f"reply_timeout_s ({limit_ms:,.0f} ms){slowest}; the latency figures leave them out - "
        "raise workload.reply_timeout_s",
        measured=max_ms,
        limit=limit_ms,
        unit="ms",
        hint=HINTS[OVER_RANGE],
    )
