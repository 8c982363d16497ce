"""A results document's measured windows and summary, as a comparison reads them
(:mod:`harness.analysis.compare`): ``WindowSeries``, ``window_series``, ``summary_numbers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import harness.hdr as hdr
from harness.results.model import JUDGED_LATENCY_FAMILIES, JUDGED_RATES, Document

# The judged metrics are named once, in the results model (JUDGED_METRICS).
LATENCY_FAMILIES = JUDGED_LATENCY_FAMILIES
# Derived/summary rate metrics judged on a per-window series: metric -> series key.
RATE_SERIES = dict(zip(JUDGED_RATES, ("frames_per_s", "inferences_per_s", "errors"), strict=True))
# v1 documents without window histograms: the per-window series of a percentile, if stored.
_V1_SERIES = {
    ("frame", "p50"): "frame_p50_ms",
    ("frame", "p95"): "frame_p95_ms",
    ("frame", "p99"): "frame_p99_ms",
    ("inference", "p50"): "inference_p50_ms",
    ("inference", "p99"): "inference_p99_ms",
}


@dataclass
class WindowSeries:
    """One side's measured 1-s windows (warm-up excluded), in time order.

    ``latency``: family ("frame", "inference") -> one histogram per window (us, ``hdr``), None
    for a window without such a reply. ``rates``: metric name (``RATE_SERIES`` keys) -> one
    value per window (per second). ``percentile_series``: v1 fallback, (family, stat) -> per-
    window values (ms), used only when ``latency`` lacks the family.
    """

    latency: Mapping[str, Sequence[hdr.Histogram | None]] = field(default_factory=dict)
    rates: Mapping[str, Sequence[float]] = field(default_factory=dict)
    percentile_series: Mapping[tuple[str, str], Sequence[float]] = field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        """Number of windows (the longest of the series)."""
        lengths = [len(v) for v in (*self.latency.values(), *self.rates.values())]
        lengths += [len(v) for v in self.percentile_series.values()]
        return max(lengths, default=0)


def flatten_numbers(obj: object, prefix: str = "") -> dict[str, float | None]:
    """Dotted path -> number (or None) for every numeric/null leaf of a summary."""
    out: dict[str, float | None] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_numbers(v, f"{prefix}{k}."))
    elif obj is None:
        out[prefix[:-1]] = None
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, int | float):
        out[prefix[:-1]] = float(obj)
    return out


def summary_numbers(doc: Document) -> dict[str, float | None]:
    """A document's summary, flattened, with the derived rate rows (``errors.per_s``)."""
    summary = doc.get("summary") or {}
    flat = flatten_numbers(summary)
    measured = flat.get("measured_s")
    total = flat.get("errors.total")
    if measured and total is not None:
        flat["errors.per_s"] = total / measured
    return flat


def window_series(doc: Document) -> WindowSeries:
    """The measured windows of a results document (version 1 or 2)."""
    series = doc.get("series") or {}
    hists = doc.get("histograms") or {}
    unit = hists.get("unit")
    warm = [bool(w) for w in series.get("warmup") or []]
    windows = hists.get("windows") or {}
    latency: dict[str, list[hdr.Histogram | None]] = {}
    for family in LATENCY_FAMILIES:
        encoded = windows.get(family)
        if not encoded:
            continue
        flags = warm + [False] * (len(encoded) - len(warm))
        latency[family] = [
            hdr.decode(e, unit) if e else None
            for e, w in zip(encoded, flags, strict=False)
            if not w
        ]

    def measured(key: str) -> list[float]:
        values = series.get(key) or []
        flags = warm + [False] * (len(values) - len(warm))
        return [
            math.nan if v is None else float(v)
            for v, w in zip(values, flags, strict=False)
            if not w
        ]

    rates = {m: measured(k) for m, k in RATE_SERIES.items() if series.get(k)}
    pct = {key: measured(k) for key, k in _V1_SERIES.items() if series.get(k)}
    return WindowSeries(latency=latency, rates=rates, percentile_series=pct)


def never_measured(doc: Document) -> str | None:
    """Why a document cannot be compared (None: it can)."""
    summary = doc.get("summary")
    verdict = doc.get("verdict")
    if not isinstance(summary, Mapping) or not summary:
        return f"it has no summary (verdict {verdict!r}: the run never measured)"
    answered = (
        ((summary.get("frames") or {}).get("answered")) if isinstance(summary, Mapping) else None
    )
    latency = ((summary.get("frame") or {}).get("latency_ms") or {}).get("count")
    if not answered and not latency:
        return f"it measured no answered frames (verdict {verdict!r})"
    return None
