"""Whether two runs can be compared like for like, and how steady their data is: the warnings
of a comparison (:mod:`harness.analysis.compare`), each saying what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

import harness.hdr as hdr
from harness.analysis.windows import WindowSeries
from harness.results.model import Document

# Beyond this coefficient of variation of the per-window frame p50, say the run was unsteady.
NOISY_CV = 0.25
# A generator later than its threshold on this share of frames is near saturation.
GENERATOR_LATE_SHARE = 0.01

# The workload a comparison must share: the scenario's keys, else the summary's.
_WORKLOAD_KEYS: tuple[str, ...] = (
    "sessions",
    "stages",
    "arrivals",
    "fps",
    "duration_s",
    "warmup_s",
    "ramp_up_s",
)
_SUMMARY_WORKLOAD_KEYS: tuple[str, ...] = ("sessions", "fps", "duration_s", "warmup_s")
_PROVENANCE_KEYS = ("cpu_model", "cpu_count", "gpu", "python", "os")
_PACKAGES = ("torch", "torchserve", "fastapi", "uvicorn", "websockets", "numpy")


def environment_warnings(run_prov: Document, base_prov: Document) -> list[str]:
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


def workload_differences(run_doc: Document, base_doc: Document) -> list[str]:
    """One line per workload setting that differs (``key run vs baseline``): such runs are not
    like for like. The scenario's workload keys when both documents hold them, else the
    summary's (sessions, fps, duration, warm-up); the trace always."""
    out = []
    rw = (run_doc.get("scenario") or {}).get("workload")
    bw = (base_doc.get("scenario") or {}).get("workload")
    if isinstance(rw, Mapping) and isinstance(bw, Mapping):
        keys, rs, bs = _WORKLOAD_KEYS, rw, bw
    else:
        keys, rs, bs = (
            _SUMMARY_WORKLOAD_KEYS,
            run_doc.get("summary") or {},
            base_doc.get("summary") or {},
        )
    for key in keys:
        if rs.get(key) != bs.get(key):
            out.append(f"{key} {rs.get(key)!r} vs baseline {bs.get(key)!r}")
    rt = rw.get("trace") if isinstance(rw, Mapping) else None
    bt = bw.get("trace") if isinstance(bw, Mapping) else None
    if rt != bt:
        out.append(f"trace {rt!r} vs baseline {bt!r}")
    return out


def stability_warnings(doc: Document, series: WindowSeries, side: str) -> list[str]:
    """pyperf-style warnings about one side's data, each saying what to do."""
    out = []
    n = series.n_windows
    if n < 10:
        out.append(
            f"{side}: only {n} measured windows: intervals are wide and small changes cannot "
            "be seen; measure for at least 30 s (duration_s - warmup_s)"
        )
    frame = series.latency.get("frame")
    if frame:
        p50 = np.array(
            [hdr.percentile_ms(h, 50.0) if h is not None else math.nan for h in frame],
            dtype=np.float64,
        )
    else:
        p50 = np.asarray(series.percentile_series.get(("frame", "p50")) or [], dtype=np.float64)
    p50 = p50[np.isfinite(p50)]
    if p50.size >= 3 and p50.mean() > 0:
        cv = float(p50.std(ddof=1) / p50.mean())
        if cv > NOISY_CV:
            out.append(
                f"{side}: frame p50 varies {cv:.0%} from window to window: the machine was "
                "noisy or the system unsteady; check 'latency over time', quiet the machine, "
                "or repeat the runs (--repeat)"
            )
    summary = doc.get("summary") or {}
    count = ((summary.get("frame") or {}).get("latency_ms") or {}).get("count")
    if isinstance(count, int | float) and count < 10_000:
        out.append(
            f"{side}: {int(count)} frame replies: p99.9 needs >= 10,000 (p99 >= 1,000) to be "
            "read; run longer or judge lower percentiles"
        )
    gen = summary.get("generator") or {}
    late = gen.get("late_share")
    if gen.get("cpu_saturated") or (isinstance(late, int | float) and late > GENERATOR_LATE_SHARE):
        out.append(
            f"{side}: the load generator was near saturation (late share {late}, CPU "
            f"saturated {bool(gen.get('cpu_saturated'))}): its own delay is in the latencies; "
            "lower sessions or fps, or give the generator a core"
        )
    return out
