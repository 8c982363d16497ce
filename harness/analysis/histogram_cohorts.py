"""A cohort read from a production Prometheus: histogram buckets turned into the rollout
judge's observations (``harness judge --prometheus``).

The backend exports, per cohort (``route="torchserve"|"local"``), cumulative counters: the
frame reply latency histogram (``signflow_frame_latency_seconds_bucket``), the inference
latency histogram by who answered (``signflow_inference_latency_seconds_bucket``), error
replies, sessions opened, and the open sessions gauge (backend_patch/app/metrics.py). Sampled
by a range query at times ``t`` (s), the counts in a window [t0, t1) are the counters'
increases between the samples at t0 and t1 (a counter reset, a restarted backend, counts
what came after it, as PromQL's ``increase`` does).

Buckets -> observations (:func:`pseudo_samples`): the ``n`` observations of a bucket
(lo, hi] are taken evenly spread inside it, the same linear interpolation PromQL's
``histogram_quantile`` makes (the first bucket starts at 0; the ``+Inf`` bucket's
observations are ``inf``, as a lost frame is in the in-run judge). Every order statistic,
hence every quantile bound the sequential tests compute
(harness/analysis/sequential.py), is then exact up to the width of the bucket it falls in:
the judgement is as fine as the bucket edges around the figures it compares.

Thinning: the in-run judge observes one frame per session every ``FRAME_STRIDE_S`` (0.1 s;
neighbouring frames share an in-order queue). A histogram has no sessions, so the frames are
thinned by their rate: ``frames_per_unit = fps * FRAME_STRIDE_S`` (3 at 30 fps): the
observations are the pseudo-samples at evenly spaced quantile levels, one per
``frames_per_unit`` frames, so their distribution is the frames' and their number the
in-run judge's. Classifications are not thinned (the in-run judge takes each one).

What a production Prometheus does not have: ground truth (accuracy is never judged from it:
``accuracy_units`` is (0, 0)), and the client's view (these latencies are the server's,
received -> reply built, without the network; lost frames are not seen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

import harness.hdr as hdr
from harness.results.model import CohortFigures, CohortLatency
from harness.scenario.evidence import FRAME_STRIDE_S

Counts = npt.NDArray[np.float64]
_PCT = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def increases(values: Counts) -> Counts:
    """A counter's increase since its first sample, at each sample (same length as ``values``).

    A drop is a reset: the new value is what came after it (PromQL ``increase`` without its
    extrapolation). Missing samples (NaN) add nothing."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    filled = v.copy()
    # Carry the last seen value over gaps, so a gap is no change.
    last = np.nan
    for i, x in enumerate(filled):
        if math.isnan(x):
            filled[i] = last
        else:
            last = x
    first = next((x for x in filled if not math.isnan(x)), 0.0)
    filled = np.where(np.isnan(filled), first, filled)
    step = np.diff(filled, prepend=filled[0])
    step = np.where(step < 0, filled, step)  # a reset: the counter restarted from 0
    return np.cumsum(step)


def pseudo_samples(edges: hdr.Floats, counts: Counts, n: int | None = None) -> hdr.Floats:
    """``n`` observations (default: the total count) drawn from a histogram's buckets at evenly
    spaced quantile levels, interpolated linearly inside each bucket (``histogram_quantile``'s
    assumption); sorted, in the edges' unit.

    ``edges``: the finite upper edges, rising (``le``); ``counts``: observations per bucket
    (NOT cumulative), one more than ``edges`` (the last is the ``+Inf`` bucket; its
    observations are ``inf``). Raises ValueError on mismatched lengths or negative counts.
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if c.size != e.size + 1:
        raise ValueError(f"{c.size} bucket counts for {e.size} finite edges (need edges + 1)")
    if (c < -1e-9).any():
        raise ValueError(f"negative bucket counts: {c.tolist()}")
    c = np.clip(c, 0.0, None)
    total = float(c.sum())
    size = round(total) if n is None else int(n)
    if size <= 0 or total <= 0:
        return np.empty(0)
    # The quantile level of each observation, then its bucket and its place inside it.
    levels = (np.arange(size, dtype=np.float64) + 0.5) / size * total
    upper = np.cumsum(c)
    bucket = np.minimum(np.searchsorted(upper, levels, side="right"), c.size - 1)
    below = upper[bucket] - c[bucket]
    inside = np.where(c[bucket] > 0, (levels - below) / np.where(c[bucket] > 0, c[bucket], 1), 0)
    lo = np.r_[0.0, e][bucket]
    hi = np.r_[e, np.inf][bucket]
    out = np.where(np.isinf(hi), np.inf, lo + (hi - lo) * inside)
    return np.asarray(out, dtype=np.float64)


def bucket_quantile(edges: hdr.Floats, counts: Counts, q: float) -> float | None:
    """PromQL's ``histogram_quantile(q, ...)`` of per-bucket ``counts`` (not cumulative):
    linear inside the bucket holding rank ``q * total``; the last finite edge when it falls
    in ``+Inf``; None without observations."""
    c = np.asarray(counts, dtype=np.float64)
    total = float(c.sum())
    if total <= 0:
        return None
    rank = q * total
    upper = np.cumsum(c)
    b = int(np.searchsorted(upper, rank, side="left"))
    e = np.asarray(edges, dtype=np.float64)
    if b >= e.size:
        return float(e[-1])
    lo = 0.0 if b == 0 else float(e[b - 1])
    below = float(upper[b] - c[b])
    return lo + (float(e[b]) - lo) * ((rank - below) / float(c[b]) if c[b] > 0 else 1.0)


@dataclass(frozen=True)
class CohortSeries:
    """One cohort's counters sampled at ``t`` (s), each an increase since the first sample.

    ``frame_buckets``/``inference_buckets``: (len(t), len(edges) + 1) observations per bucket
    (not cumulative over ``le``; the last column ``+Inf``), inference split into
    ``inference_local_buckets`` (answered by the local engine) and the rest; ``errors``,
    ``sessions_opened``: counters; ``sessions_open``: the gauge (sessions open at each t).
    """

    t: hdr.Floats
    frame_edges: hdr.Floats
    frame_buckets: Counts
    inference_edges: hdr.Floats
    inference_buckets: Counts
    inference_local_buckets: Counts
    errors: Counts
    sessions_opened: Counts
    sessions_open: Counts

    def __post_init__(self) -> None:
        n = self.t.size
        for name in ("frame_buckets", "inference_buckets", "inference_local_buckets"):
            arr = getattr(self, name)
            edges = self.inference_edges if name.startswith("inference") else self.frame_edges
            if arr.shape != (n, edges.size + 1):
                raise ValueError(f"{name}: shape {arr.shape}, need ({n}, {edges.size + 1})")
        for name in ("errors", "sessions_opened", "sessions_open"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: shape {getattr(self, name).shape}, need ({n},)")


@dataclass(frozen=True)
class HistogramCohort:
    """One cohort from Prometheus, as the rollout judge reads it
    (:class:`harness.analysis.rollout.Cohort`): the counts between two samples of ``series``.

    ``frames_per_unit``: frames per observation of the sequential tests (module docstring;
    >= 1). ``i0``/``i1``: the samples bounding the window (whole series by default).
    """

    series: CohortSeries
    frames_per_unit: float = 1.0
    i0: int = 0
    i1: int = -1

    def _at(self, arr: Counts) -> Counts:
        end = self.i1 if self.i1 >= 0 else self.series.t.size - 1
        return np.asarray(arr[end] - arr[self.i0], dtype=np.float64)

    @property
    def window(self) -> tuple[float, float]:
        """(t0, t1) of the samples bounding the counts (s)."""
        t = self.series.t
        return float(t[self.i0]), float(t[self.i1 if self.i1 >= 0 else t.size - 1])

    @property
    def sessions(self) -> int:
        """Sessions of the cohort with frames in the window: those open at its start plus
        those opened inside it."""
        if self.series.t.size == 0:
            return 0
        opened = float(self._at(self.series.sessions_opened))
        return round(float(self.series.sessions_open[self.i0]) + opened)

    def between(self, t0: float, t1: float) -> HistogramCohort:
        """The counts from the last sample at or before ``t0`` to the last at or before
        ``t1`` (the samples are the only instants Prometheus has)."""
        t = self.series.t
        i0 = max(int(np.searchsorted(t, t0, side="right")) - 1, 0)
        i1 = max(int(np.searchsorted(t, t1, side="right")) - 1, i0)
        return replace(self, i0=i0, i1=i1)

    def frame_counts(self) -> Counts:
        """Frames answered without an error, per bucket, in the window."""
        return self._at(self.series.frame_buckets)

    def inference_counts(self) -> tuple[Counts, Counts]:
        """(all, answered locally) classifications per bucket in the window."""
        return self._at(self.series.inference_buckets), self._at(
            self.series.inference_local_buckets
        )

    def _errors(self) -> int:
        return round(float(self._at(self.series.errors)))

    def figures(self) -> CohortFigures:
        """Counts and bucket-interpolated percentiles (``histogram_quantile``'s) in ms."""
        frames = self.frame_counts()
        inf, local = self.inference_counts()
        ok = round(float(frames.sum()))
        errors = self._errors()
        n = ok + errors
        inferences = round(float(inf.sum()))

        def pcts(edges: hdr.Floats, counts: Counts) -> CohortLatency:
            out: dict[str, float | None] = {}
            for key, p in _PCT.items():
                v = bucket_quantile(edges, counts, p / 100.0)
                out[key] = None if v is None else v * 1000.0
            return CohortLatency.model_validate(out)

        return CohortFigures(
            sessions=self.sessions,
            frames=n,
            inferences=inferences,
            frame_latency_ms=pcts(self.series.frame_edges, frames),
            inference_latency_ms=pcts(self.series.inference_edges, inf),
            errors=errors,
            error_share=errors / n if n else None,
            judged_signs=0,
            accuracy=None,
            local_share=float(local.sum()) / float(inf.sum()) if inf.sum() > 0 else None,
        )

    def _units(self) -> int:
        ok = float(self.frame_counts().sum())
        return round(ok / max(self.frames_per_unit, 1.0))

    def latency_units(self, family: str) -> hdr.Floats:
        """Pseudo-observations (ms): every classification, or the frames thinned to the in-run
        judge's one per session every 0.1 s (module docstring)."""
        if family == "inference":
            inf, _ = self.inference_counts()
            return pseudo_samples(self.series.inference_edges * 1000.0, inf)
        frames = self.frame_counts()
        return pseudo_samples(self.series.frame_edges * 1000.0, frames, self._units())

    def error_units(self) -> tuple[int, int]:
        """(errored, all) thinned frames: the error share kept, the count thinned."""
        ok, errors = float(self.frame_counts().sum()), float(self._errors())
        f = max(self.frames_per_unit, 1.0)
        return round(errors / f), round((ok + errors) / f)

    def local_units(self) -> tuple[int, int]:
        """(answered by the local engine, all) classifications of the cohort."""
        inf, local = self.inference_counts()
        return round(float(local.sum())), round(float(inf.sum()))

    def accuracy_units(self) -> tuple[int, int]:
        """No ground truth in production metrics: (0, 0), so accuracy is never judged."""
        return 0, 0


def frames_per_unit(fps: float) -> float:
    """Frames per sequential-test observation at ``fps`` frames/s a session (>= 1)."""
    return max(fps * FRAME_STRIDE_S, 1.0)
