"""Decoded column views of a LoadResult's frame array, shared by the analysis modules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from harness.load.recording import new_histogram, record_seconds


@dataclass
class Columns:
    """Per-frame columns on the run clock (s); label columns as object arrays (None = unset)."""

    session: np.ndarray
    t_scheduled: np.ndarray
    t_sent: np.ndarray
    t_reply: np.ndarray
    served_by: np.ndarray
    model_version: np.ndarray
    error_code: np.ndarray

    @property
    def answered(self) -> np.ndarray:
        """Frames that got any reply (error replies included)."""
        return ~np.isnan(self.t_reply)

    @property
    def errored(self) -> np.ndarray:
        """Frames answered with an error reply."""
        return self.error_code != None  # noqa: E711 - elementwise on an object array

    @property
    def latency_s(self) -> np.ndarray:
        """Coordinated-omission corrected latency (NaN when unanswered)."""
        return self.t_reply - self.t_scheduled


def columns(load: Any) -> Columns:
    """Decode ``load.frames`` (FRAME_DTYPE codes into ``load.labels``) into columns."""
    f = load.frames
    labels = np.array([*list(load.labels), None], dtype=object)  # code -1 -> None

    def decode(name: str) -> np.ndarray:
        codes = np.asarray(f[name], dtype=np.int64)
        return labels[np.where(codes < 0, len(labels) - 1, codes)]

    return Columns(
        session=np.asarray(f["session"], dtype=np.int64),
        t_scheduled=np.asarray(f["t_scheduled"], dtype=np.float64),
        t_sent=np.asarray(f["t_sent"], dtype=np.float64),
        t_reply=np.asarray(f["t_reply"], dtype=np.float64),
        served_by=decode("served_by"),
        model_version=decode("model_version"),
        error_code=decode("error_code"),
    )


def histogram_of(seconds: np.ndarray, limit_s: float | None = None) -> HdrHistogram:
    """HDR histogram (us, 3 digits) of latencies in seconds (NaNs ignored).

    ``limit_s``: the run's latency limit (``LoadResult.latency_limit_s``); values above it are
    left out, as in the run's own histograms, which count them (``LoadResult.over_range``) and
    make the run INVALID. None: the range is sized to hold every value (ad-hoc percentiles of a
    slice), so nothing is ever clamped or dropped.
    """
    s = seconds[~np.isnan(seconds)]
    if limit_s is None:
        limit_s = max(float(s.max()) if s.size else 0.0, 1e-3)
    hist = new_histogram(limit_s)
    record_seconds(hist, s)
    return hist


def percentiles_of(seconds: np.ndarray, keys: tuple[str, ...] = ("p50", "p95", "p99")) -> dict:
    """Selected percentiles (ms) of latencies in seconds, via HDR; None values when empty."""
    pct = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
    values = hdr_percentiles(histogram_of(seconds), [pct[k] for k in keys])
    return {k: None if v is None else v / 1000.0 for k, v in zip(keys, values, strict=True)}


def hdr_nonzero(hist: HdrHistogram, highest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(values in us, counts) of the non-empty buckets: each bucket's median-equivalent value,
    or its highest-equivalent one (what ``get_value_at_percentile`` reports) with ``highest``.

    Vectorised over hdrh's counts array (same bucket arithmetic as
    ``HdrHistogram.get_value_from_index``): hdrh's iterators walk every bucket in Python
    (~0.15 s per histogram), far too slow for per-window and bootstrap work.
    """
    counts = np.ctypeslib.as_array(hist.counts)
    idx = np.nonzero(counts)[0].astype(np.int64)
    half, mag = hist.sub_bucket_half_count, hist.sub_bucket_half_count_magnitude
    bucket = (idx >> mag) - 1
    sub = (idx & (half - 1)) + half
    low = bucket < 0
    sub[low] -= half
    bucket[low] = 0
    lowest = sub << (bucket + hist.unit_magnitude)
    size = np.left_shift(1, hist.unit_magnitude + bucket)
    values = lowest + size - 1 if highest else lowest + (size >> 1)
    return values.astype(np.float64), counts[idx].astype(np.float64)


def hdr_mean(hist: HdrHistogram) -> float | None:
    """Mean of a histogram (same value as ``get_mean_value``, ~50x faster); None when empty."""
    values, counts = hdr_nonzero(hist)
    total = counts.sum()
    return float((values * counts).sum() / total) if total else None


def hdr_percentiles(hist: HdrHistogram, percentiles: Sequence[float]) -> list[float | None]:
    """Values (us) at percentiles, the same rule as ``HdrHistogram.get_value_at_percentile``
    (count rank = int(p/100 * total + 0.5), at least 1; the bucket's highest-equivalent value),
    vectorised: hdrh walks the counts in Python (~30 ms per call at 40 ms latencies).
    """
    values, counts = hdr_nonzero(hist, highest=True)
    total = counts.sum()
    if total == 0:
        return [None] * len(percentiles)
    cum = np.cumsum(counts)
    out: list[float | None] = []
    for p in percentiles:
        rank = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        out.append(float(values[min(np.searchsorted(cum, rank), values.size - 1)]))
    return out
