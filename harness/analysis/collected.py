"""Read the collectors' per-second samples onto the run's 1-s windows.

``collectors`` given to :func:`harness.analysis.summary.summarize` is
``{"series": CollectorSet.series(), "gpu": {"present", "reason", "name"}}``. Each series entry is
``name -> {"t": [...], field: [...] | {sub: [...]}}``; nested fields are flattened to dotted names
(``cpu_percent.backend``) so this module reads either shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def flatten(entry: Mapping[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """``{"a": {"b": [..]}}`` -> ``{"a.b": [..]}`` (lists kept, scalars dropped)."""
    out: dict[str, list[Any]] = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = list(value)
    return out


def on_windows(t: list[float], values: list[Any], n_windows: int) -> list[float | None]:
    """Mean of the samples whose time falls in each 1-s window (None where none)."""
    sums = [0.0] * n_windows
    counts = [0] * n_windows
    for ti, v in zip(t, values, strict=False):
        if v is None or ti is None or not isinstance(v, int | float):
            continue
        if isinstance(v, float) and math.isnan(v):
            continue
        w = math.floor(ti)
        if 0 <= w < n_windows:
            sums[w] += float(v)
            counts[w] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


def _numbers(values: list[Any]) -> list[float]:
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v))
    ]


def process_stats(
    series: Mapping[str, Any], n_windows: int, t_lo: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(summary.cpu, series.cpu_percent, series.rss_mb) from the process collector's samples."""
    cpu_summary: dict[str, Any] = {}
    cpu_series: dict[str, list[float | None]] = {}
    rss_series: dict[str, list[float | None]] = {}
    for name, entry in series.items():
        if not isinstance(entry, Mapping) or "t" not in entry:
            continue
        if not ({"cpu_percent", "rss_mb"} & set(entry)):
            continue  # only process samplers; Prometheus entries also carry "cpu" counters
        flat = flatten({k: v for k, v in entry.items() if k in ("cpu_percent", "rss_mb")})
        t = list(entry["t"])
        for key, values in flat.items():
            parts = key.split(".")
            if len(parts) != 2:
                continue
            a, b = parts
            if "cpu" in a:
                comp, kind = b, "cpu"
            elif "cpu" in b:
                comp, kind = a, "cpu"
            elif "rss" in a:
                comp, kind = b, "rss"
            elif "rss" in b:
                comp, kind = a, "rss"
            else:
                continue
            measured = _numbers([v for ti, v in zip(t, values, strict=False) if ti >= t_lo])
            slot = cpu_summary.setdefault(
                comp, {"mean_percent": None, "max_percent": None, "rss_mb_max": None}
            )
            if kind == "cpu":
                cpu_series[comp] = on_windows(t, values, n_windows)
                if measured:
                    slot["mean_percent"] = sum(measured) / len(measured)
                    slot["max_percent"] = max(measured)
            else:
                rss_series[comp] = on_windows(t, values, n_windows)
                if measured:
                    slot["rss_mb_max"] = max(measured)
        del name
    return cpu_summary, cpu_series, rss_series


def gpu_stats(
    collectors: Mapping[str, Any], n_windows: int, t_lo: float
) -> tuple[dict[str, Any], list[float | None] | None, list[float | None] | None]:
    """(summary.gpu, series.gpu_util, series.gpu_mem_mb); explicit absence, never fake zeros."""
    info = dict(collectors.get("gpu") or {})
    present = bool(info.get("present"))
    summary: dict[str, Any] = {
        "present": present,
        "reason": info.get("reason") if not present else None,
        "util_mean": None,
        "util_p95": None,
        "memory_used_mb_max": None,
        "name": info.get("name"),
    }
    if not present:
        summary["reason"] = summary["reason"] or "no GPU collector ran"
        return summary, None, None
    entry = (collectors.get("series") or {}).get("gpu") or {}
    t = list(entry.get("t", []))
    util = list(entry.get("util_percent") or entry.get("util") or [])
    mem = list(entry.get("mem_used_mb") or entry.get("mem_mb") or [])
    given = (collectors.get("summaries") or {}).get("gpu")
    if isinstance(given, Mapping):
        summary.update({k: given.get(k) for k in summary if k in given})
        summary["present"], summary["reason"] = True, None
        return summary, on_windows(t, util, n_windows), on_windows(t, mem, n_windows)
    util_m = sorted(_numbers([v for ti, v in zip(t, util, strict=False) if ti >= t_lo]))
    mem_m = _numbers([v for ti, v in zip(t, mem, strict=False) if ti >= t_lo])
    if util_m:
        summary["util_mean"] = sum(util_m) / len(util_m)
        summary["util_p95"] = util_m[min(len(util_m) - 1, math.ceil(0.95 * len(util_m)) - 1)]
    if mem_m:
        summary["memory_used_mb_max"] = max(mem_m)
    return summary, on_windows(t, util, n_windows), on_windows(t, mem, n_windows)


# summary.torchserve's time figures, all request-weighted means in ms (what each covers:
# harness/collectors/prometheus.py and docs/RESULTS.md).
TS_TIME_KEYS = ("queue_ms_mean", "handler_ms_mean", "model_ms_mean", "end_to_end_ms_mean")
# series key -> the PrometheusCollector column it is read from.
TS_SERIES = {
    "ts_queue_ms": "queue_ms_mean",
    "ts_handler_ms": "handler_ms_mean",
    "ts_end_to_end_ms": "end_to_end_ms_mean",
    "ts_batch_size_mean": "batch_size_mean",
}


def torchserve_stats(
    collectors: Mapping[str, Any], n_windows: int, t_lo: float
) -> tuple[dict[str, Any] | None, dict[str, list[float | None]]]:
    """(summary.torchserve or None, {ts_queue_ms, ts_handler_ms, ts_end_to_end_ms,
    ts_batch_size_mean}).

    The summary prefers the PrometheusCollector's own request-weighted ``summary()`` (given as
    ``collectors["summaries"]["torchserve"]``); else it averages the per-window means.
    """
    entry = (collectors.get("series") or {}).get("torchserve")
    if not isinstance(entry, Mapping) or "t" not in entry:
        return None, {k: [None] * n_windows for k in TS_SERIES}
    t = list(entry["t"])

    def column(name: str) -> list[Any]:
        values = entry.get(name)
        return list(values) if isinstance(values, list | tuple) else []

    def mean_after(values: list[Any]) -> float | None:
        nums = _numbers([v for ti, v in zip(t, values, strict=False) if ti >= t_lo])
        return sum(nums) / len(nums) if nums else None

    given = (collectors.get("summaries") or {}).get("torchserve")
    if isinstance(given, Mapping):
        summary = {
            k: given.get(k)
            for k in (
                "batch_size_mean", "batch_size_hist", *TS_TIME_KEYS, "requests", "replicas",
                "requests_by_replica",
            )
        }  # fmt: skip
    else:
        requests = _numbers([v for ti, v in zip(t, column("requests"), strict=False) if ti >= t_lo])
        summary = {
            "batch_size_mean": mean_after(column("batch_size_mean")),
            "batch_size_hist": None,
            **{k: mean_after(column(k)) for k in TS_TIME_KEYS},
            "requests": sum(requests) if requests else None,
        }
    return summary, {key: on_windows(t, column(col), n_windows) for key, col in TS_SERIES.items()}
