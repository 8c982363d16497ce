"""summary, series and histograms of results.json (docs/RESULTS.md) from a LoadResult.

Percentiles come from HdrHistograms (``hdr``; the measured window for the summary, one per 1-s
window for the series), all of one population: frame latency as ``frames`` defines it
(answered without an error reply), so the whole-run figure, the series and a comparison's
intervals describe the same frames. ``errors.total`` = error replies + lost frames (no reply:
never sent, send failure, dead session, or timed out) + session disconnects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import harness.hdr as hdr
from harness.results.model import fallback_share

from . import frames as fr
from .collected import gpu_stats, process_stats, torchserve_stats
from .drift import latency_drift, process_drift
from .faults import analyze_faults, run_end_of, stall_summary
from .traffic import traffic_summary


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
    hists = fr.histograms(load)
    cols = fr.columns(load)
    windows = fr.windows(load)
    n_windows = len(windows)
    counts = fr.counts(load)
    by_code = fr.errors_by_code(load)
    served = fr.served_by_counts(load)
    fallback = fr.fallback_counts(load)
    acc = fr.accuracy(load)

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
        "sessions": wl.sessions if wl.sessions is not None else traffic.started,
        # Sessions started/ended/refused, lifetimes and connect/close cost (analysis.traffic).
        "traffic": traffic.model_dump(mode="json"),
        "fps": wl.fps,
        "frame": {
            "latency_ms": hdr.latency_summary(hists["frame_latency"]),
            "latency_uncorrected_ms": hdr.latency_summary(hists["frame_latency_uncorrected"]),
            # Replies slower than the run's limit: not in the histograms, so counted here.
            "latency_over_range": load.over_range(),
        },
        "inference": {"latency_ms": hdr.latency_summary(hists["inference_latency"])},
        # The longest a session waited for a reply (faults.stall_waits defines it).
        "stall": stall_summary(cols, run_end_of(cols, run_end), warmup),
        "non_inference": {"latency_ms": hdr.latency_summary(hists["non_inference_latency"])},
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
        # Fallback is a TorchServe-cohort figure: the old pipeline's local answers are not one.
        "fallback": {
            "share": fallback_share(
                fallback["fallbacks"], fallback["torchserve_cohort"], fallback["old_pipeline"]
            ),
            "count": fallback["fallbacks"],
            "torchserve_cohort": fallback["torchserve_cohort"],
            "old_pipeline": fallback["old_pipeline"],
        },
        "model_versions": fr.model_version_counts(load),
        "gpu": gpu_summary,
        "cpu": cpu_summary,
        "torchserve": ts_summary,
        # Leak gates: RSS/fd/thread slopes per component, frame p99 slope (analysis.drift).
        "memory": {
            k: v.model_dump(mode="json")
            for k, v in process_drift(collectors.get("series") or {}, warmup).items()
        },
        "drift": latency_drift(windows).model_dump(mode="json"),
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

    def per_window(family: str, p: float) -> list[float | None]:
        return fr.window_percentiles_ms(windows, family, p)

    series: dict[str, Any] = {
        "t": [w.t for w in windows],
        "warmup": [w.warmup for w in windows],
        "frame_p50_ms": per_window("frame", 50.0),
        "frame_p95_ms": per_window("frame", 95.0),
        "frame_p99_ms": per_window("frame", 99.0),
        "inference_p50_ms": per_window("inference", 50.0),
        "inference_p99_ms": per_window("inference", 99.0),
        "frames_per_s": [w.ok_replies for w in windows],
        "inferences_per_s": [w.inferences for w in windows],
        "errors": [w.errors + w.lost for w in windows],
        "served_local": [w.served_by.get("local", 0) for w in windows],
        "served_torchserve": [w.served_by.get("torchserve", 0) for w in windows],
        # Of served_local: the TorchServe cohort's local answers (the rest is the old pipeline).
        "served_fallback": [w.fallbacks for w in windows],
        "model_versions": [dict(w.model_versions) for w in windows],
        "cpu_percent": cpu_series,
        "rss_mb": rss_series,
        "gpu_util": gpu_util,
        "gpu_mem_mb": gpu_mem,
        **ts_series,
    }

    histograms: dict[str, Any] = {
        # Every encoded histogram below holds microseconds (hdr.UNIT).
        "unit": hdr.UNIT,
        "frame_latency": hdr.encode(hists["frame_latency"]),
        "frame_latency_uncorrected": hdr.encode(hists["frame_latency_uncorrected"]),
        "inference_latency": hdr.encode(hists["inference_latency"]),
        "percentile_curve": {
            "frame": hdr.percentile_curve(hists["frame_latency"]),
            "inference": hdr.percentile_curve(hists["inference_latency"]),
        },
        # Per-window HDRs (aligned with series.t): `compare` resamples them in blocks.
        "windows": {
            "frame": [hdr.encode(w.hist["frame_latency"]) for w in windows],
            "inference": [hdr.encode(w.hist["inference_latency"]) for w in windows],
        },
    }

    faults = analyze_faults(
        cols,
        events,
        scenario.stack.torchserve.model_version if scenario.stack.use_torchserve else None,
        run_end,
    )
    return summary, series, histograms, faults
