"""What a load run recorded: per-frame rows, HDR histograms (whole run and per 1-s window).

Latencies are recorded in microseconds into HdrHistograms (3 significant digits) whose range
is the run's own limit, ``latency_limit_s`` (the run's ``reply_timeout_s``): 0 .. limit. A
latency above the limit is never folded into the top bucket: it is left out of the histograms,
counted by ``LoadResult.over_range()`` and makes the run INVALID (``OVER_RANGE``), because
percentiles without it would understate the tail. ``percentiles_ms`` turns a histogram into the
summary's keys. Corrected latency is
``t_reply - t_scheduled`` (coordinated omission corrected, as wrk2); uncorrected is
``t_reply - t_sent``. A frame belongs to the 1-s window of its SCHEDULED time, and frames
scheduled before ``warmup_s`` are left out of the measured figures (kept in the windows,
flagged ``warmup``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

HIST_MIN_US = 1
HIST_DIGITS = 3
# The limit when a LoadResult is built without one: LoadConfig's default reply_timeout_s.
DEFAULT_LATENCY_LIMIT_S = 5.0

FRAME_DTYPE = np.dtype(
    [
        ("session", np.int32),
        ("frame_idx", np.int32),
        ("t_scheduled", np.float64),
        ("t_sent", np.float64),  # NaN: never sent
        ("t_reply", np.float64),  # NaN: no reply
        ("served_by", np.int16),  # codes into LoadResult.labels; -1 = None
        ("model_version", np.int16),
        ("prediction", np.int16),
        ("truth", np.int16),
        ("error_code", np.int16),
    ]
)


def limit_us(limit_s: float) -> int:
    """A latency limit in seconds as the histogram's highest trackable value (us, >= 2)."""
    if not math.isfinite(limit_s) or limit_s <= 0:
        raise ValueError(f"latency limit must be a finite number of seconds > 0, got {limit_s!r}")
    return max(math.ceil(limit_s * 1e6), 2 * HIST_MIN_US)


def new_histogram(limit_s: float) -> HdrHistogram:
    """An empty latency histogram in microseconds: 0 .. ``limit_s``, 3 significant digits."""
    return HdrHistogram(HIST_MIN_US, limit_us(limit_s), HIST_DIGITS)


def record_seconds(hist: HdrHistogram, seconds: np.ndarray) -> int:
    """Record latencies given in seconds; returns how many were above the histogram's range.

    Those are NOT recorded (never folded into the top bucket): the caller reports them. A
    negative latency (a frame sent up to ~1 ms early by uvloop's 1 ms timers and answered
    before its schedule) is recorded as 0, the true floor of a latency.
    """
    us = np.maximum(np.rint(seconds * 1e6), 0)
    inside = us <= hist.highest_trackable_value
    values, counts = np.unique(us[inside].astype(np.int64), return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(v, c)
    return int(us.size - np.count_nonzero(inside))


def _buckets(hist: HdrHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty buckets: (lowest equivalent value, bucket width, count), vectorised from
    hdrh's own index arithmetic (hdrh walks every bucket in Python, ~0.5 s per mean)."""
    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len].astype(np.int64)
    idx = np.flatnonzero(counts)
    half_mag = hist.sub_bucket_half_count_magnitude
    half = hist.sub_bucket_half_count
    bucket = (idx >> half_mag) - 1
    sub = (idx & (half - 1)) + half
    first = bucket < 0
    sub = np.where(first, sub - half, sub)
    bucket = np.where(first, 0, bucket)
    shift = bucket + hist.unit_magnitude
    return sub << shift, np.left_shift(1, shift), counts[idx]


def percentiles_ms(hist: HdrHistogram) -> dict[str, float | int | None]:
    """Summary keys p50/p90/p95/p99/p999/max/mean (ms) and count; None values when empty.

    Same values as hdrh's get_value_at_percentile (highest equivalent value of the bucket
    holding rank int(p/100 * total + 0.5)) and get_mean_value (median equivalent values).
    """
    count = hist.get_total_count()
    if count == 0:
        keys = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
        return {**dict.fromkeys(keys), "count": 0}
    low, width, counts = _buckets(hist)
    cum = np.cumsum(counts)
    highest = low + width - 1
    pct = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
    out: dict[str, float | int | None] = {}
    for key, p in pct.items():
        rank = max(int(p / 100.0 * count + 0.5), 1)
        out[key] = float(highest[min(int(np.searchsorted(cum, rank)), highest.size - 1)]) / 1000
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = float(((low + (width >> 1)) * counts).sum() / count) / 1000.0
    out["count"] = count
    return out


@dataclass
class FrameRecord:
    """One scheduled frame, decoded (times on the RunClock, seconds)."""

    session: int
    frame_idx: int
    t_scheduled: float
    t_sent: float | None
    t_reply: float | None
    served_by: str | None
    model_version: str | None
    prediction: str | None
    truth: str | None
    error_code: str | None


@dataclass
class LoadResult:
    """Everything a load run measured; ``frames`` is a FRAME_DTYPE array, codes in ``labels``."""

    frames: np.ndarray
    labels: list[str]
    fps: float
    duration_s: float
    warmup_s: float
    late_threshold_ms: float
    disconnects: int
    send_failures: int
    generator_late_share: float
    generator_cpu_percent: float
    generator_cpu_saturated: bool
    connect_failures: int = 0
    unmatched_replies: int = 0
    latency_limit_s: float = DEFAULT_LATENCY_LIMIT_S
    # Frames never sent because the server had not read the earlier ones (send buffer full),
    # and the run-clock time it went silent (None: it kept answering). See selfcheck.
    unsent: int = 0
    silent_from_s: float | None = None
    invalid_reasons: list[str] = field(default_factory=list)
    # Per-session lifetimes (harness.load.generator.session_record), in session order.
    sessions: list[dict[str, Any]] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def valid(self) -> bool:
        """False when the generator itself fell behind (see ``invalid_reasons``)."""
        return not self.invalid_reasons

    def label(self, code: int) -> str | None:
        """Decode a label code (-1 -> None)."""
        return None if code < 0 else self.labels[code]

    def records(self) -> Iterator[FrameRecord]:
        """Iterate decoded rows (slow path, for tests and small exports)."""
        for row in self.frames:
            yield FrameRecord(
                session=int(row["session"]),
                frame_idx=int(row["frame_idx"]),
                t_scheduled=float(row["t_scheduled"]),
                t_sent=None if math.isnan(row["t_sent"]) else float(row["t_sent"]),
                t_reply=None if math.isnan(row["t_reply"]) else float(row["t_reply"]),
                served_by=self.label(int(row["served_by"])),
                model_version=self.label(int(row["model_version"])),
                prediction=self.label(int(row["prediction"])),
                truth=self.label(int(row["truth"])),
                error_code=self.label(int(row["error_code"])),
            )

    # --- masks over the frame array -------------------------------------------------------
    def measured_mask(self) -> np.ndarray:
        """Frames scheduled in the measured window [warmup_s, duration_s)."""
        return self.frames["t_scheduled"] >= self.warmup_s

    def late_mask(self) -> np.ndarray:
        """Frames sent more than ``late_threshold_ms`` after their schedule."""
        f = self.frames
        with np.errstate(invalid="ignore"):
            return (f["t_sent"] - f["t_scheduled"]) > self.late_threshold_ms / 1000.0

    # --- aggregates over the measured window ---------------------------------------------
    def counts(self, mask: np.ndarray | None = None) -> dict[str, int]:
        """scheduled/sent/answered/late/errored/lost/inferences (measured window by default).

        ``answered`` includes error replies; ``lost`` = scheduled - answered (never sent, or
        no reply within reply_timeout_s after the last frame).
        """
        m = self.measured_mask() if mask is None else mask
        f = self.frames[m]
        answered = int(np.count_nonzero(~np.isnan(f["t_reply"])))
        return {
            "scheduled": int(f.size),
            "sent": int(np.count_nonzero(~np.isnan(f["t_sent"]))),
            "answered": answered,
            "late": int(np.count_nonzero(self.late_mask()[m])),
            "errored": int(np.count_nonzero(f["error_code"] >= 0)),
            "lost": int(f.size - answered),
            "inferences": int(np.count_nonzero(f["served_by"] >= 0)),
        }

    def errors_by_code(self, mask: np.ndarray | None = None) -> dict[str, int]:
        """Error replies per error code."""
        m = self.measured_mask() if mask is None else mask
        return self._tally(self.frames["error_code"][m])

    def served_by_counts(self, mask: np.ndarray | None = None) -> dict[str, int]:
        """Inference replies per ``served_by`` value ("local", "torchserve", ...)."""
        m = self.measured_mask() if mask is None else mask
        return self._tally(self.frames["served_by"][m])

    def model_version_counts(self, mask: np.ndarray | None = None) -> dict[str, int]:
        """Inference replies per ``model_version``."""
        m = self.measured_mask() if mask is None else mask
        return self._tally(self.frames["model_version"][m])

    def accuracy(self, mask: np.ndarray | None = None) -> dict[str, Any]:
        """Predictions against the trace's truth: inference replies with a prediction and truth.

        Returns ``{"accuracy": float | None, "correct", "total", "by_served_by": {name: acc}}``;
        accuracy is None when no judged prediction exists (no truth in the trace).
        """
        m = self.measured_mask() if mask is None else mask
        f = self.frames[m]
        judged = (f["prediction"] >= 0) & (f["truth"] >= 0)
        correct = judged & (f["prediction"] == f["truth"])
        by: dict[str, float | None] = {}
        for code in np.unique(f["served_by"][judged]).tolist():
            sel = judged & (f["served_by"] == code)
            n = int(np.count_nonzero(sel))
            by[self.labels[code] if code >= 0 else "none"] = (
                int(np.count_nonzero(correct & sel)) / n if n else None
            )
        total = int(np.count_nonzero(judged))
        n_correct = int(np.count_nonzero(correct))
        return {
            "accuracy": n_correct / total if total else None,
            "correct": n_correct,
            "total": total,
            "by_served_by": by,
        }

    def _tally(self, codes: np.ndarray) -> dict[str, int]:
        values, counts = np.unique(codes[codes >= 0], return_counts=True)
        return {
            self.labels[v]: int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)
        }

    def over_range(self, mask: np.ndarray | None = None) -> dict[str, float | int | None]:
        """Replies slower than ``latency_limit_s`` (measured window by default): ``count`` and
        the slowest one, ``max_ms`` (None when there is none). They are left out of the
        histograms, so the run reports them here and is INVALID when any exists."""
        m = self.measured_mask() if mask is None else mask
        f = self.frames[m]
        lat = f["t_reply"] - f["t_scheduled"]
        lat = lat[~np.isnan(lat)]
        over = lat[np.rint(lat * 1e6) > limit_us(self.latency_limit_s)]
        return {
            "count": int(over.size),
            "max_ms": float(over.max() * 1000.0) if over.size else None,
            "limit_ms": self.latency_limit_s * 1000.0,
        }

    # --- histograms ------------------------------------------------------------------------
    def histograms(self) -> dict[str, HdrHistogram]:
        """HDR histograms (us) over the measured window: ``frame_latency`` (corrected),
        ``frame_latency_uncorrected``, ``inference_latency`` (replies with served_by set) and
        ``non_inference_latency``. Values above ``latency_limit_s`` are not in them (see
        ``over_range()``).
        """
        if "hist" not in self._cache:
            self._cache["hist"] = self._histograms_for(self.measured_mask())
        return self._cache["hist"]

    def _histograms_for(
        self, mask: np.ndarray, non_inference: bool = True
    ) -> dict[str, HdrHistogram]:
        f = self.frames[mask]
        answered = ~np.isnan(f["t_reply"])
        inference = answered & (f["served_by"] >= 0)
        corrected = f["t_reply"] - f["t_scheduled"]
        uncorrected = f["t_reply"] - f["t_sent"]
        limit = self.latency_limit_s
        out = {
            "frame_latency": new_histogram(limit),
            "frame_latency_uncorrected": new_histogram(limit),
            "inference_latency": new_histogram(limit),
        }
        record_seconds(out["frame_latency"], corrected[answered])
        record_seconds(out["frame_latency_uncorrected"], uncorrected[answered])
        record_seconds(out["inference_latency"], corrected[inference])
        if non_inference:
            out["non_inference_latency"] = new_histogram(limit)
            record_seconds(out["non_inference_latency"], corrected[answered & ~inference])
        return out

    def windows(self) -> list[dict[str, Any]]:
        """Per-1-s windows of scheduled time, every window from 0 to the run's end.

        Each: ``t`` (window start, s), ``warmup`` (bool), the ``counts()`` keys, ``errors``
        (error replies), ``served_by`` and ``model_versions`` ({label: count}),
        ``hist`` (HdrHistograms ``frame_latency``, ``frame_latency_uncorrected``,
        ``inference_latency``; ~140 KB each, so a long run's windows weigh) and ready-made
        ``frame_p50_ms``/``frame_p95_ms``/``frame_p99_ms``/``inference_p50_ms``/
        ``inference_p99_ms`` (None when the window had no such reply).
        """
        if "windows" in self._cache:
            return self._cache["windows"]
        t_sched = self.frames["t_scheduled"]
        n_windows = max(math.ceil(self.duration_s), int(t_sched.max()) + 1 if t_sched.size else 0)
        which = np.floor(t_sched).astype(np.int64)
        out: list[dict[str, Any]] = []
        for w in range(n_windows):
            m = which == w
            hist = self._histograms_for(m, non_inference=False)
            counts = self.counts(m)
            frame = percentiles_ms(hist["frame_latency"])
            infer = percentiles_ms(hist["inference_latency"])
            out.append(
                {
                    "t": float(w),
                    "warmup": w < self.warmup_s,
                    **counts,
                    "errors": counts["errored"],
                    "served_by": self.served_by_counts(m),
                    "model_versions": self.model_version_counts(m),
                    "hist": hist,
                    "frame_p50_ms": frame["p50"],
                    "frame_p95_ms": frame["p95"],
                    "frame_p99_ms": frame["p99"],
                    "inference_p50_ms": infer["p50"],
                    "inference_p99_ms": infer["p99"],
                }
            )
        self._cache["windows"] = out
        return out
