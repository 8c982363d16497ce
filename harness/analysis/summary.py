"""summary, series and histograms of results.json (docs/RESULTS.md) from a LoadResult.

Percentiles come from HdrHistograms (the measured window for the summary, one per 1-s window for
the series). ``errors.total`` = error replies + lost frames (no reply: never sent, send failure,
dead session, or timed out) + session disconnects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from .collected import gpu_stats, process_stats, torchserve_stats
from .faults import analyze_faults, run_end_of, stall_summary
from .frames import Columns, columns, hdr_mean, hdr_percentiles, histogram_of
from .traffic import traffic_summary

PERCENTILE_CURVE = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0)
LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "count")


def latency_summary(hist: HdrHistogram) -> dict[str, float | int | None]:
    """p50/p90/p95/p99/p999/max/mean (ms) and count of a microsecond HDR; None when empty."""
    count = hist.get_total_count()
    if count == 0:
        return {**dict.fromkeys(LATENCY_KEYS[:-1]), "count": 0}
    pct = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
    values = hdr_percentiles(hist, list(pct.values()))
    out: dict[str, float | int | None] = {
        k: v / 1000.0 for k, v in zip(pct, values, strict=True) if v is not None
    }
    out["max"] = hist.get_max_value() / 1000.0
    mean = hdr_mean(hist)
    out["mean"] = None if mean is None else mean / 1000.0
    out["count"] = count
    return out


def encode(hist: HdrHistogram | None) -> str | None:
    """HdrHistogram base64 text (``HISTFAAA...``), None for an empty or missing histogram."""
    if hist is None or hist.get_total_count() == 0:
        return None
    raw = hist.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def percentile_curve(hist: HdrHistogram) -> list[list[float]]:
    """[[percentile, ms], ...] for the report's percentile plot."""
    if hist.get_total_count() == 0:
        return []
    values = hdr_percentiles(hist, PERCENTILE_CURVE)
    return [[p, v / 1000.0] for p, v in zip(PERCENTILE_CURVE, values, strict=True) if v is not None]


def _windows(cols: Columns, duration: float, warmup: float, limit_s: float) -> list[dict[str, Any]]:
    """Per-1-s windows of SCHEDULED time from 0 to the run's end, with their HDRs.

    Computed here rather than with LoadResult.windows(): that one takes each window's mean
    through hdrh's slow iterator (~0.3 s per window).
    """
    t = cols.t_scheduled
    n = max(math.ceil(duration), int(np.nanmax(t)) + 1 if t.size else 0)
    which = np.floor(t).astype(np.int64)
    ok = cols.answered & ~cols.errored
    inference = ok & (cols.served_by != None)  # noqa: E711 - elementwise on an object array
    lat = cols.latency_s
    out = []
    for w in range(n):
        m = which == w
        frame_h = histogram_of(lat[m & ok], limit_s)
        inf_h = histogram_of(lat[m & inference], limit_s)
        served: dict[str, int] = {}
        versions: dict[str, int] = {}
        for label in cols.served_by[m & inference].tolist():
            served[label] = served.get(label, 0) + 1
        for label in cols.model_version[m & inference].tolist():
            if label is not None:
                versions[label] = versions.get(label, 0) + 1
        out.append(
            {
                "t": float(w),
                "warmup": w < warmup,
                "scheduled": int(np.count_nonzero(m)),
                "answered": int(np.count_nonzero(m & cols.answered)),
                "errors": int(np.count_nonzero(m & cols.errored)),
                "inferences": int(np.count_nonzero(m & inference)),
                "served_by": served,
                "model_versions": versions,
                "hist": {"frame_latency": frame_h, "inference_latency": inf_h},
                "frame_p50_ms": _pct(frame_h, 50.0),
                "frame_p95_ms": _pct(frame_h, 95.0),
                "frame_p99_ms": _pct(frame_h, 99.0),
                "inference_p50_ms": _pct(inf_h, 50.0),
                "inference_p99_ms": _pct(inf_h, 99.0),
            }
        )
    return out


def _pct(hist: HdrHistogram, p: float) -> float | None:
    (value,) = hdr_percentiles(hist, [p])
    return None if value is None else value / 1000.0


def _share(counts: Mapping[str, int], key: str) -> float | None:
    total = sum(counts.values())
    return counts.get(key, 0) / total if total else None


def summarize(
    load: Any,
    collectors: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    scenario: Any,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(summary, series, histograms, faults) of one run; see docs/RESULTS.md."""
    wl = scenario.workload
    # The load's own duration: shorter than the scenario's when the run was interrupted.
    duration, warmup = float(load.duration_s), float(wl.warmup_s)
    measured_s = max(duration - warmup, 1e-9)
    hists = load.histograms()
    cols = columns(load)
    windows = _windows(cols, duration, warmup, float(load.latency_limit_s))
    n_windows = len(windows)
    counts = load.counts()
    by_code = load.errors_by_code()
    served = load.served_by_counts()
    acc = load.accuracy()

    cpu_summary, cpu_series, rss_series = process_stats(
        collectors.get("series") or {}, n_windows, warmup
    )
    harness_cpu = (cpu_summary.get("harness") or {}).get("mean_percent")
    gpu_summary, gpu_util, gpu_mem = gpu_stats(collectors, n_windows, warmup)
    ts_summary, ts_series = torchserve_stats(collectors, n_windows, warmup)

    traffic = traffic_summary(getattr(load, "sessions", None) or [])
    error_replies = counts["errored"]
    run_end = max(duration, n_windows)
    summary: dict[str, Any] = {
        "duration_s": duration,
        "warmup_s": warmup,
        "measured_s": measured_s,
        "sessions": wl.sessions if wl.sessions is not None else traffic["started"],
        # Sessions started/ended/refused, lifetimes and connect/close cost (analysis.traffic).
        "traffic": traffic,
        "fps": wl.fps,
        "frame": {
            "latency_ms": latency_summary(hists["frame_latency"]),
            "latency_uncorrected_ms": latency_summary(hists["frame_latency_uncorrected"]),
            # Replies slower than the run's limit: not in the histograms, so counted here.
            "latency_over_range": load.over_range(),
        },
        "inference": {"latency_ms": latency_summary(hists["inference_latency"])},
        # The longest a session waited for a reply (faults.stall_waits defines it).
        "stall": stall_summary(cols, run_end_of(cols, run_end), warmup),
        "non_inference": {"latency_ms": latency_summary(hists["non_inference_latency"])},
        "throughput": {
            "frames_per_s": (counts["answered"] - error_replies) / measured_s,
            "inferences_per_s": counts["inferences"] / measured_s,
        },
        "frames": {
            k: counts[k] for k in ("scheduled", "sent", "answered", "late", "errored", "lost")
        },
        "errors": {
            "total": error_replies + counts["lost"] + int(load.disconnects),
            "error_replies": error_replies,
            "disconnects": int(load.disconnects),
            "send_failures": int(load.send_failures),
            "by_code": by_code,
        },
        "accuracy": acc["accuracy"],
        "accuracy_detail": {
            "correct": acc["correct"],
            "total": acc["total"],
            "by_served_by": acc["by_served_by"],
        },
        "served_by": {
            "local": _share(served, "local"),
            "torchserve": _share(served, "torchserve"),
            "counts": served,
        },
        "model_versions": load.model_version_counts(),
        "gpu": gpu_summary,
        "cpu": cpu_summary,
        "torchserve": ts_summary,
        "generator": {
            "late_share": float(load.generator_late_share),
            "late_threshold_ms": float(wl.late_threshold_ms),
            # With workload.engine locust the generator runs on the workers, not in this
            # process: the busiest worker's figure (per worker: results.json load.workers).
            "cpu_percent_mean": harness_cpu
            if harness_cpu is not None and not getattr(load, "distribution", None)
            else float(load.generator_cpu_percent),
            "cpu_saturated": bool(load.generator_cpu_saturated),
            # The system under test stopped reading: frames the generator could not send,
            # and when it went silent (None: it kept answering). See load.selfcheck.
            "unsent": int(load.unsent),
            "server_silent_from_s": load.silent_from_s,
        },
    }

    series: dict[str, Any] = {
        "t": [w["t"] for w in windows],
        "warmup": [bool(w["warmup"]) for w in windows],
        "frame_p50_ms": [w["frame_p50_ms"] for w in windows],
        "frame_p95_ms": [w["frame_p95_ms"] for w in windows],
        "frame_p99_ms": [w["frame_p99_ms"] for w in windows],
        "inference_p50_ms": [w["inference_p50_ms"] for w in windows],
        "inference_p99_ms": [w["inference_p99_ms"] for w in windows],
        "frames_per_s": [w["answered"] - w["errors"] for w in windows],
        "inferences_per_s": [w["inferences"] for w in windows],
        "errors": [w["errors"] + (w["scheduled"] - w["answered"]) for w in windows],
        "served_local": [w["served_by"].get("local", 0) for w in windows],
        "served_torchserve": [w["served_by"].get("torchserve", 0) for w in windows],
        "model_versions": [dict(w["model_versions"]) for w in windows],
        "cpu_percent": cpu_series,
        "rss_mb": rss_series,
        "gpu_util": gpu_util,
        "gpu_mem_mb": gpu_mem,
        **ts_series,
    }

    histograms: dict[str, Any] = {
        "frame_latency": encode(hists["frame_latency"]),
        "frame_latency_uncorrected": encode(hists["frame_latency_uncorrected"]),
        "inference_latency": encode(hists["inference_latency"]),
        "percentile_curve": {
            "frame": percentile_curve(hists["frame_latency"]),
            "inference": percentile_curve(hists["inference_latency"]),
        },
        # Per-window HDRs (aligned with series.t) let `compare` bootstrap p95/p99 intervals.
        "windows": {
            "frame": [encode(w["hist"]["frame_latency"]) for w in windows],
            "inference": [encode(w["hist"]["inference_latency"]) for w in windows],
        },
    }

    faults = analyze_faults(
        cols,
        events,
        scenario.stack.torchserve.model_version if scenario.stack.use_torchserve else None,
        run_end,
    )
    return summary, series, histograms, faults


def clean_numbers(obj: Any) -> Any:
    """Replace NaN/inf by None recursively (JSON has no NaN; null means not measured)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): clean_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_numbers(v) for v in obj]
    return obj
