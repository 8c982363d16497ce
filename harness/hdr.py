"""The one histogram module: every latency HdrHistogram is built, recorded, merged, read and
encoded here, with one rank rule and one unit.

A leaf module (no harness imports), so that both analysis (results) and the load package's
live progress (the distributed engine's per-second ticks) use this one kernel; the load
package records raw rows and builds no result figures from histograms.

Unit: **microseconds** (``UNIT = "us"``). Values are recorded as whole microseconds
(``rint(seconds * 1e6)``) into HdrHistograms with 3 significant digits whose range is the run's
own latency limit (``LoadResult.latency_limit_s``, the run's ``reply_timeout_s``): 1 us ..
``limit_us(limit_s)``. A value above the range is never folded into the top bucket: it is left
out and counted (``record_seconds`` returns how many), because percentiles without it would
understate the tail. Encoded histograms (``encode``) are HdrHistogram's base64 text
(``HISTFAAA...``) and hold microseconds; results documents state it as ``histograms.unit``
("us"; version-1 documents have no such key and were always microseconds).

Rank rule (``rank``): the value at percentile p of N recorded values is the highest equivalent
value of the bucket holding the value of count rank ``max(floor(p * N / 100 + 0.5), 1)``, p
clamped to 100 (0 < p <= 100); the same rule as HdrHistogram's own
``get_value_at_percentile``, so values agree with hdrh's. The mean uses each bucket's median
equivalent value (hdrh's ``get_mean_value``). Readers here are vectorised over hdrh's counts
array: hdrh's iterators walk every bucket in Python (~0.15 s per histogram), far too slow for
per-window and bootstrap work.

Types: hdrh ships no type information. :class:`Histogram` states the part of
``hdrh.histogram.HdrHistogram`` the harness uses, and this module is the one place that
creates hdrh objects (``new_histogram``, ``decode``): everything else holds a ``Histogram``.
Arrays: ``Floats`` (float64) for latencies, values and counts.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterable, Sequence
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

Floats = npt.NDArray[np.float64]


class Histogram(Protocol):
    """The part of hdrh's ``HdrHistogram`` the harness uses (values in microseconds)."""

    highest_trackable_value: int
    unit_magnitude: int
    sub_bucket_count: int
    sub_bucket_half_count: int
    sub_bucket_half_count_magnitude: int
    counts_len: int
    total_count: int
    min_value: int
    max_value: int
    # hdrh's counts: a ctypes array of c_uint16/32/64 (its word size), counts_len long.
    counts: ctypes.Array[ctypes.c_uint64]

    def record_value(self, value: int, count: int = 1) -> bool:
        """Record ``count`` times ``value``; False when it is outside the range."""
        ...

    def add(self, other_hist: Histogram) -> object:
        """Add every count of ``other_hist`` into this one."""
        ...

    def decode_and_add(self, encoded_histogram: bytes) -> None:
        """Add the counts of an encoded histogram (``encode``'s bytes)."""
        ...

    def get_total_count(self) -> int:
        """Values recorded."""
        ...

    def get_max_value(self) -> int:
        """The highest value recorded (its bucket's highest equivalent value)."""
        ...

    def encode(self) -> bytes:
        """HdrHistogram's compressed base64 form (``HISTFAAA...``)."""
        ...


def _hdrh(hist: object) -> Histogram:
    """An hdrh ``HdrHistogram`` (untyped library) as the typed :class:`Histogram`."""
    return cast(Histogram, hist)


UNIT = "us"
US_PER_MS = 1000.0
HIST_MIN_US = 1
HIST_DIGITS = 3

# The summary's percentile keys and the percentile each one reads.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
LATENCY_KEYS = (*PERCENTILES, "max", "mean", "count")
# The report's percentile plot.
PERCENTILE_CURVE = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0)


def limit_us(limit_s: float) -> int:
    """A latency limit in seconds as whole microseconds (>= 2): the highest latency a run's
    histograms hold, and the bound of ``LoadResult.over_range``.

    Raises ValueError when ``limit_s`` is not a finite number > 0.
    """
    if not math.isfinite(limit_s) or limit_s <= 0:
        raise ValueError(f"latency limit must be a finite number of seconds > 0, got {limit_s!r}")
    return max(math.ceil(limit_s * 1e6), 2 * HIST_MIN_US)


def new_histogram(limit_s: float) -> Histogram:
    """An empty latency histogram in microseconds: 1 us .. ``limit_s``, 3 significant digits.

    Raises ValueError when ``limit_s`` is not a finite number > 0.
    """
    return _hdrh(HdrHistogram(HIST_MIN_US, limit_us(limit_s), HIST_DIGITS))


def record_seconds(hist: Histogram, seconds: npt.ArrayLike) -> int:
    """Record latencies given in seconds (NaN ignored); returns how many were above the range.

    Those are NOT recorded (never folded into the top bucket): the caller reports them. A
    negative latency (a frame sent up to ~1 ms early by uvloop's 1 ms timers and answered
    before its schedule) is recorded as 0, the true floor of a latency.
    """
    s = np.asarray(seconds, dtype=np.float64)
    s = s[~np.isnan(s)]
    us = np.maximum(np.rint(s * 1e6), 0)
    inside = us <= hist.highest_trackable_value
    record_us(hist, us[inside].astype(np.int64))
    return int(us.size - np.count_nonzero(inside))


def record_us(hist: Histogram, values: npt.NDArray[np.int64]) -> None:
    """Record integer microsecond ``values`` (all within the histogram's range) in bulk.

    The same counts, total, min and max as ``hist.record_value`` once per value (hdrh's own
    index formula: bucket = bit length of ``v | sub_bucket_mask`` - unit magnitude - sub-bucket
    half-count magnitude - 1; sub-bucket = ``v >> (bucket + unit magnitude)``; index =
    ``(bucket + 1) << half-count magnitude`` + sub-bucket - half count), computed in numpy:
    hdrh's per-value Python path cost ~8 us a value, the end-of-run analysis's largest part
    (issue 23; tests/harness/test_hdr.py checks it value for value against ``record_value``).
    """
    if not values.size:
        return
    v = np.asarray(values, dtype=np.int64)
    mask = (hist.sub_bucket_count - 1) << hist.unit_magnitude
    # frexp's exponent of a positive integer below 2**53 is its exact bit length.
    bit_length = np.frexp((v | mask).astype(np.float64))[1].astype(np.int64)
    bucket = bit_length - hist.unit_magnitude - (hist.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + hist.unit_magnitude)
    index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + (
        sub_bucket - hist.sub_bucket_half_count
    )
    where, count = np.unique(index, return_counts=True)
    if where[0] < 0 or where[-1] >= hist.counts_len:
        raise ValueError("record_us: a value outside the histogram's range")
    counts = np.ctypeslib.as_array(hist.counts)
    np.add.at(counts, where, count.astype(counts.dtype))
    hist.total_count += int(v.size)
    hist.min_value = min(hist.min_value, int(v.min()))
    hist.max_value = max(hist.max_value, int(v.max()))


def histogram_of(seconds: npt.ArrayLike, limit_s: float | None = None) -> Histogram:
    """Histogram (us) of latencies in seconds (NaNs ignored).

    ``limit_s``: the run's latency limit; values above it are left out, as in the run's own
    histograms. None: the range is sized to hold every value (ad-hoc percentiles of a slice),
    so nothing is ever dropped.
    """
    s = np.asarray(seconds, dtype=np.float64)
    s = s[~np.isnan(s)]
    if limit_s is None:
        limit_s = max(float(s.max()) if s.size else 0.0, 1e-3)
    hist = new_histogram(limit_s)
    record_seconds(hist, s)
    return hist


def merge(hists: Iterable[Histogram], limit_s: float | None = None) -> Histogram:
    """One histogram holding every value of ``hists`` (none of them is changed).

    ``limit_s`` None: the widest range among them (5 s when there are none).
    """
    hs = list(hists)
    if limit_s is None:
        top = max((h.highest_trackable_value for h in hs), default=limit_us(5.0))
        limit_s = top / 1e6
    out = new_histogram(limit_s)
    for h in hs:
        out.add(h)
    return out


def rank(p: float, total: int) -> int:
    """THE rank rule: the count rank of percentile ``p`` (0-100) among ``total`` values."""
    # Multiply before dividing, exactly as hdrh does: p/100*N rounds differently at p99.99.
    return max(int(min(p, 100.0) * total / 100 + 0.5), 1)


def ranks(p: float, totals: Floats) -> Floats:
    """``rank`` vectorised over an array of totals (float array of ranks)."""
    return np.maximum(np.floor(min(p, 100.0) * totals / 100 + 0.5), 1.0)


def buckets(hist: Histogram, highest: bool = False) -> tuple[Floats, Floats]:
    """(values in us, counts) of the non-empty buckets: each bucket's median equivalent value,
    or its highest equivalent one (what a percentile reports) with ``highest``. Float arrays.

    Same bucket arithmetic as ``HdrHistogram.get_value_from_index``.
    """
    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len]
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


def percentiles_us(hist: Histogram, percentiles: Sequence[float]) -> list[float | None]:
    """Values (us) at ``percentiles`` (0-100) by the module's rank rule; None when empty."""
    values, counts = buckets(hist, highest=True)
    total = int(counts.sum())
    if total == 0:
        return [None] * len(percentiles)
    cum = np.cumsum(counts)
    return [
        float(values[min(int(np.searchsorted(cum, rank(p, total))), values.size - 1)])
        for p in percentiles
    ]


def mean_us(hist: Histogram) -> float | None:
    """Mean (us) of a histogram (hdrh's ``get_mean_value``, ~50x faster); None when empty."""
    values, counts = buckets(hist)
    total = counts.sum()
    return float((values * counts).sum() / total) if total else None


def percentile_ms(hist: Histogram, p: float) -> float | None:
    """The value (ms) at percentile ``p``; None when empty."""
    (value,) = percentiles_us(hist, [p])
    return None if value is None else value / US_PER_MS


def latency_summary(hist: Histogram) -> dict[str, float | int | None]:
    """p50/p90/p95/p99/p999/max/mean (ms) and count of a histogram; None values when empty."""
    count = int(hist.get_total_count())
    if count == 0:
        return {**dict.fromkeys(LATENCY_KEYS[:-1]), "count": 0}
    values = percentiles_us(hist, list(PERCENTILES.values()))
    out: dict[str, float | int | None] = {
        k: None if v is None else v / US_PER_MS for k, v in zip(PERCENTILES, values, strict=True)
    }
    out["max"] = hist.get_max_value() / US_PER_MS
    mean = mean_us(hist)
    out["mean"] = None if mean is None else mean / US_PER_MS
    out["count"] = count
    return out


def percentiles_of(
    seconds: npt.ArrayLike, keys: tuple[str, ...] = ("p50", "p95", "p99")
) -> dict[str, float | None]:
    """Selected summary percentiles (ms) of latencies in seconds; None values when empty."""
    values = percentiles_us(histogram_of(seconds), [PERCENTILES[k] for k in keys])
    return {k: None if v is None else v / US_PER_MS for k, v in zip(keys, values, strict=True)}


def percentile_curve(hist: Histogram) -> list[list[float]]:
    """[[percentile, ms], ...] at ``PERCENTILE_CURVE`` for the report's percentile plot."""
    values = percentiles_us(hist, PERCENTILE_CURVE)
    return [
        [p, v / US_PER_MS] for p, v in zip(PERCENTILE_CURVE, values, strict=True) if v is not None
    ]


def encode(hist: Histogram | None) -> str | None:
    """HdrHistogram base64 text (``HISTFAAA...``, microseconds); None for empty or missing."""
    if hist is None or hist.get_total_count() == 0:
        return None
    raw = hist.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def decode(text: str | bytes, unit: str | None = UNIT) -> Histogram:
    """A histogram from ``encode``'s text. ``unit``: the document's stated unit (None: a
    version-1 document, which always recorded microseconds). Raises ValueError for another unit
    or text that is not an encoded histogram."""
    if unit not in (None, UNIT):
        raise ValueError(f"histogram unit {unit!r} is not supported (expected {UNIT!r})")
    raw = text.encode("ascii") if isinstance(text, str) else text
    try:
        hist = HdrHistogram.decode(raw)
    except Exception as exc:  # hdrh raises assorted errors for corrupt input
        raise ValueError(f"not an encoded HdrHistogram: {exc}") from exc
    if hist is None:
        raise ValueError("not an encoded HdrHistogram")
    return _hdrh(hist)


def stack(hists: Sequence[Histogram | None], highest: bool = True) -> tuple[Floats, Floats]:
    """(grid of bucket values in us (G,), counts (W, G)) of W histograms on one value grid, for
    resampling: a merged histogram of weighted windows is ``weights @ counts``. None -> a row
    of zeros. Values are highest-equivalent (what percentiles report) with ``highest``, else
    median-equivalent (what means use)."""
    decoded = [buckets(h, highest=highest) if h is not None else None for h in hists]
    parts = [v for d in decoded if d is not None for v in [d[0]]]
    grid = np.unique(np.concatenate(parts)) if parts else np.zeros(0)
    mat = np.zeros((len(decoded), grid.size), dtype=np.float64)
    for i, d in enumerate(decoded):
        if d is not None:
            mat[i, np.searchsorted(grid, d[0])] = d[1]
    return grid, mat


def stacked_percentiles(grid: Floats, counts: Floats, p: float) -> Floats:
    """Value (us) at percentile ``p`` of each row of ``counts`` (R, G) over ``grid``, by the
    module's rank rule; NaN for an empty row."""
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1] if cum.shape[1] else np.zeros(cum.shape[0])
    pos = np.argmax(cum >= ranks(p, total)[:, None], axis=1) if grid.size else None
    out = np.full(counts.shape[0], np.nan)
    if pos is not None:
        ok = total > 0
        out[ok] = grid[pos[ok]]
    return out


def stacked_means(grid_mid: Floats, counts: Floats) -> Floats:
    """Mean (us) of each row of ``counts`` over bucket values ``grid_mid``; NaN when empty."""
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (counts @ grid_mid) / np.where(total > 0, total, 1), np.nan)
