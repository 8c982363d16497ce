"""Self-check: is the generator's own measurement trustworthy?

A run is INVALID (neither passed nor failed) when the generator fell behind its schedule:
more than ``MAX_LATE_SHARE`` of frames sent over the late threshold, or its process CPU
saturated (>= ``CPU_SATURATED_PERCENT`` of one core over the sending period) - a saturated
generator's latencies include its own queueing.
"""

from __future__ import annotations

import time

import psutil

MAX_LATE_SHARE = 0.01
CPU_SATURATED_PERCENT = 95.0
# How each INVALID reason starts, for code that tells them apart (CLI hints, CI retries).
FELL_BEHIND = "generator fell behind"
CPU_SATURATED = "generator CPU saturated"


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
