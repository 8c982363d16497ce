"""Baseline comparison: relative change of every summary metric, statistics for latencies.

The rule (documented, Kayenta-like, conservative on a noisy shared machine). For a latency metric
(frame/inference p50, p90, p95, p99, p999) of the run vs the baseline:

1. Mann-Whitney U (two-sided) over the per-1-s-window values of the matching series
   (p50 -> ``*_p50_ms``, p95 -> ``frame_p95_ms``, p90/p99/p999 -> ``*_p99_ms``), warm-up excluded;
2. a bootstrap 95 % confidence interval of the metric for each run: the measured windows'
   HdrHistograms are resampled with replacement (fixed seed, 1,000 resamples) and merged, and the
   percentile is read from each merged histogram (falls back to the median of per-window values
   when the per-window histograms are absent);
3. verdict ``worse`` (``better``) only when p < 0.01 AND the two intervals do not overlap AND the
   relative change exceeds 5 % in the bad (good) direction; otherwise ``no significant change``.
   Fewer than 3 measured windows on either side: ``n/a``.

Other metrics with a known direction (throughput, errors, lost/late frames, accuracy, means, CPU)
get a ``threshold`` verdict: worse/better when the change exceeds 10 % (for counts of bad
events, any increase from 0 is worse). Metrics without a direction are ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from .frames import hdr_nonzero

ALPHA = 0.01
PRACTICAL_CHANGE = 0.05
THRESHOLD_CHANGE = 0.10
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261128
MIN_WINDOWS = 3

_PCT = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_SERIES = {
    ("frame", "p50"): "frame_p50_ms",
    ("frame", "p90"): "frame_p95_ms",
    ("frame", "p95"): "frame_p95_ms",
    ("frame", "p99"): "frame_p99_ms",
    ("frame", "p999"): "frame_p99_ms",
    ("inference", "p50"): "inference_p50_ms",
    ("inference", "p90"): "inference_p99_ms",
    ("inference", "p95"): "inference_p99_ms",
    ("inference", "p99"): "inference_p99_ms",
    ("inference", "p999"): "inference_p99_ms",
}
_BAD_COUNTS = ("errors.", "frames.lost", "frames.late", "frames.errored")
_LOWER = ("latency", "_ms", "errors.", "frames.lost", "frames.late", "frames.errored",
          "late_share", "cpu.", "rss", "cpu_percent", "memory")  # fmt: skip
_HIGHER = ("throughput.", "accuracy", "frames.answered")
_PROVENANCE_KEYS = ("cpu_model", "cpu_count", "gpu", "python", "os")
_PACKAGES = ("torch", "torchserve", "fastapi", "uvicorn", "websockets", "numpy")


def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float | None]:
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


def better_when(metric: str) -> str | None:
    """ "lower", "higher" or None for a dotted summary metric."""
    if metric.startswith("throughput."):
        return "higher"
    if metric.endswith(".count") or metric in ("sessions", "fps") or metric.endswith("_s"):
        return None
    if metric.startswith("served_by") or metric.startswith("model_versions"):
        return None
    if metric.startswith("gpu.util") or metric.startswith("torchserve.batch_size"):
        return None
    if any(h in metric for h in _HIGHER):
        return "higher"
    if any(h in metric for h in _LOWER):
        return "lower"
    return None


def _measured(series: Mapping[str, Any], key: str) -> list[float]:
    values = series.get(key) or []
    warm = series.get("warmup") or [False] * len(values)
    return [
        float(v)
        for v, w in zip(values, warm, strict=False)
        if v is not None and not w and not (isinstance(v, float) and math.isnan(v))
    ]


def _window_matrix(
    encoded: list[str | None], warm: list[bool]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(grid of values in us, (W, V) counts) of the measured windows' histograms."""
    decoded: list[tuple[np.ndarray, np.ndarray]] = []
    for enc, w in zip(encoded, warm, strict=False):
        if enc is None or w:
            continue
        hist = HdrHistogram.decode(enc.encode("ascii") if isinstance(enc, str) else enc)
        decoded.append(hdr_nonzero(hist, highest=True))
    if len(decoded) < MIN_WINDOWS:
        return None
    grid = np.unique(np.concatenate([v for v, _ in decoded]))
    mat = np.zeros((len(decoded), grid.size), dtype=np.float64)
    for i, (values, counts) in enumerate(decoded):
        mat[i, np.searchsorted(grid, values)] = counts
    return grid, mat


def bootstrap_ci(
    doc: Mapping[str, Any], family: str, pct: float, series_key: str
) -> tuple[float, float] | None:
    """Bootstrap 95 % interval (ms) of a latency percentile of one run, or None."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    series = doc.get("series") or {}
    windows = ((doc.get("histograms") or {}).get("windows") or {}).get(family)
    warm = list(series.get("warmup") or [])
    if windows:
        warm = warm + [False] * (len(windows) - len(warm))
        packed = _window_matrix(windows, warm)
        if packed is not None:
            grid, mat = packed
            w = mat.shape[0]
            idx = rng.integers(0, w, size=(BOOTSTRAP_RESAMPLES, w))
            flat = (idx + np.arange(BOOTSTRAP_RESAMPLES)[:, None] * w).ravel()
            weights = np.bincount(flat, minlength=BOOTSTRAP_RESAMPLES * w).reshape(
                BOOTSTRAP_RESAMPLES, w
            )
            merged = weights @ mat
            cum = np.cumsum(merged, axis=1)
            total = cum[:, -1]
            rank = np.maximum(np.ceil(pct / 100.0 * total), 1)
            pos = np.argmax(cum >= rank[:, None], axis=1)
            values = grid[pos] / 1000.0
            lo, hi = np.percentile(values, [2.5, 97.5])
            return float(lo), float(hi)
    values_w = np.asarray(_measured(series, series_key))
    if values_w.size < MIN_WINDOWS:
        return None
    boots = np.median(
        values_w[rng.integers(0, values_w.size, size=(BOOTSTRAP_RESAMPLES, values_w.size))],
        axis=1,
    )
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(lo), float(hi)


def _relative(run: float | None, base: float | None) -> float | None:
    if run is None or base is None:
        return None
    if base == 0:
        return 0.0 if run == 0 else math.copysign(math.inf, run)
    return (run - base) / abs(base)


def _latency_verdict(
    results: Mapping[str, Any], baseline: Mapping[str, Any], metric: str, change: float | None
) -> dict[str, Any]:
    family, _, key = metric.split(".")
    series_key = _SERIES[(family, key)]
    run_w = _measured(results.get("series") or {}, series_key)
    base_w = _measured(baseline.get("series") or {}, series_key)
    out: dict[str, Any] = {"method": "mann-whitney+bootstrap", "p_value": None,
                           "ci_run": None, "ci_baseline": None}  # fmt: skip
    if len(run_w) < MIN_WINDOWS or len(base_w) < MIN_WINDOWS or change is None:
        out["verdict"] = "n/a"
        out["note"] = f"fewer than {MIN_WINDOWS} measured windows with {series_key}"
        return out
    # scipy.stats costs seconds to import: only pay for it when a comparison is made.
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(run_w, base_w, alternative="two-sided").pvalue)
    ci_run = bootstrap_ci(results, family, _PCT[key], series_key)
    ci_base = bootstrap_ci(baseline, family, _PCT[key], series_key)
    out.update(p_value=p, ci_run=list(ci_run) if ci_run else None,
               ci_baseline=list(ci_base) if ci_base else None)  # fmt: skip
    disjoint = bool(ci_run and ci_base and (ci_run[0] > ci_base[1] or ci_run[1] < ci_base[0]))
    significant = p < ALPHA and disjoint
    if significant and change > PRACTICAL_CHANGE:
        out["verdict"] = "worse"
    elif significant and change < -PRACTICAL_CHANGE:
        out["verdict"] = "better"
    else:
        out["verdict"] = "no significant change"
    return out


def _threshold_verdict(metric: str, run: float | None, base: float | None, direction: str) -> str:
    if run is None or base is None:
        return "n/a"
    if base == 0:
        if run == 0:
            return "no significant change"
        bad_up = direction == "lower"
        return "worse" if (run > 0) == bad_up else "better"
    change = (run - base) / abs(base)
    worse = change > THRESHOLD_CHANGE if direction == "lower" else change < -THRESHOLD_CHANGE
    better = change < -THRESHOLD_CHANGE if direction == "lower" else change > THRESHOLD_CHANGE
    if any(metric.startswith(b) for b in _BAD_COUNTS) and run > base and direction == "lower":
        worse = worse or base == 0
    return "worse" if worse else "better" if better else "no significant change"


def environment_warnings(run_prov: Mapping[str, Any], base_prov: Mapping[str, Any]) -> list[str]:
    """One line per provenance field that differs between the two runs."""
    warnings = []
    for key in _PROVENANCE_KEYS:
        if run_prov.get(key) != base_prov.get(key):
            warnings.append(
                f"{key} differs: run {run_prov.get(key)!r} vs baseline {base_prov.get(key)!r}"
            )
    run_pk, base_pk = run_prov.get("packages") or {}, base_prov.get("packages") or {}
    for pkg in _PACKAGES:
        if run_pk.get(pkg) != base_pk.get(pkg):
            warnings.append(
                f"package {pkg} differs: run {run_pk.get(pkg)!r} vs baseline {base_pk.get(pkg)!r}"
            )
    return warnings


def compare(results: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The ``comparison`` block of results.json: ``results`` (the run) against ``baseline``."""
    run_flat = flatten_numbers(results.get("summary") or {})
    base_flat = flatten_numbers(baseline.get("summary") or {})
    metrics = []
    for metric in [*run_flat, *(m for m in base_flat if m not in run_flat)]:
        run, base = run_flat.get(metric), base_flat.get(metric)
        change = _relative(run, base)
        direction = better_when(metric)
        entry: dict[str, Any] = {
            "metric": metric,
            "run": run,
            "baseline": base,
            "change": None if change is None or math.isinf(change) else change,
            "better_when": direction,
            "verdict": "n/a",
            "method": None,
            "p_value": None,
            "ci_run": None,
            "ci_baseline": None,
        }
        parts = metric.split(".")
        if len(parts) == 3 and parts[1] == "latency_ms" and (parts[0], parts[2]) in _SERIES:
            entry.update(_latency_verdict(results, baseline, metric, change))
        elif direction is not None:
            entry["method"] = "threshold"
            entry["verdict"] = _threshold_verdict(metric, run, base, direction)
        metrics.append(entry)
    warnings = environment_warnings(
        results.get("provenance") or {}, baseline.get("provenance") or {}
    )
    return {
        "baseline_run_id": baseline.get("run_id"),
        "baseline_name": baseline.get("name"),
        "environment_differs": bool(warnings),
        "warnings": warnings,
        "rule": (
            f"latency: Mann-Whitney U p<{ALPHA} over per-window values AND disjoint bootstrap 95% "
            f"CIs AND |change|>{PRACTICAL_CHANGE:.0%}; others: |change|>{THRESHOLD_CHANGE:.0%}"
        ),
        "metrics": metrics,
    }
