"""Drift over the measured window: what a soak run judges leaks and slow degradation by.

Each figure is a robust slope per hour with its 95 % interval, fitted by Theil-Sen (the median
of the slopes of every pair of points; interval from Kendall's tau: Theil 1950, Sen 1968; the
fit is ``scipy.stats.theilslopes``). A few outliers (a GC pause, a TorchServe restart) do not
move it, unlike least squares.

- Per component (backend, torchserve, harness), from the process collector's 1-s samples:
  RSS (MB/h), open file descriptors (1/h) and threads (1/h), all summed over the component's
  processes (harness/collectors/process.py).
- Frame latency p99 (ms/h): the p99 of each block of whole 1-s windows, merged from the
  per-window HDR histograms, fitted against the blocks' mid-times. THE block rule: blocks of
  10 minutes when the measured window holds at least 3 of them, else the measured window cut
  into 3 equal blocks of whole seconds; a trailing partial block is left out.

Too little data gives None and a reason saying what would settle it: a process fit needs
:data:`MIN_FIT_S` seconds of samples (:data:`MIN_POINTS` at least), the latency fit 3 blocks
of at least :data:`MIN_BLOCK_S` seconds. Over :data:`MAX_POINTS` samples (8 h at 1 Hz holds
28,800) are reduced to the medians of :data:`MAX_POINTS` equal time bins first: the pairwise
fit is O(n^2) in memory and time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

import harness.hdr as hdr
from harness.results.model import LatencyDrift, ProcessDrift

from .frames import Window

MIN_FIT_S = 20.0
MIN_POINTS = 10
MAX_POINTS = 1000
BLOCK_S = 600.0
MIN_BLOCKS = 3
MIN_BLOCK_S = 10.0
CONFIDENCE = 0.95
COMPONENTS = ("backend", "torchserve", "harness")


@dataclass(frozen=True)
class Fit:
    """A Theil-Sen line: ``per_h`` (unit/h) with its ``CONFIDENCE`` interval [low, high],
    ``start``: the fitted value at the first point's time; ``points``, ``span_s`` fitted."""

    per_h: float
    low: float | None
    high: float | None
    start: float
    points: int
    span_s: float


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _reduce(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: the medians of equal time bins (empty bins dropped)."""
    if len(t) <= MAX_POINTS:
        return t, y
    edges = np.linspace(t[0], t[-1], MAX_POINTS + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, MAX_POINTS - 1)
    order = np.argsort(idx, kind="stable")
    _, starts = np.unique(idx[order], return_index=True)
    groups_t = np.split(t[order], starts[1:])
    groups_y = np.split(y[order], starts[1:])
    return (
        np.array([float(np.median(g)) for g in groups_t]),
        np.array([float(np.median(g)) for g in groups_y]),
    )


def theil_sen(
    t_s: Sequence[float | None], values: Sequence[float | None], min_span_s: float = MIN_FIT_S
) -> tuple[Fit | None, str | None]:
    """(the fit, None) of ``values`` against ``t_s`` (seconds), slope per hour; or (None, why)
    when fewer than MIN_POINTS numbers or less than ``min_span_s`` seconds are given.
    None and NaN values are skipped (a gap, not a zero)."""
    pairs = [
        (float(t), float(v))
        for t, v in zip(t_s, values, strict=False)
        if t is not None and v is not None and math.isfinite(float(v)) and math.isfinite(float(t))
    ]
    pairs.sort()
    if len(pairs) < MIN_POINTS:
        return None, f"{len(pairs)} samples, a slope needs at least {MIN_POINTS}"
    t = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    span = float(t[-1] - t[0])
    if span < min_span_s:
        return None, f"samples span {span:.0f} s, a slope needs at least {min_span_s:.0f} s"
    t, y = _reduce(t, y)
    res = stats.theilslopes(y, t, alpha=CONFIDENCE)
    slope, intercept = float(res.slope), float(res.intercept)
    return (
        Fit(
            per_h=slope * 3600.0,
            low=None if (lo := _finite(float(res.low_slope))) is None else lo * 3600.0,
            high=None if (hi := _finite(float(res.high_slope))) is None else hi * 3600.0,
            start=intercept + slope * float(t[0]),
            points=len(pairs),
            span_s=span,
        ),
        None,
    )


def _process_entry(series: Mapping[str, Any]) -> Mapping[str, Any] | None:
    entry = series.get("process")
    return entry if isinstance(entry, Mapping) and "t" in entry else None


def process_drift(series: Mapping[str, Any], t_lo: float) -> dict[str, ProcessDrift]:
    """``summary.memory``: component -> its RSS, fd and thread slopes over t >= ``t_lo``.

    ``series``: CollectorSet.series() (the ``process`` entry: ``t``, ``rss_mb``, ``fds``,
    ``threads``, each ``{component: [...]}``). A component without samples is left out.
    """
    entry = _process_entry(series)
    if entry is None:
        return {}
    t_all = list(entry["t"])
    keep = [i for i, t in enumerate(t_all) if t is not None and t >= t_lo]
    t = [t_all[i] for i in keep]
    out: dict[str, ProcessDrift] = {}
    comps = [c for c in (entry.get("rss_mb") or {}) if isinstance(c, str)]
    for comp in comps:
        figures: dict[str, Any] = {}
        reasons: list[str] = []
        for field, key in (("rss_mb", "rss_mb"), ("fds", "fds"), ("threads", "threads")):
            column = (entry.get(key) or {}).get(comp)
            if not isinstance(column, list | tuple):
                reasons.append(f"{field}: not sampled")
                continue
            fit, why = theil_sen(t, [column[i] if i < len(column) else None for i in keep])
            if fit is None:
                reasons.append(f"{field}: {why}")
                continue
            figures[f"{field}_per_h"] = fit.per_h
            figures[f"{field}_per_h_low"] = fit.low
            figures[f"{field}_per_h_high"] = fit.high
            if field == "rss_mb":
                figures["rss_mb_start"] = fit.start
                figures["samples"] = fit.points
                figures["span_s"] = fit.span_s
        reason = None
        if reasons:
            reason = "; ".join(reasons) + (
                f" (measured samples from t = {t_lo:g} s; a run with at least "
                f"{MIN_FIT_S:.0f} s measured settles it)"
            )
        out[comp] = ProcessDrift(**figures, reason=reason)
    return out


def block_rule(measured_s: float) -> float | None:
    """THE block length (s) for a measured window of ``measured_s`` seconds (module doc);
    None when 3 blocks of at least MIN_BLOCK_S do not fit."""
    if measured_s >= MIN_BLOCKS * BLOCK_S:
        return BLOCK_S
    block = math.floor(measured_s / MIN_BLOCKS)
    return float(block) if block >= MIN_BLOCK_S else None


def latency_drift(windows: Sequence[Window], family: str = "frame") -> LatencyDrift:
    """``summary.drift``: the p99 of each block of measured 1-s windows and its slope (ms/h)."""
    measured = [w for w in windows if not w.warmup]
    block = block_rule(len(measured))
    if block is None:
        need = MIN_BLOCKS * MIN_BLOCK_S
        return LatencyDrift(
            reason=f"{len(measured)} s measured, the p99 slope needs {MIN_BLOCKS} blocks of at "
            f"least {MIN_BLOCK_S:.0f} s: measure at least {need:.0f} s"
        )
    size = int(block)
    mids: list[float] = []
    p99s: list[float | None] = []
    for k in range(len(measured) // size):
        chunk = measured[k * size : (k + 1) * size]
        merged = hdr.merge(w.hist[f"{family}_latency"] for w in chunk)
        mids.append(chunk[0].t + size / 2.0)
        p99s.append(hdr.percentile_ms(merged, 99.0))
    base = LatencyDrift(block_s=block, blocks=len(mids), block_p99_ms=p99s)
    have = [(m, p) for m, p in zip(mids, p99s, strict=True) if p is not None]
    if len(have) < MIN_BLOCKS:
        base.reason = f"{len(have)} blocks with replies, the p99 slope needs {MIN_BLOCKS}"
        return base
    t = np.array([m for m, _ in have])
    y = np.array([p for _, p in have])
    res = stats.theilslopes(y, t, alpha=CONFIDENCE)
    lo, hi = _finite(float(res.low_slope)), _finite(float(res.high_slope))
    base.frame_p99_ms_per_h = float(res.slope) * 3600.0
    base.frame_p99_ms_per_h_low = None if lo is None else lo * 3600.0
    base.frame_p99_ms_per_h_high = None if hi is None else hi * 3600.0
    return base
