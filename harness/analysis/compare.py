"""Baseline comparison: which measured properties of the system under test changed, and by a
stated method, with the noise of this machine taken into account (pyperf's standard). This
module holds the rows, verdicts, warnings and headline; the statistics behind them (bootstrap,
block length, variance correction, tests, intervals) are :mod:`harness.analysis.stats`.

Public API (typed by the pydantic models below; ``Comparison.model_dump(mode="json")`` is the
``comparison`` block of results.json):

- ``compare(results, baseline, allow_unlike_workloads=False) -> Comparison``: one run a side
  (the sample unit is the 1-s window, resampled in blocks);
- ``compare_runs(baseline, candidate) -> Comparison``: N runs a side (``--repeat N``; the runs'
  windows pooled, each run resampled inside itself, plus a between-run random effect);
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
* **Only like with like.** Runs whose workloads differ (sessions, stages, arrivals, fps,
  duration, warm-up, ramp-up, trace: ``workload_differences``) get no verdicts: the comparison
  is ``usable = False`` with the differences in ``problem`` and ``warnings`` (values and
  changes still shown), unless the caller passes ``allow_unlike_workloads=True`` (CLI
  ``harness compare --allow-unlike-workloads``).
* **Latency and rates: circular block bootstrap over 1-s windows** (:mod:`harness.analysis.
  stats`; one autocorrelation for both sides: the largest measured, on both sides and on the
  family's p50, plus its standard error 1/sqrt(n)); t-test of the change on the independent
  blocks; ``ci_run``/``ci_baseline`` are each side's 95 % intervals, inside the observed range.
  N runs a side pool their windows (never a block across two runs) and add the between-run
  variance: ``--repeat 2`` decides (benchmarks/compare_calibration.py ``--repeat``).
* **Accuracy**: a two-proportion z-test of correct/judged predictions (frames are treated as
  independent: accuracy here is a property of the model on a fixed trace, not of timing).
* **Verdict**: ``worse``/``better`` when p < ``FAMILY_ALPHA`` / m (Bonferroni over the m
  metrics tested in this comparison, so the chance of any false alarm in a whole comparison
  stays <= 5 %) AND the change exceeds the practical threshold (``PRACTICAL_CHANGE`` relative;
  1 percentage point for accuracy); ``no significant change`` otherwise; ``too little data``
  (note says n) when a side has fewer than ``MIN_WINDOWS`` windows, fewer than ``MIN_BLOCKS``
  blocks, or fewer than 10/(1-p) replies for percentile p, or when the change interval still
  holds large changes (``UNDECIDED_CHANGE``).

Stability warnings (``Comparison.stability``), each saying what to do: window-to-window
variation, few windows, too few replies for a percentile, the load generator near saturation.
Differing environments go to ``warnings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

import harness.hdr as hdr
from harness.analysis.comparability import (
    environment_warnings,
    stability_warnings,
    workload_differences,
)
from harness.analysis.stats import (
    BOOTSTRAP_SEED,
    Boot,
    Test,
    boot_pair,
    boot_test,
    critical_value,
    latency_sample,
    series_sample,
    two_sided_p,
)
from harness.analysis.windows import (
    LATENCY_FAMILIES,
    RATE_SERIES,
    WindowSeries,
    flatten_numbers,
    never_measured,
    summary_numbers,
    window_series,
)
from harness.results.model import JUDGED_LATENCY_STATS, Document, Results, results_of

__all__ = [  # the names other modules import from here (rollout judge, runner, report, api)
    "Comparison",
    "MetricComparison",
    "Verdict",
    "WindowSeries",
    "compare",
    "compare_runs",
    "compare_windows",
    "comparison_for",
    "environment_warnings",
    "flatten_numbers",
    "stability_warnings",
    "window_series",
    "workload_differences",
]

FAMILY_ALPHA = 0.05
PRACTICAL_CHANGE = 0.05
ACCURACY_PRACTICAL = 0.01
MIN_WINDOWS = 5
MIN_BLOCKS = 3
# The fewest runs a side --repeat takes: the runs' windows are pooled, so two decide.
MIN_RUNS = 2
# A change interval reaching past +50 % (or -25 %) cannot tell no change from a large one.
UNDECIDED_CHANGE = 0.5
LATENCY_STATS = JUDGED_LATENCY_STATS
RULE = (
    "verdicts only for measured properties of the system under test (latency p50-p999/mean, "
    "throughput, error rate, accuracy), only between runs of one workload; circular block "
    "bootstrap over 1-s windows (block = the AR(1) memory (1+r)/(1-r) of the metric's own "
    "per-window series), each percentile read from its own merged histograms, t-test on the "
    "independent blocks; N runs a side: their windows pooled (blocks inside each run) plus the "
    "between-run variance (DerSimonian-Laird); worse/better when "
    f"p < {FAMILY_ALPHA}/m (Bonferroni over the m metrics tested) AND |change| > "
    f"{PRACTICAL_CHANGE:.0%}; too little data below {MIN_WINDOWS} windows or "
    "10/(1-p) replies for percentile p"
)


class Verdict(StrEnum):
    """What a comparison says about one metric."""

    WORSE = "worse"
    BETTER = "better"
    SAME = "no significant change"
    TOO_LITTLE_DATA = "too little data"
    NOT_JUDGED = "not judged"
    # Comparisons recorded before "not judged" said "n/a"; read as written, never produced.
    NA = "n/a"


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

    @field_validator("better_when", mode="before")
    @classmethod
    def _no_direction(cls, value: object) -> object:
        """Comparisons recorded before None stood for "no direction" wrote "n/a"."""
        return None if value == "n/a" else value


class Comparison(BaseModel):
    """The ``comparison`` block of results.json: a run against a baseline."""

    baseline_run_id: str | None = Field(
        default=None, description="the baseline run (None when several runs are the baseline)"
    )
    baseline_name: str | None = None
    run_ids: list[str] = Field(default_factory=list, description="the compared candidate runs")
    baseline_run_ids: list[str] = Field(default_factory=list, description="the baseline runs")
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


def _joined(sides: Sequence[WindowSeries], get: Any) -> tuple[list[Any], list[int] | None] | None:
    """One key's per-window data of every run of a side, run after run, with each window's run
    index (None for one run); None when a run lacks the key. ``get``: WindowSeries -> the
    run's sequence or None."""
    parts = [get(s) for s in sides]
    if not parts or any(p is None for p in parts):
        return None
    values = [v for p in parts for v in p]
    runs = [i for i, p in enumerate(parts) for _ in p] if len(parts) > 1 else None
    return values, runs


def _window_tests(
    run: Sequence[WindowSeries], base: Sequence[WindowSeries]
) -> dict[str, tuple[MetricComparison, Test | None]]:
    """Bootstrap rows (not yet decided) for every judged window metric both sides have; a side
    of several runs pools their windows (``stats.bootstrap``: blocks inside each run)."""
    out: dict[str, tuple[MetricComparison, Test | None]] = {}
    seed = BOOTSTRAP_SEED
    pooled = len(run) > 1 or len(base) > 1
    for family in LATENCY_FAMILIES:
        rh = _joined(run, lambda s, f=family: s.latency.get(f))
        bh = _joined(base, lambda s, f=family: s.latency.get(f))
        floor = (
            [latency_sample(rh[0], "p50", rh[1]), latency_sample(bh[0], "p50", bh[1])]
            if rh is not None and bh is not None
            else []
        )
        for stat in LATENCY_STATS:
            metric = f"{family}.latency_ms.{stat}"
            seed += 1
            method = "block-bootstrap"
            key = (family, stat)
            rs = _joined(run, lambda s, k=key: s.percentile_series.get(k))
            bs = _joined(base, lambda s, k=key: s.percentile_series.get(k))
            if rh is not None and bh is not None:
                rb, bb = boot_pair(
                    latency_sample(rh[0], stat, rh[1]),
                    latency_sample(bh[0], stat, bh[1]),
                    seed,
                    floor,
                )
            elif rs is not None and bs is not None:
                method = "block-bootstrap (per-window series, no window histograms)"
                rb, bb = boot_pair(series_sample(*rs), series_sample(*bs), seed)
            else:
                continue
            if pooled:
                method += " over the runs' pooled windows"
            out[metric] = _boot_row(metric, rb, bb, method, log=True, stat=stat)
    for metric in RATE_SERIES:
        rr = _joined(run, lambda s, m=metric: s.rates.get(m))
        br = _joined(base, lambda s, m=metric: s.rates.get(m))
        if rr is not None and br is not None:
            seed += 1
            rb, bb = boot_pair(series_sample(*rr), series_sample(*br), seed)
            method = "block-bootstrap" + (" over the runs' pooled windows" if pooled else "")
            out[metric] = _boot_row(metric, rb, bb, method, log=False, stat=None)
    return out


def _boot_row(
    metric: str, rb: Boot | None, bb: Boot | None, method: str, log: bool, stat: str | None
) -> tuple[MetricComparison, Test | None]:
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
    return row, boot_test(rb, bb, log)


def _accuracy_row(
    run_docs: Sequence[Document], base_docs: Sequence[Document]
) -> tuple[MetricComparison, Test | None] | None:
    """Two-proportion z-test of accuracy (each side's runs' predictions summed); None when
    neither side judged predictions."""

    def detail(docs: Sequence[Document]) -> tuple[int, int]:
        correct = total = 0
        for doc in docs:
            d = (doc.get("summary") or {}).get("accuracy_detail") or {}
            correct, total = correct + int(d.get("correct") or 0), total + int(d.get("total") or 0)
        return correct, total

    (rc, rn), (bc, bn) = detail(run_docs), detail(base_docs)
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
    p = (1.0 if effect == 0 else 0.0) if se == 0 else two_sided_p(effect / se, None)
    return row, Test(p, effect, se, log=False)


def _decide(rows: list[tuple[MetricComparison, Test | None]]) -> float | None:
    """Family-wise decision: Bonferroni over the tested rows. Returns the per-metric alpha."""
    tested = [(r, t) for r, t in rows if t is not None]
    if not tested:
        return None
    alpha = FAMILY_ALPHA / len(tested)
    for row, test in tested:
        row.p_value = test.p
        z = critical_value(alpha, test.df)
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
            lo_pct, hi_pct = (f"{v:+,.0%}" for v in row.ci_change)  # one unit: percent
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
        over = f" over {n_runs[0]}/{n_runs[1]} runs" if n_runs != [1, 1] else ""
        n_txt = f"n = {n_r}/{n_b} {unit}{over} (run/baseline)"
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
        rule=RULE,  # stated, not defaulted: a reader tells a recorded rule from none
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
    documents_values: bool = True,
) -> list[MetricComparison]:
    """Every summary metric in order, judged rows in their place, the rest not judged.
    ``documents_values``: judged rows show the summaries' values (one run a side) rather than
    the pooled windows' (several runs)."""
    rows = []
    order = [*run_flat, *(m for m in base_flat if m not in run_flat)]
    order += [m for m in judged if m not in order]
    for metric in order:
        if metric in judged:
            row = judged[metric]
            if not documents_values:
                rows.append(row)
                continue
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


def compare_windows(
    baseline: WindowSeries | Sequence[WindowSeries],
    candidate: WindowSeries | Sequence[WindowSeries],
) -> Comparison:
    """Compare two sets of per-window series (one run a side, two cohorts of one run, or
    several runs a side, pooled as in ``compare_runs``).

    Judges the ``WindowSeries`` metrics only (latency families present on both sides, rates);
    ``run`` is the candidate. No workload/environment warnings (no documents).
    """
    base = [baseline] if isinstance(baseline, WindowSeries) else list(baseline)
    cand = [candidate] if isinstance(candidate, WindowSeries) else list(candidate)
    rows = list(_window_tests(cand, base).values())
    alpha = _decide(rows)
    cmp = Comparison(rule=RULE, alpha_per_metric=alpha, metrics=[r for r, _ in rows])
    cmp.runs = [len(cand), len(base)]
    several = len(cand) > 1 or len(base) > 1
    for side, series in (("run", cand), ("baseline", base)):
        for i, s in enumerate(series):
            cmp.stability += stability_warnings({}, s, f"{side} {i + 1}" if several else side)
    cmp.headline = headline(cmp)
    return cmp


def compare(
    results: Results | Document,
    baseline: Results | Document,
    *,
    allow_unlike_workloads: bool = False,
) -> Comparison:
    """``results`` (the run) against ``baseline``, one run a side (module docstring's rule).

    A side that never measured gives ``usable = False`` with the reason in ``problem`` and the
    headline; callers must not treat that as "no change". So do workloads that differ
    (``workload_differences``), rows shown but not judged, unless ``allow_unlike_workloads``.
    Either side may be Results or a parsed results.json.
    """
    if isinstance(results, Results):
        results = _document(results)
    if isinstance(baseline, Results):
        baseline = _document(baseline)
    return _compare_docs([results], [baseline], allow_unlike_workloads)


def compare_runs(
    baseline: Sequence[Document],
    candidate: Sequence[Document],
    *,
    allow_unlike_workloads: bool = False,
) -> Comparison:
    """N runs a side (``--repeat N``, ABAB...): each side's runs' windows pooled.

    Each judged metric is read from all of a side's windows and bootstrapped in blocks inside
    each run, its variance plus the between-run variance (``stats.between_run_variance``), so
    two runs a side decide; accuracy sums the runs' predictions; rows not judged show the mean
    over runs. Bonferroni and the practical threshold as ``compare`` (which this is with one run
    a side). ``run_ids``/``baseline_run_ids`` name every run; ``baseline_run_id`` is None for
    several baseline runs (no one run is "the baseline").
    """
    if not baseline or not candidate:
        return _unusable(f"no runs (baseline {len(baseline)}, candidate {len(candidate)})", None)
    return _compare_docs(candidate, baseline, allow_unlike_workloads)


def _mean_summary(docs: Sequence[Document]) -> dict[str, float | None]:
    """Each summary metric's mean over the runs that have it (one run: its summary)."""
    flats = [summary_numbers(d) for d in docs]
    if len(flats) == 1:
        return flats[0]
    out: dict[str, float | None] = {}
    for key in dict.fromkeys(k for f in flats for k in f):
        values = [v for f in flats if (v := f.get(key)) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _compare_docs(
    candidate: Sequence[Document], baseline: Sequence[Document], allow_unlike: bool
) -> Comparison:
    """The comparison of one or more candidate runs with one or more baseline runs."""
    for side, docs in (("the run", candidate), ("the baseline", baseline)):
        for doc in docs:
            why = never_measured(doc)
            if why is not None:
                return _unusable(f"{side} {doc.get('run_id')!r}: {why}", baseline[0])
    run_w = [window_series(d) for d in candidate]
    base_w = [window_series(d) for d in baseline]
    tests = _window_tests(run_w, base_w)
    acc = _accuracy_row(candidate, baseline)
    if acc is not None:
        tests["accuracy"] = acc
    # Every run against the first baseline run: one workload throughout, or no verdicts.
    work = list(
        dict.fromkeys(
            w for d in (*candidate, *baseline[1:]) for w in workload_differences(d, baseline[0])
        )
    )
    alpha = None
    problem = None
    if work and not allow_unlike:
        problem = (
            "the workloads differ (" + "; ".join(work) + "): no verdicts between unlike runs; "
            "compare runs of one workload (--set overrides reach the baseline scenario too), or "
            "pass allow_unlike_workloads=True (harness compare --allow-unlike-workloads)"
        )
        for row, _ in tests.values():
            row.verdict, row.note = Verdict.NOT_JUDGED, "not judged: the workloads differ"
    else:
        alpha = _decide(list(tests.values()))
    env = environment_warnings(
        candidate[0].get("provenance") or {}, baseline[0].get("provenance") or {}
    )
    several = len(candidate) > 1 or len(baseline) > 1
    stability: list[str] = []
    for docs, series, side in ((candidate, run_w, "run"), (baseline, base_w, "baseline")):
        for i, (d, s) in enumerate(zip(docs, series, strict=True)):
            stability += stability_warnings(d, s, f"{side} {i + 1}" if several else side)
    cmp = Comparison(
        rule=RULE,
        baseline_run_id=None if len(baseline) > 1 else baseline[0].get("run_id"),
        baseline_name=baseline[0].get("name"),
        run_ids=[str(d.get("run_id")) for d in candidate],
        baseline_run_ids=[str(d.get("run_id")) for d in baseline],
        usable=problem is None,
        problem=problem,
        runs=[len(candidate), len(baseline)],
        alpha_per_metric=alpha,
        environment_differs=bool(env),
        workload_differs=bool(work),
        warnings=[*(f"workload differs: {w}" for w in work), *env],
        stability=stability,
        metrics=_rows_for_summary(
            _mean_summary(candidate),
            _mean_summary(baseline),
            {m: r for m, (r, _) in tests.items()},
            documents_values=not several,
        ),
    )
    cmp.headline = headline(cmp)
    return cmp


def _judged_run_metric(metric: str) -> bool:
    parts = metric.split(".")
    if len(parts) == 3 and parts[0] in LATENCY_FAMILIES and parts[1] == "latency_ms":
        return parts[2] in LATENCY_STATS
    return metric in RATE_SERIES or metric == "accuracy"


def comparison_for(
    results: Results | Document, baseline: Results | Document | None
) -> Comparison | None:
    """The comparison a report of ``results`` shows against ``baseline``: the embedded one when
    ``baseline`` is its baseline (or None), else a fresh ``compare`` against ``baseline``, so a
    table never mixes one baseline's values with another's changes. None without either.
    The embedded one is read as recorded: ``model_fields_set`` holds the keys it has. A parsed
    results.json is read with ``results_of``."""
    if not isinstance(results, Results):
        results = results_of(results)
    if baseline is not None and not isinstance(baseline, Results):
        baseline = results_of(baseline)
    embedded = (
        Comparison.model_validate(results.comparison) if results.comparison is not None else None
    )
    if baseline is None or (embedded is not None and embedded.baseline_run_id == baseline.run_id):
        return embedded
    return compare(results, baseline)


def _document(results: Results) -> Document:
    """``results`` as the document it was read from (the statistics still read documents)."""
    return results.model_dump(mode="json", by_alias=True, exclude_unset=True)
