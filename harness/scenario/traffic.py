"""Session traffic models: when each session starts and how long it streams.

Three models (``workload`` in docs/HARNESS.md):

- fixed N sessions for the whole run (the generator's own default, not planned here);
- ``stages`` (closed, k6 ``ramping-vus``): a target number of concurrent sessions, piecewise
  linear over time from 0; session slot k is open while the target is >= k + 1, one session per
  contiguous stretch;
- ``arrivals`` (open, k6 ``constant/ramping-arrival-rate``): sessions arrive at a rate (constant
  or piecewise-linear ``stages``), as a Poisson process or evenly spaced, and each streams for a
  length drawn from its distribution (fixed, exponential, or its trace played once).

Both are turned into a list of :class:`PlannedSession` before the run (seeded: the same scenario
gives the same plan), so the generator's per-frame path is unchanged and open-loop: frame k of a
session is due at ``start + k / fps`` whatever the server does. Times are seconds from the
generator's base (its first possible send), ``CONNECT_LEAD_S`` into the run clock.

The plan is a pure function of the scenario, so it lives in the scenario layer: the validator
refuses a plan that starts no session (or a rollout change no session could see) with the very
planner and lead the run uses (``harness.load.generator`` imports both from here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Resolution of the integrated arrival rate used to place arrivals (s); fine enough that an
# arrival is placed within a fraction of a frame period at any realistic rate.
_GRID_S = 0.01
_MAX_GRID = 2_000_000
# Seconds from entering the generator's run() to its base (t of the first possible send): every
# session connects before its first frame is due, so a session planned at 0 is not late.
CONNECT_LEAD_S = 0.5


@dataclass(frozen=True)
class PlannedSession:
    """One session of a plan: starts at ``start_s`` and streams until ``end_s`` (seconds from
    the generator's base; ``end_s`` <= the run's duration)."""

    start_s: float
    end_s: float


def _knots(
    stages: Sequence[tuple[float, float]], start: float = 0.0
) -> tuple[list[float], list[float]]:
    """(times, values) of the piecewise-linear target that starts at ``start`` at t = 0."""
    ts, vs = [0.0], [start]
    for duration, target in stages:
        ts.append(ts[-1] + float(duration))
        vs.append(float(target))
    return ts, vs


def target_at(stages: Sequence[tuple[float, float]], t: float | np.ndarray) -> np.ndarray:
    """The stages' target at time(s) ``t`` (linear within a stage, the last target after)."""
    ts, vs = _knots(stages)
    return np.asarray(np.interp(t, ts, vs))


def _at_or_above(
    level: int, t0: float, v0: float, t1: float, v1: float, until: float
) -> tuple[float, float] | None:
    """Where on [t0, until) the target, linear from (t0, v0) to (t1, v1), is >= ``level``:
    one interval, or None when nowhere."""
    if v1 == v0:
        return (t0, until) if v0 >= level else None
    cross = t0 + (level - v0) / (v1 - v0) * (t1 - t0)
    lo, hi = (max(t0, cross), until) if v1 > v0 else (t0, min(cross, until))
    return (lo, hi) if hi > lo else None


def plan_stages(stages: Sequence[tuple[float, float]], duration_s: float) -> list[PlannedSession]:
    """Closed model: slot k runs a session wherever the target is >= k + 1.

    ``stages``: (duration_s, target sessions) pairs, linear from 0 at t = 0. Sessions of the
    same slot never overlap; a slot that closes and reopens gets a new session (a new connect).
    """
    ts, vs = _knots(stages)
    if ts[-1] < duration_s:  # hold the last target to the end of the run
        ts.append(duration_s)
        vs.append(vs[-1])
    top = math.ceil(max(vs) - 1e-9)
    out: list[PlannedSession] = []
    for level in range(1, top + 1):
        open_at: float | None = None
        for (t0, v0), (t1, v1) in zip(
            zip(ts, vs, strict=True), zip(ts[1:], vs[1:], strict=True), strict=False
        ):
            if t0 >= duration_s:
                break
            t1c = min(t1, duration_s)
            span = _at_or_above(level, t0, v0, t1, v1, t1c)
            if span is None:
                if open_at is not None:
                    out.append(PlannedSession(open_at, t0))
                    open_at = None
                continue
            lo, hi = span
            if open_at is None:
                open_at = lo
            if hi < t1c:  # closes inside the segment
                out.append(PlannedSession(open_at, hi))
                open_at = None
        if open_at is not None:
            out.append(PlannedSession(open_at, duration_s))
    out = [s for s in out if s.end_s - s.start_s > 1e-9]
    out.sort(key=lambda s: s.start_s)
    return out


def arrival_times(
    rate: float | Sequence[tuple[float, float]],
    duration_s: float,
    process: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Arrival times in [0, duration_s) for a constant ``rate`` (sessions/s) or rate stages.

    Time rescaling: with the integrated rate Lambda(t), arrival n is at Lambda^-1(E_n), where E_n
    are the cumulative sums of Exp(1) gaps (``poisson``) or n + 0.5 (``constant``: evenly spaced,
    the first half a gap in, so a rate r gives r arrivals per second in every second).
    """
    n_grid = min(max(math.ceil(duration_s / _GRID_S), 2), _MAX_GRID)
    grid = np.linspace(0.0, duration_s, n_grid + 1)
    if isinstance(rate, int | float):
        lam = grid * float(rate)
    else:
        r = target_at(rate, grid)
        lam = np.concatenate([[0.0], np.cumsum((r[1:] + r[:-1]) / 2 * np.diff(grid))])
    total = float(lam[-1])
    if total <= 0:
        return np.empty(0)
    if process == "poisson":
        n_max = int(total + 10 * math.sqrt(total) + 20)
        marks = np.cumsum(rng.exponential(1.0, n_max))
        while marks[-1] < total:  # never happens in practice; keeps the tail exact
            marks = np.concatenate([marks, marks[-1] + np.cumsum(rng.exponential(1.0, n_max))])
        marks = marks[marks < total]
    elif process == "constant":
        marks = np.arange(0.5, total, 1.0)
    else:
        raise ValueError(f"unknown arrival process {process!r} (poisson or constant)")
    # Lambda is non-decreasing; flat stretches (rate 0) map to their start, never chosen
    # because a mark lands strictly inside a rising stretch.
    return np.interp(marks, lam, grid)


def plan_arrivals(
    rate: float | Sequence[tuple[float, float]],
    duration_s: float,
    process: str,
    length: str,
    length_s: float | None,
    seed: int,
    trace_seconds: Callable[[int], float] | None = None,
) -> list[PlannedSession]:
    """Open model: arrivals (see :func:`arrival_times`) and each session's length.

    ``length``: ``fixed`` (``length_s``), ``exponential`` (mean ``length_s``) or ``trace``
    (``trace_seconds(i)``: session i's trace played once). A session is cut at ``duration_s``.
    """
    rng = np.random.default_rng(seed)
    starts = arrival_times(rate, duration_s, process, rng)
    if length == "fixed":
        lengths = np.full(starts.size, float(length_s or 0.0))
    elif length == "exponential":
        lengths = rng.exponential(float(length_s or 0.0), starts.size)
    elif length == "trace":
        if trace_seconds is None:
            raise ValueError("session length 'trace' needs the traces' lengths")
        lengths = np.array([trace_seconds(i) for i in range(starts.size)], dtype=np.float64)
    else:
        raise ValueError(f"unknown session length distribution {length!r}")
    return [
        PlannedSession(float(s), float(min(s + max(d, 0.0), duration_s)))
        for s, d in zip(starts.tolist(), lengths.tolist(), strict=True)
    ]


def plan_workload(
    workload: object, trace_seconds: Callable[[int], float] | None, lead_s: float = 0.0
) -> list[PlannedSession] | None:
    """The plan of a scenario ``Workload`` (None for the fixed-N model: the generator's own).

    ``lead_s``: the generator's connect lead (its base is that far into the run clock), so
    the plan covers ``duration_s - lead_s`` and no session is planned past the run's end.
    """
    stages = getattr(workload, "stages", None)
    arrivals = getattr(workload, "arrivals", None)
    duration = float(workload.duration_s) - lead_s  # type: ignore[attr-defined]
    if stages:
        return plan_stages([(s.duration_s, s.target) for s in stages], duration)
    if arrivals is not None:
        rate = (
            arrivals.rate_per_s
            if arrivals.rate_per_s is not None
            else [(s.duration_s, s.target) for s in arrivals.stages]
        )
        return plan_arrivals(
            rate,
            duration,
            arrivals.process,
            arrivals.session_length.distribution,
            arrivals.session_length.seconds,
            arrivals.seed,
            trace_seconds,
        )
    return None
