"""Baseline comparison: which measured properties of the system under test changed, and by a
stated method, with the noise of this machine taken into account (pyperf's standard).

Public API (typed by the pydantic models below; ``Comparison.model_dump(mode="json")`` is the
``comparison`` block of results.json):

- ``compare(results, baseline) -> Comparison``: one run a side (the sample unit is the 1-s
  window, resampled in blocks);
- ``compare_runs(baseline, candidate) -> Comparison``: N runs a side (``--repeat N``; the
  sample unit is the run);
- ``compare_windows(baseline, candidate) -> Comparison``: two ``WindowSeries`` (per-window
  histograms and rates), no results document needed (cohorts inside one run);
- ``window_series(doc) -> WindowSeries``: a results document's measured windows.

The rule (``RULE``):

* **Which metrics get a verdict.** Only measured properties of the system under test:
  frame/inference latency p50, p90, p95, p99, p999 and mean; throughput (frames/s,
  inferences/s); the error rate (``errors.per_s``, a derived row); accuracy. Counts that scale
  with duration (``frames.answered``), configuration (``generator.late_threshold_ms``), the
  harness's own figures (generator, its CPU/RSS), maxima (one extreme value each) and figures
  without per-window data (uncorrected and non-inference latency, CPU/GPU/TorchServe
  resources) are shown with ``verdict = "not judged"`` and the reason in ``note``.
* **One run a side: circular block bootstrap over 1-s windows.** Adjacent windows are
  autocorrelated (a shared machine drifts), so treating them as independent makes p far too
  small. Each metric's own per-window series gives its lag-1 autocorrelation r (bias-corrected
  for short series; the larger of the two sides' plus its standard error 1/sqrt(n), so a noisy
  estimate cannot shorten the blocks); the blocks are b = ceil(tau) windows, tau = (1 + r)/(1 -
  r) the series' memory under an AR(1) model (1 for an uncorrelated series, at most n/3). Each
  latency percentile is read from the merged histogram of the resampled windows (each percentile
  on its own data: p90 from p90, p99.9 from p99.9); rates use the mean of the resampled windows;
  ``BOOTSTRAP_RESAMPLES`` resamples, fixed seed. A block bootstrap's variance is short by two
  known factors (it keeps correlation only inside a block, and it is a plug-in variance over n/b
  blocks); ``variance_correction`` restores both under the same AR(1) model. The change (of log
  values for latency, the difference for rates) is then tested with Student's t on n_run/b +
  n_base/b - 2 degrees of freedom (the independent blocks), and ``ci_run``/ ``ci_baseline`` are
  each side's 95 % t intervals from the same corrected variance.
* **N runs a side: the run is the sample.** Welch's t-test over the runs' whole-run values
  (log values for latency), as pyperf does.
* **Accuracy**: a two-proportion z-test of correct/judged predictions (frames are treated as
  independent: accuracy here is a property of the model on a fixed trace, not of timing).
* **Verdict**: ``worse``/``better`` when p < ``FAMILY_ALPHA`` / m (Bonferroni over the m
  metrics tested in this comparison, so the chance of any false alarm in a whole comparison
  stays <= 5 %) AND the change exceeds the practical threshold (``PRACTICAL_CHANGE`` relative;
  1 percentage point for accuracy); ``no significant change`` otherwise; ``too little data``
  (note says n) when a side has fewer than ``MIN_WINDOWS`` windows (``MIN_RUNS`` runs), fewer
  than ``MIN_BLOCKS`` blocks, or fewer than 10/(1-p) replies for percentile p.

Stability warnings (``Comparison.stability``), each saying what to do: window-to-window
variation, few windows, too few replies for a percentile, the load generator near saturation.
Differing workloads (sessions, fps, warm-up, trace) and environments go to ``warnings``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

import harness.hdr as hdr
from harness.hdr import Floats
from harness.results.model import (
    JUDGED_LATENCY_FAMILIES,
    JUDGED_LATENCY_STATS,
    JUDGED_RATES,
    Document,
)

FAMILY_ALPHA = 0.05
PRACTICAL_CHANGE = 0.05
ACCURACY_PRACTICAL = 0.01
BOOTSTRAP_RESAMPLES = 500
BOOTSTRAP_SEED = 20261128
MIN_WINDOWS = 5
MIN_BLOCKS = 3
MIN_RUNS = 3
# A change interval reaching past +50 % (or -25 %) cannot tell no change from a large one.
UNDECIDED_CHANGE = 0.5
# A block spans this many integrated autocorrelation times (block_length); the variance
# correction covers the correlation a block of one tau cuts, so longer blocks only cost power.
BLOCK_TAUS = 1.0
# Beyond this coefficient of variation of the per-window frame p50, say the run was unsteady.
NOISY_CV = 0.25
# A generator later than its threshold on this share of frames is near saturation.
GENERATOR_LATE_SHARE = 0.01

LATENCY_FAMILIES = JUDGED_LATENCY_FAMILIES
LATENCY_STATS = JUDGED_LATENCY_STATS
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
_WORKLOAD_KEYS = ("sessions", "fps", "warmup_s")
_PROVENANCE_KEYS = ("cpu_model", "cpu_count", "gpu", "python", "os")
_PACKAGES = ("torch", "torchserve", "fastapi", "uvicorn", "websockets", "numpy")

RULE = (
    "verdicts only for measured properties of the system under test (latency p50-p999/mean, "
    "throughput, error rate, accuracy); one run a side: circular block bootstrap over 1-s "
    "windows (block = the AR(1) memory (1+r)/(1-r) of the metric's own per-window series), "
    "each percentile read from its own merged histograms, t-test on the independent blocks; "
    "N runs a side: Welch t-test over runs; worse/better when "
    f"p < {FAMILY_ALPHA}/m (Bonferroni over the m metrics tested) AND |change| > "
    f"{PRACTICAL_CHANGE:.0%}; too little data below {MIN_WINDOWS} windows ({MIN_RUNS} runs) or "
    "10/(1-p) replies for percentile p"
)


class Verdict(StrEnum):
    """What a comparison says about one metric."""

    WORSE = "worse"
    BETTER = "better"
    SAME = "no significant change"
    TOO_LITTLE_DATA = "too little data"
    NOT_JUDGED = "not judged"


class MetricComparison(BaseModel):
    """One metric of the run against the baseline. Values in the metric's own unit (ms for
    latency, per second for rates, a 0-1 share for accuracy); ``change`` relative (0.1 = +10 %)."""

    metric: str
    run: float | None
    baseline: float | None
    change: float | None = None
    better_when: Literal["lower", "higher"] | None = None
    verdict: Verdict = Verdict.NOT_JUDGED
    # "block-bootstrap", "block-bootstrap (per-window series)", "welch-t over runs",
    # "two-proportion z"; None when not judged.
    method: str | None = None
    p_value: float | None = None
    # 95 % interval of each side's value, and the interval of the relative change at the
    # comparison's per-metric (Bonferroni) level.
    ci_run: list[float] | None = None
    ci_baseline: list[float] | None = None
    ci_change: list[float] | None = None
    n_run: int | None = None
    n_baseline: int | None = None
    sample_unit: Literal["window", "run", "prediction"] | None = None
    block_windows: list[int] | None = Field(
        default=None, description="moving-block length [run, baseline] in windows"
    )
    note: str | None = None


class Comparison(BaseModel):
    """The ``comparison`` block of results.json: a run against a baseline."""

    baseline_run_id: str | None = None
    baseline_name: str | None = None
    usable: bool = True
    problem: str | None = None
    headline: str = ""
    sample_unit: Literal["window", "run"] = "window"
    runs: list[int] = Field(default_factory=lambda: [1, 1], description="[run, baseline] runs")
    alpha_per_metric: float | None = None
    environment_differs: bool = False
    workload_differs: bool = False
    warnings: list[str] = Field(default_factory=list)
    stability: list[str] = Field(default_factory=list)
    rule: str = RULE
    metrics: list[MetricComparison] = Field(default_factory=list)

    def worse(self) -> list[str]:
        """Names of the metrics judged worse."""
        return [m.metric for m in self.metrics if m.verdict == Verdict.WORSE]


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


# --- reading a results document --------------------------------------------------------------


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


def _summary(doc: Document) -> dict[str, float | None]:
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


def _never_measured(doc: Document) -> str | None:
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


# --- the statistics ---------------------------------------------------------------------------


def lag1_autocorrelation(values: Sequence[float] | Floats) -> float:
    """Lag-1 sample autocorrelation of a per-window series, bias-corrected for a short series
    (+ (1 + 4 r)/n, Kendall's first-order correction) and clamped to [0, 0.95]; 0 for fewer
    than 4 finite values or a constant series. NaN windows are left out."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 4:
        return 0.0
    xc = x - x.mean()
    denom = float(xc @ xc)
    if denom == 0:
        return 0.0
    r1 = float(xc[:-1] @ xc[1:]) / denom
    return min(max(r1 + (1 + 4 * r1) / n, 0.0), 0.95)


def block_length(values: Sequence[float] | Floats) -> int:
    """Block length (windows) for a per-window series, from its measured autocorrelation
    (``lag1_autocorrelation``; NaN windows left out): ``block_length_for``."""
    n = int(np.count_nonzero(np.isfinite(np.asarray(values, dtype=np.float64))))
    return block_length_for(lag1_autocorrelation(values), n)


def block_length_for(r: float, n: int) -> int:
    """Block length for lag-1 autocorrelation ``r`` over ``n`` windows: tau = (1 + r)/(1 - r),
    the windows the series needs to forget (its integrated autocorrelation time under an AR(1)
    model); b = ceil(BLOCK_TAUS * tau), so a block spans that memory (1 for an uncorrelated
    series); at most max(1, n // 3)."""
    tau = (1 + r) / (1 - r)
    return int(min(max(1, n // 3), max(1, math.ceil(BLOCK_TAUS * tau))))


def variance_correction(r: float, b: int, n: int) -> float:
    """Factor on a circular block bootstrap's variance of a mean-like statistic under an AR(1)
    series with lag-1 autocorrelation ``r`` cut into blocks of ``b`` of ``n`` windows: the
    bootstrap keeps correlation only within a block (Bartlett weights 1 - k/b) where the true
    variance holds all of it (tau), and its plug-in variance over m = n/b blocks is short by
    (m - 1)/m. Returns tau / bartlett * m / (m - 1) (>= 1)."""
    tau = (1 + r) / (1 - r)
    bartlett = 1 + 2 * sum((1 - k / b) * r**k for k in range(1, b))
    m = max(n / b, 1.5)
    return max(tau / bartlett, 1.0) * m / (m - 1)


def _block_weights(rng: np.random.Generator, n: int, b: int, resamples: int) -> Floats:
    """(R, n) how often each window is drawn by a moving-block bootstrap with blocks of ``b``."""
    nblocks = math.ceil(n / b)
    starts = rng.integers(0, n, size=(resamples, nblocks))
    idx = ((starts[:, :, None] + np.arange(b)) % n).reshape(resamples, -1)[:, :n]
    flat = (idx + np.arange(resamples)[:, None] * n).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


@dataclass
class _Boot:
    """One side's bootstrap of one metric."""

    value: float  # the whole-sample value
    draws: Floats  # (R,) resampled values (NaN-free)
    n: int  # windows with data
    block: int
    # variance_correction for this series: the bootstrap variance times this is the estimate.
    var_factor: float = 1.0
    total: int | None = None  # replies (latency)

    @property
    def blocks(self) -> float:
        """Independent blocks behind the estimate (n / b)."""
        return self.n / self.block

    def var(self, log: bool) -> float:
        """Corrected variance of the statistic (of its log with ``log``)."""
        d = np.log(np.maximum(self.draws, 1e-9)) if log else self.draws
        return float(np.var(d)) * self.var_factor if d.size else 0.0

    def interval(self, log: bool, level: float = 0.95) -> list[float] | None:
        """``level`` t interval (df = blocks - 1) of the value from the corrected variance."""
        if not self.draws.size or (log and self.value <= 0):
            return None
        half = _quantile(1.0 - level, max(self.blocks - 1.0, 1.0)) * math.sqrt(self.var(log))
        if log:
            return [self.value * math.exp(-half), self.value * math.exp(half)]
        return [self.value - half, self.value + half]


@dataclass
class _Sample:
    """One side's per-window data for one metric, ready to resample."""

    rows: Floats  # (n, G) per-window histogram counts, or (n, 1) per-window values
    per_window: Floats  # (n,) the metric in each window (its own series)
    read: Callable[[Floats], Floats]  # (R, G) weights @ rows -> (R,) statistic
    total: int | None = None  # replies (latency)

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])


def _latency_sample(hists: Sequence[hdr.Histogram | None], stat: str) -> _Sample | None:
    """A latency statistic (ms) over per-window histograms; None without data."""
    if not any(h is not None and h.get_total_count() > 0 for h in hists):
        return None
    if stat == "mean":
        grid, mat = hdr.stack(hists, highest=False)

        def read(m: Floats) -> Floats:
            return hdr.stacked_means(grid, m) / hdr.US_PER_MS
    else:
        p = hdr.PERCENTILES[stat]
        grid, mat = hdr.stack(hists)

        def read(m: Floats) -> Floats:
            return hdr.stacked_percentiles(grid, m, p) / hdr.US_PER_MS

    mat = mat[mat.sum(axis=1) > 0]
    return _Sample(mat, read(mat), read, int(mat.sum()))


def _series_sample(values: Sequence[float]) -> _Sample | None:
    """The mean of a per-window series (NaN windows left out); None without data."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    n = x.size

    def read(m: Floats) -> Floats:
        return m[:, 0] / n  # block weights sum to n

    return _Sample(x[:, None], x, read)


def _bootstrap(sample: _Sample, r: float, seed: int) -> _Boot:
    """Circular block bootstrap of one side, blocks sized for autocorrelation ``r``."""
    n = sample.n
    b = block_length_for(r, n)
    rng = np.random.default_rng(seed)
    weights = _block_weights(rng, n, b, BOOTSTRAP_RESAMPLES)
    value = float(sample.read(sample.rows.sum(axis=0, keepdims=True))[0])
    draws = sample.read(weights @ sample.rows)
    return _Boot(value, draws[np.isfinite(draws)], n, b, variance_correction(r, b, n), sample.total)


def _boot_pair(
    run: _Sample | None, base: _Sample | None, seed: int, floor: Sequence[_Sample | None] = ()
) -> tuple[_Boot | None, _Boot | None]:
    """Both sides' bootstraps with ONE autocorrelation: the largest measured (on both sides,
    and on the ``floor`` series: the family's p50, whose drift a noisy tail series such as
    per-window p99 hides under its sampling noise) plus its standard error (1/sqrt(n), n the
    shorter side's windows), at most 0.95. The sample autocorrelation of a short series is
    noisy and biased low, and an underestimate would make the blocks too short and p too
    small; erring long only widens the intervals."""
    sides = [s for s in (run, base) if s is not None]
    measured = [*sides, *(f for f in floor if f is not None)]
    r = max((lag1_autocorrelation(s.per_window) for s in measured), default=0.0)
    if sides:
        r = min(r + 1.0 / math.sqrt(max(min(s.n for s in sides), 1)), 0.95)
    return (
        None if run is None else _bootstrap(run, r, seed),
        None if base is None else _bootstrap(base, r, seed + 1000),
    )


def _two_sided_p(z: float, df: float | None) -> float:
    """Two-sided p-value of a t statistic with ``df`` degrees of freedom (None: normal)."""
    if df is None:
        return math.erfc(abs(z) / math.sqrt(2.0))
    from scipy.stats import t

    return float(2.0 * t.sf(abs(z), df))


def _quantile(two_sided_alpha: float, df: float | None) -> float:
    """The critical value of a two-sided test at ``two_sided_alpha`` (t with ``df``, or normal)."""
    if df is None:
        from statistics import NormalDist

        return NormalDist().inv_cdf(1.0 - two_sided_alpha / 2.0)
    from scipy.stats import t

    return float(t.ppf(1.0 - two_sided_alpha / 2.0, df))


@dataclass
class _Test:
    """A change test's outcome before the family-wise decision."""

    p: float
    effect: float  # the estimate on the test's scale (log ratio or difference)
    se: float
    log: bool  # effect is a log ratio
    # Degrees of freedom of the t reference (None: normal): the independent blocks behind the
    # bootstrap's standard error, so few blocks widen the test as they should.
    df: float | None = None


def _boot_test(run: _Boot, base: _Boot, log: bool) -> _Test:
    """t-test of the change: the two sides' bootstrap standard errors, with as many degrees of
    freedom as independent blocks (n/b a side, minus 2)."""
    log = log and run.value > 0 and base.value > 0
    effect = math.log(run.value / base.value) if log else run.value - base.value
    se = math.sqrt(run.var(log) + base.var(log))
    df = max(run.blocks + base.blocks - 2.0, 1.0)
    p = (1.0 if effect == 0 else 0.0) if se == 0 else _two_sided_p(effect / se, df)
    return _Test(p, effect, se, log, df)


def _relative(run: float | None, base: float | None) -> float | None:
    if run is None or base is None:
        return None
    if base == 0:
        return 0.0 if run == 0 else None
    return (run - base) / abs(base)


def better_when(metric: str) -> Literal["lower", "higher"] | None:
    """Direction of a judged metric ("lower"/"higher"), None for one without a direction."""
    if metric.startswith("throughput.") or metric == "accuracy":
        return "higher"
    if "latency" in metric or metric.endswith("_ms") or metric.startswith("errors."):
        return "lower"
    if metric.startswith("frames.") and metric.split(".")[-1] in ("lost", "late", "errored"):
        return "lower"
    return None


def not_judged_reason(metric: str) -> str:
    """Why a summary metric gets no verdict."""
    if metric in ("duration_s", "warmup_s", "measured_s", "sessions", "fps") or metric in (
        "generator.late_threshold_ms",
    ):
        return "configuration, not a measurement"
    if metric.startswith("generator.") or metric.startswith("cpu.harness"):
        return "the load generator's own figure (see stability warnings)"
    if metric.endswith(".max") or metric.startswith("stall."):
        return "a single extreme value: not testable (see p999)"
    if metric.endswith(".count") or metric.startswith(("frames.", "errors.", "served_by.counts")):
        return "a count that scales with duration (judged as a rate: throughput.*, errors.per_s)"
    if metric.startswith(("model_versions", "served_by", "accuracy_detail")):
        return "a mix or detail, not a performance figure"
    if "uncorrected" in metric or metric.startswith("non_inference"):
        return "no per-window histograms: shown, not judged"
    if metric.startswith(("cpu.", "gpu.", "torchserve.")) or "rss" in metric:
        return "resource usage: shown, not judged (no per-window noise model)"
    return "not a judged metric"


def _too_few_replies(stat: str, total: int | None) -> int | None:
    """Replies a side needs for percentile ``stat`` (None: it has enough)."""
    if stat not in hdr.PERCENTILES or total is None:
        return None
    need = math.ceil(round(10.0 / (1.0 - hdr.PERCENTILES[stat] / 100.0), 6))
    return need if total < need else None


def _window_tests(
    run: WindowSeries, base: WindowSeries
) -> dict[str, tuple[MetricComparison, _Test | None]]:
    """Bootstrap rows (not yet decided) for every judged window metric both sides have."""
    out: dict[str, tuple[MetricComparison, _Test | None]] = {}
    seed = BOOTSTRAP_SEED
    for family in LATENCY_FAMILIES:
        both = family in run.latency and family in base.latency
        floor = (
            [
                _latency_sample(run.latency[family], "p50"),
                _latency_sample(base.latency[family], "p50"),
            ]
            if both
            else []
        )
        for stat in LATENCY_STATS:
            metric = f"{family}.latency_ms.{stat}"
            seed += 1
            method = "block-bootstrap"
            if both:
                rb, bb = _boot_pair(
                    _latency_sample(run.latency[family], stat),
                    _latency_sample(base.latency[family], stat),
                    seed,
                    floor,
                )
            elif (family, stat) in run.percentile_series and (
                family,
                stat,
            ) in base.percentile_series:
                method = "block-bootstrap (per-window series, no window histograms)"
                rb, bb = _boot_pair(
                    _series_sample(run.percentile_series[(family, stat)]),
                    _series_sample(base.percentile_series[(family, stat)]),
                    seed,
                )
            else:
                continue
            out[metric] = _boot_row(metric, rb, bb, method, log=True, stat=stat)
    for metric in RATE_SERIES:
        if metric in run.rates and metric in base.rates:
            seed += 1
            rb, bb = _boot_pair(
                _series_sample(run.rates[metric]), _series_sample(base.rates[metric]), seed
            )
            out[metric] = _boot_row(metric, rb, bb, "block-bootstrap", log=False, stat=None)
    return out


def _boot_row(
    metric: str, rb: _Boot | None, bb: _Boot | None, method: str, log: bool, stat: str | None
) -> tuple[MetricComparison, _Test | None]:
    row = MetricComparison(
        metric=metric,
        run=None if rb is None else rb.value,
        baseline=None if bb is None else bb.value,
        better_when=better_when(metric),
        method=method,
        sample_unit="window",
        n_run=0 if rb is None else rb.n,
        n_baseline=0 if bb is None else bb.n,
    )
    row.change = _relative(row.run, row.baseline)
    if rb is None or bb is None:
        row.verdict = Verdict.TOO_LITTLE_DATA
        row.note = f"too little data (n = {row.n_run}/{row.n_baseline} windows with data)"
        return row, None
    row.block_windows = [rb.block, bb.block]
    row.ci_run, row.ci_baseline = rb.interval(log), bb.interval(log)
    reasons = []
    if min(rb.n, bb.n) < MIN_WINDOWS:
        reasons.append(f"n = {rb.n}/{bb.n} windows; need >= {MIN_WINDOWS} a side")
    elif min(rb.n / rb.block, bb.n / bb.block) < MIN_BLOCKS:
        reasons.append(
            f"n = {rb.n}/{bb.n} windows in blocks of {rb.block}/{bb.block}: fewer than "
            f"{MIN_BLOCKS} independent blocks a side"
        )
    if stat is not None:
        for side, boot in (("run", rb), ("baseline", bb)):
            need = _too_few_replies(stat, boot.total)
            if need is not None:
                reasons.append(f"n = {boot.total} replies in the {side}; {stat} needs >= {need}")
    if reasons:
        row.verdict = Verdict.TOO_LITTLE_DATA
        row.note = "too little data (" + "; ".join(reasons) + ")"
        return row, None
    return row, _boot_test(rb, bb, log)


def _accuracy_row(
    run_doc: Document, base_doc: Document
) -> tuple[MetricComparison, _Test | None] | None:
    """Two-proportion z-test of accuracy; None when neither side judged predictions."""

    def detail(doc: Document) -> tuple[int, int]:
        d = (doc.get("summary") or {}).get("accuracy_detail") or {}
        return int(d.get("correct") or 0), int(d.get("total") or 0)

    (rc, rn), (bc, bn) = detail(run_doc), detail(base_doc)
    if rn == 0 and bn == 0:
        return None
    row = MetricComparison(
        metric="accuracy",
        run=rc / rn if rn else None,
        baseline=bc / bn if bn else None,
        better_when="higher",
        method="two-proportion z",
        sample_unit="prediction",
        n_run=rn,
        n_baseline=bn,
    )
    row.change = _relative(row.run, row.baseline)
    if min(rn, bn) < 30:
        row.verdict = Verdict.TOO_LITTLE_DATA
        row.note = f"too little data (n = {rn}/{bn} judged predictions; need >= 30 a side)"
        return row, None
    pooled = (rc + bc) / (rn + bn)
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / rn + 1 / bn))
    effect = rc / rn - bc / bn
    p = (1.0 if effect == 0 else 0.0) if se == 0 else _two_sided_p(effect / se, None)
    return row, _Test(p, effect, se, log=False)


def _decide(rows: list[tuple[MetricComparison, _Test | None]]) -> float | None:
    """Family-wise decision: Bonferroni over the tested rows. Returns the per-metric alpha."""
    tested = [(r, t) for r, t in rows if t is not None]
    if not tested:
        return None
    alpha = FAMILY_ALPHA / len(tested)
    for row, test in tested:
        row.p_value = test.p
        z = _quantile(alpha, test.df)
        lo, hi = test.effect - z * test.se, test.effect + z * test.se
        if test.log:
            row.ci_change = [math.exp(lo) - 1.0, math.exp(hi) - 1.0]
        elif row.baseline:
            row.ci_change = [lo / abs(row.baseline), hi / abs(row.baseline)]
        practical = ACCURACY_PRACTICAL if row.metric == "accuracy" else PRACTICAL_CHANGE
        size = (
            abs(test.effect)
            if row.metric == "accuracy"
            else abs(row.change)
            if row.change is not None
            else math.inf
        )
        if test.p < alpha and size > practical:
            up = test.effect > 0
            row.verdict = Verdict.WORSE if up == (row.better_when == "lower") else Verdict.BETTER
        elif row.ci_change and (
            row.ci_change[1] > UNDECIDED_CHANGE or row.ci_change[0] < -UNDECIDED_CHANGE / 2
        ):
            # Not significant, but the interval still holds large changes: the data cannot
            # tell "no change" from "much worse", so it does not say "no significant change".
            lo_pct, hi_pct = (f"{v:+.0%}" if abs(v) < 10 else f"{v:+.0e}" for v in row.ci_change)
            row.verdict = Verdict.TOO_LITTLE_DATA
            row.note = (
                f"too little data (n = {row.n_run}/{row.n_baseline} {row.sample_unit}s"
                + (f" in blocks of {row.block_windows[0]}" if row.block_windows else "")
                + f"): the change may be anywhere in [{lo_pct}, {hi_pct}]; run longer, quiet "
                "the machine or repeat the runs (--repeat)"
            )
        else:
            row.verdict = Verdict.SAME
    return alpha


# --- warnings ---------------------------------------------------------------------------------


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


def workload_warnings(run_doc: Document, base_doc: Document) -> list[str]:
    """One line per workload setting that differs: such runs are not like for like."""
    out = []
    rs, bs = run_doc.get("summary") or {}, base_doc.get("summary") or {}
    for key in _WORKLOAD_KEYS:
        if rs.get(key) != bs.get(key):
            out.append(
                f"workload differs: {key} {rs.get(key)!r} vs baseline {bs.get(key)!r}: the "
                "comparison is not like for like; compare runs of one scenario"
            )
    rt = ((run_doc.get("scenario") or {}).get("workload") or {}).get("trace")
    bt = ((base_doc.get("scenario") or {}).get("workload") or {}).get("trace")
    if rt != bt:
        out.append(f"workload differs: trace {rt!r} vs baseline {bt!r}")
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


# --- headline ---------------------------------------------------------------------------------


def _pct(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1%}"


def headline(cmp: Comparison) -> str:
    """k6-style end-of-test line: what got worse first (largest change first), then counts."""
    if not cmp.usable:
        return f"cannot compare: {cmp.problem}"
    by = {v: [m for m in cmp.metrics if m.verdict == v] for v in Verdict}
    n_runs = cmp.runs
    ns = [(m.n_run, m.n_baseline) for m in cmp.metrics if m.sample_unit in ("window", "run")]
    n_txt = ""
    if ns:
        unit = "runs" if cmp.sample_unit == "run" else "windows"
        n_r = max(a or 0 for a, _ in ns) if cmp.sample_unit == "window" else n_runs[0]
        n_b = max(b or 0 for _, b in ns) if cmp.sample_unit == "window" else n_runs[1]
        n_txt = f"n = {n_r}/{n_b} {unit} (run/baseline)"
    rest = []
    for v in (Verdict.BETTER, Verdict.SAME, Verdict.TOO_LITTLE_DATA):
        if by[v]:
            rest.append(f"{len(by[v])} {v.value}")
    tail = "; ".join(filter(None, [n_txt, ", ".join(rest)]))
    for v, word in ((Verdict.WORSE, "WORSE"), (Verdict.BETTER, "BETTER")):
        rows = sorted(by[v], key=lambda m: -abs(m.change or 0))
        if rows:
            named = ", ".join(f"{m.metric} {_pct(m.change)}" for m in rows[:3])
            more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
            latency = sum(1 for m in rows if "latency" in m.metric)
            kind = f"{latency} latency metric{'s' if latency != 1 else ''}" if latency else ""
            other = len(rows) - latency
            kinds = " + ".join(
                filter(None, [kind, f"{other} other{'s' if other != 1 else ''}" if other else ""])
            )
            return (
                f"{word}: {kinds} {v.value} ({named}{more}), change interval excludes 0 at "
                f"family-wise {FAMILY_ALPHA:.0%}; {tail}"
            )
    same, little = len(by[Verdict.SAME]), len(by[Verdict.TOO_LITTLE_DATA])
    if little >= same:
        first = next((m for m in by[Verdict.TOO_LITTLE_DATA] if m.note), None)
        why = f" ({first.metric}: {first.note})" if first else ""
        return f"too little data to decide {little} of {same + little} metrics{why}; {tail}"
    return f"no significant change in {same} judged metric{'s' if same != 1 else ''}; {tail}"


# --- the three entry points ---------------------------------------------------------------------


def _unusable(problem: str, baseline: Document | None) -> Comparison:
    cmp = Comparison(
        baseline_run_id=(baseline or {}).get("run_id"),
        baseline_name=(baseline or {}).get("name"),
        usable=False,
        problem=problem,
    )
    cmp.headline = headline(cmp)
    return cmp


def _rows_for_summary(
    run_flat: Mapping[str, float | None],
    base_flat: Mapping[str, float | None],
    judged: Mapping[str, MetricComparison],
) -> list[MetricComparison]:
    """Every summary metric in order, judged rows in their place, the rest not judged."""
    rows = []
    order = [*run_flat, *(m for m in base_flat if m not in run_flat)]
    order += [m for m in judged if m not in order]
    for metric in order:
        if metric in judged:
            row = judged[metric]
            # Show the documents' own whole-run values (the bootstrap's whole-sample value
            # is the same figure; the summary's is authoritative).
            if run_flat.get(metric) is not None:
                row.run = run_flat[metric]
            if base_flat.get(metric) is not None:
                row.baseline = base_flat[metric]
            row.change = _relative(row.run, row.baseline)
            rows.append(row)
            continue
        run, base = run_flat.get(metric), base_flat.get(metric)
        row = MetricComparison(
            metric=metric,
            run=run,
            baseline=base,
            change=_relative(run, base),
            better_when=better_when(metric),
            note=not_judged_reason(metric),
        )
        if _judged_run_metric(metric):
            # A metric that is judged, but a side has no per-window data for it.
            row.verdict = Verdict.TOO_LITTLE_DATA
            row.note = "too little data (no per-window data on a side: n = 0 windows)"
        rows.append(row)
    return rows


def compare_windows(baseline: WindowSeries, candidate: WindowSeries) -> Comparison:
    """Compare two sets of per-window series (one run a side, or two cohorts of one run).

    Judges the ``WindowSeries`` metrics only (latency families present on both sides, rates);
    ``run`` is the candidate. No workload/environment warnings (no documents).
    """
    rows = list(_window_tests(candidate, baseline).values())
    alpha = _decide(rows)
    cmp = Comparison(alpha_per_metric=alpha, metrics=[r for r, _ in rows])
    cmp.stability = [
        *stability_warnings({}, candidate, "run"),
        *stability_warnings({}, baseline, "baseline"),
    ]
    cmp.headline = headline(cmp)
    return cmp


def compare(results: Document, baseline: Document) -> Comparison:
    """``results`` (the run) against ``baseline``, one run a side (module docstring's rule).

    A side that never measured gives ``usable = False`` with the reason in ``problem`` and the
    headline; callers must not treat that as "no change".
    """
    for side, doc in (("the run", results), ("the baseline", baseline)):
        why = _never_measured(doc)
        if why is not None:
            return _unusable(f"{side} {doc.get('run_id')!r}: {why}", baseline)
    run_w, base_w = window_series(results), window_series(baseline)
    tests = _window_tests(run_w, base_w)
    acc = _accuracy_row(results, baseline)
    if acc is not None:
        tests["accuracy"] = acc
    alpha = _decide(list(tests.values()))
    run_flat, base_flat = _summary(results), _summary(baseline)
    env = environment_warnings(results.get("provenance") or {}, baseline.get("provenance") or {})
    work = workload_warnings(results, baseline)
    cmp = Comparison(
        baseline_run_id=baseline.get("run_id"),
        baseline_name=baseline.get("name"),
        alpha_per_metric=alpha,
        environment_differs=bool(env),
        workload_differs=bool(work),
        warnings=[*work, *env],
        stability=[
            *stability_warnings(results, run_w, "run"),
            *stability_warnings(baseline, base_w, "baseline"),
        ],
        metrics=_rows_for_summary(run_flat, base_flat, {m: r for m, (r, _) in tests.items()}),
    )
    cmp.headline = headline(cmp)
    return cmp


def _judged_run_metric(metric: str) -> bool:
    parts = metric.split(".")
    if len(parts) == 3 and parts[0] in LATENCY_FAMILIES and parts[1] == "latency_ms":
        return parts[2] in LATENCY_STATS
    return metric in RATE_SERIES or metric == "accuracy"


def compare_runs(baseline: Sequence[Document], candidate: Sequence[Document]) -> Comparison:
    """N runs a side (``--repeat N``, ABAB...): the run is the sample unit.

    Each judged metric: Welch's t-test over the runs' whole-run values (log values for
    latency), Bonferroni over the metrics tested, practical threshold as ``compare``; fewer
    than ``MIN_RUNS`` runs a side -> ``too little data (n = ...)``. ``run``/``baseline`` are
    the means over runs. With one run a side this is ``compare``.
    """
    if len(baseline) == 1 and len(candidate) == 1:
        return compare(candidate[0], baseline[0])
    if not baseline or not candidate:
        return _unusable(f"no runs (baseline {len(baseline)}, candidate {len(candidate)})", None)
    for side, docs in (("candidate", candidate), ("baseline", baseline)):
        for doc in docs:
            why = _never_measured(doc)
            if why is not None:
                return _unusable(f"{side} run {doc.get('run_id')!r}: {why}", baseline[0])
    flats_c = [_summary(d) for d in candidate]
    flats_b = [_summary(d) for d in baseline]
    metrics = list(dict.fromkeys([*flats_c[0], *flats_b[0]]))
    rows: list[tuple[MetricComparison, _Test | None]] = []
    for metric in metrics:
        vc = np.array([f.get(metric) for f in flats_c if f.get(metric) is not None], dtype=float)
        vb = np.array([f.get(metric) for f in flats_b if f.get(metric) is not None], dtype=float)
        row = MetricComparison(
            metric=metric,
            run=float(vc.mean()) if vc.size else None,
            baseline=float(vb.mean()) if vb.size else None,
            better_when=better_when(metric),
            n_run=int(vc.size),
            n_baseline=int(vb.size),
            sample_unit="run",
        )
        row.change = _relative(row.run, row.baseline)
        if not _judged_run_metric(metric):
            row.note = not_judged_reason(metric)
            rows.append((row, None))
            continue
        row.method = "welch-t over runs"
        row.ci_run, row.ci_baseline = _t_interval(vc), _t_interval(vb)
        if min(vc.size, vb.size) < MIN_RUNS:
            row.verdict = Verdict.TOO_LITTLE_DATA
            row.note = f"too little data (n = {vc.size}/{vb.size} runs; need >= {MIN_RUNS} a side)"
            rows.append((row, None))
            continue
        rows.append((row, _welch(vc, vb, log="latency" in metric)))
    alpha = _decide(rows)
    env = environment_warnings(
        candidate[0].get("provenance") or {}, baseline[0].get("provenance") or {}
    )
    work = workload_warnings(candidate[0], baseline[0])
    stability: list[str] = []
    for i, d in enumerate(candidate):
        stability += [w for w in stability_warnings(d, window_series(d), f"run {i + 1}")]
    for i, d in enumerate(baseline):
        stability += [w for w in stability_warnings(d, window_series(d), f"baseline {i + 1}")]
    cmp = Comparison(
        baseline_run_id=baseline[0].get("run_id"),
        baseline_name=baseline[0].get("name"),
        sample_unit="run",
        runs=[len(candidate), len(baseline)],
        alpha_per_metric=alpha,
        environment_differs=bool(env),
        workload_differs=bool(work),
        warnings=[*work, *env],
        stability=stability,
        metrics=[r for r, _ in rows],
    )
    cmp.headline = headline(cmp)
    return cmp


def _t_interval(values: Floats) -> list[float] | None:
    if values.size < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return [float(values.mean()) - half, float(values.mean()) + half]


def _welch(run: Floats, base: Floats, log: bool) -> _Test:
    """Welch's t-test (as a _Test on the log or plain scale)."""
    # scipy.stats costs seconds to import: only pay for it when runs are compared.
    from scipy.stats import ttest_ind

    if log and ((run <= 0).any() or (base <= 0).any()):
        log = False
    a, b = (np.log(run), np.log(base)) if log else (run, base)
    effect = float(a.mean() - b.mean())
    se = math.sqrt(float(a.var(ddof=1)) / a.size + float(b.var(ddof=1)) / b.size)
    if se == 0:
        return _Test(1.0 if effect == 0 else 0.0, effect, 0.0, log)
    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return _Test(p, effect, se, log)


def comparison_for(results: Document, baseline: Document | None) -> dict[str, Any] | None:
    """The comparison a report of ``results`` shows against ``baseline``: the embedded one when
    ``baseline`` is its baseline (or None), else a fresh ``compare`` against ``baseline``, so a
    table never mixes one baseline's values with another's changes. JSON-ready dict or None."""
    embedded = results.get("comparison")
    if baseline is None:
        return dict(embedded) if isinstance(embedded, Mapping) else None
    if isinstance(embedded, Mapping) and embedded.get("baseline_run_id") == baseline.get("run_id"):
        return dict(embedded)
    return compare(results, baseline).model_dump(mode="json")
