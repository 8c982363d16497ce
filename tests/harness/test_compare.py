"""Baseline comparison statistics: results built by the real analysis from recorded-shape
LoadResults, and simulated runs with realistic window-to-window autocorrelation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from core_builders import build_load

from harness import hdr
from harness.analysis.compare import (
    Comparison,
    MetricComparison,
    Verdict,
    WindowSeries,
    compare,
    compare_runs,
    compare_windows,
    comparison_for,
)
from harness.analysis.stats import block_length
from harness.analysis.summary import summarize
from harness.scenario.models import Scenario

FIXTURES = Path(__file__).resolve().parents[1] / "report" / "fixtures"
PROVENANCE = {"cpu_model": "X", "cpu_count": 2, "gpu": None, "python": "3.11.7", "os": "Linux",
              "packages": {"torch": "2.13.0"}}  # fmt: skip


def scenario(duration_s: float, warmup_s: float = 2.0) -> Scenario:
    return Scenario.model_validate(
        {"name": "c", "stack": {"use_torchserve": True},
         "workload": {"sessions": 4, "duration_s": duration_s, "warmup_s": warmup_s}}
    )  # fmt: skip


def run_doc(
    median_ms: float,
    seed: int,
    duration_s: float = 32,
    warmup_s: float = 2,
    provenance: dict | None = None,
    error_every: int = 0,
) -> dict:
    """A results-like document from the real analysis: frame latencies lognormal around
    ``median_ms``, its level drifting from second to second as an AR(1) process (lag-1
    autocorrelation 0.6, 10 % log-sd: what a shared machine does), every ``error_every``-th
    frame of session 0 answered with an error."""
    rng = np.random.default_rng(seed)
    n = int(duration_s) + 1
    level = np.zeros(n)
    for i in range(1, n):
        level[i] = 0.6 * level[i - 1] + rng.normal(0, 0.1 * np.sqrt(1 - 0.36))
    count = [0]

    def reply(s: int, t: float) -> tuple:
        count[0] += 1
        lat = float(rng.lognormal(np.log(median_ms / 1000) + level[int(t)], 0.35))
        if error_every and s == 0 and count[0] % error_every == 0:
            return lat, None, None, "bad_frame"
        return lat, "torchserve", "1.0", None

    load = build_load(sessions=4, fps=30, duration_s=duration_s, warmup_s=warmup_s, reply=reply)
    summary, series, histograms, faults = summarize(load, {}, [], scenario(duration_s, warmup_s))
    return {"run_id": f"run-{seed}-{duration_s}", "name": "c", "summary": summary,
            "series": series, "histograms": histograms, "faults": faults,
            "provenance": provenance or PROVENANCE}  # fmt: skip


@pytest.fixture(scope="module")
def baseline() -> dict:
    return run_doc(40.0, seed=1)


def metric(c: Comparison, name: str) -> MetricComparison:
    return next(m for m in c.metrics if m.metric == name)


LATENCY = ("frame.latency_ms.p50", "frame.latency_ms.p90", "frame.latency_ms.p95",
           "frame.latency_ms.p99", "inference.latency_ms.p95", "frame.latency_ms.mean")  # fmt: skip


def test_clearly_better(baseline: dict) -> None:
    c = compare(run_doc(20.0, seed=2), baseline)
    for name in LATENCY:
        m = metric(c, name)
        assert m.verdict == Verdict.BETTER, m
        assert m.change is not None and m.change < -0.3
        assert m.p_value is not None and c.alpha_per_metric and m.p_value < c.alpha_per_metric
        assert m.ci_run and m.ci_baseline and m.ci_run[1] < m.ci_baseline[0]
        assert m.ci_change and m.ci_change[1] < 0
        assert m.better_when == "lower" and m.method == "block-bootstrap"
        assert m.n_run == 30 and m.n_baseline == 30 and m.sample_unit == "window"
    assert c.environment_differs is False and c.warnings == []
    assert c.baseline_run_id == "run-1-32"
    assert c.headline.startswith("BETTER: ") and "n = 30/30 windows" in c.headline


def test_clearly_worse_and_the_headline_names_it(baseline: dict) -> None:
    c = compare(run_doc(60.0, seed=3), baseline)
    for name in LATENCY:
        assert metric(c, name).verdict == Verdict.WORSE, metric(c, name)
    assert c.headline.startswith("WORSE: ") and "latency metrics worse" in c.headline
    assert c.worse() and all("latency" in w for w in c.worse())


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_same_distribution_is_no_significant_change(baseline: dict, seed: int) -> None:
    c = compare(run_doc(40.0, seed=seed), baseline)
    judged = [m for m in c.metrics if m.method is not None]
    assert judged and all(m.verdict != Verdict.WORSE for m in judged), c.headline
    assert all(m.verdict != Verdict.BETTER for m in judged), c.headline
    # 30 windows of a drifting machine: either no change, or honestly undecided.
    assert c.headline.startswith(("no significant change in ", "too little data to decide"))


def test_each_percentile_is_tested_on_its_own_series(baseline: dict) -> None:
    """p90 and p99.9 are read from their own merged histograms, not from the p95/p99 series."""
    run = run_doc(40.0, seed=7)
    c = compare(run, baseline)
    for stat in ("p90", "p95", "p99"):
        m = metric(c, f"frame.latency_ms.{stat}")
        assert m.run == pytest.approx(run["summary"]["frame"]["latency_ms"][stat])
        assert m.ci_run and m.ci_run[0] <= m.run <= m.ci_run[1]
    p90, p95 = metric(c, "frame.latency_ms.p90"), metric(c, "frame.latency_ms.p95")
    assert p90.ci_run and p95.ci_run and p90.ci_run[1] < p95.ci_run[1]
    # 3,600 replies a side: p99.9 needs 10,000, so it says so instead of guessing.
    p999 = metric(c, "frame.latency_ms.p999")
    assert p999.verdict == Verdict.TOO_LITTLE_DATA
    assert p999.note and "n = 3600 replies" in p999.note and "10000" in p999.note


def test_only_measured_properties_of_the_system_get_verdicts(baseline: dict) -> None:
    c = compare(run_doc(20.0, seed=8), baseline)
    not_judged = ("frames.answered", "generator.late_threshold_ms", "generator.cpu_percent_mean",
                  "frame.latency_ms.max", "errors.total", "duration_s", "served_by.torchserve",
                  "frame.latency_uncorrected_ms.p95")  # fmt: skip
    for name in not_judged:
        m = metric(c, name)
        assert m.verdict == Verdict.NOT_JUDGED and m.method is None and m.note, m
    tp = metric(c, "throughput.frames_per_s")
    assert tp.change == pytest.approx(0.0) and tp.verdict == Verdict.SAME
    assert metric(c, "errors.per_s").verdict == Verdict.SAME


def test_errors_appearing_are_worse_as_a_rate(baseline: dict) -> None:
    c = compare(run_doc(40.0, seed=9, error_every=7), baseline)
    m = metric(c, "errors.per_s")
    assert m.verdict == Verdict.WORSE and m.run and m.run > 0 and m.baseline == 0
    # The latency population excludes error replies: the same frames in summary and series.
    assert metric(c, "frame.latency_ms.p50").verdict == Verdict.SAME


def test_different_environment_and_workload_warn(baseline: dict) -> None:
    other = dict(PROVENANCE, cpu_model="Y", gpu="NVIDIA H100",
                 packages={"torch": "2.12.0"})  # fmt: skip
    run = run_doc(40.0, seed=10, provenance=other)
    run["summary"]["fps"] = 15
    c = compare(run, baseline)
    assert c.environment_differs is True and c.workload_differs is True
    text = " ".join(c.warnings)
    assert "cpu_model" in text and "gpu" in text and "torch" in text and "fps 15" in text


def test_a_short_run_says_too_little_data_with_n() -> None:
    """Issue 12 item 5: a 6-s quickstart (4 windows a side) with p50 +417 %: not "no
    significant change" (the old Mann-Whitney floor) but too little data, n shown."""
    base = run_doc(100.0, seed=11, duration_s=6)
    run = run_doc(517.0, seed=12, duration_s=6)
    c = compare(run, base)
    m = metric(c, "frame.latency_ms.p50")
    assert m.change and m.change > 3
    assert m.verdict == Verdict.TOO_LITTLE_DATA and m.note and "n = 4/4 windows" in m.note
    assert c.headline.startswith("too little data to decide")
    assert any("only 4 measured windows" in w for w in c.stability)


def test_same_scenario_at_two_durations_has_no_worse_rows() -> None:
    """Issue 12 item 5: one scenario, 8 s vs 10 s, used to give 10 "worse" rows."""
    c = compare(run_doc(40.0, seed=13, duration_s=10), run_doc(40.0, seed=14, duration_s=8))
    assert c.worse() == [], [(m.metric, m.change) for m in c.metrics if m.verdict == "worse"]
    assert metric(c, "frames.answered").verdict == Verdict.NOT_JUDGED


def test_a_run_that_never_measured_cannot_be_compared(baseline: dict) -> None:
    empty = {"run_id": "x", "verdict": "error", "summary": None}
    c = compare(baseline, empty)
    assert c.usable is False and c.metrics == []
    assert c.headline.startswith("cannot compare: the baseline 'x'")


def test_version_1_fixtures_compare() -> None:
    """The recorded schema-v1 documents still compare (window histograms decoded as us)."""
    quick = json.loads((FIXTURES / "recorded-quickstart.results.json").read_text())
    hot = json.loads((FIXTURES / "recorded-hot-reload.results.json").read_text())
    c = compare(hot, quick, allow_unlike_workloads=True)  # two scenarios: asked for
    assert c.usable and metric(c, "frame.latency_ms.p95").n_run == 27
    assert metric(c, "frame.latency_ms.p95").n_baseline == 8
    dumped = c.model_dump(mode="json")
    assert Comparison.model_validate(dumped) == c


def test_a_report_against_another_baseline_recomputes() -> None:
    """`harness report R --baseline OTHER` must not mix OTHER's values with R's embedded
    changes: against another baseline the comparison is made afresh."""
    run = json.loads((FIXTURES / "synthetic-gpu-torchserve.results.json").read_text())
    other = json.loads((FIXTURES / "recorded-quickstart.results.json").read_text())
    assert comparison_for(run, None) == Comparison.model_validate(run["comparison"])
    fresh = comparison_for(run, other)
    assert fresh and fresh.baseline_run_id == other["run_id"]
    p95 = next(m for m in fresh.metrics if m.metric == "frame.latency_ms.p95")
    assert p95.baseline == other["summary"]["frame"]["latency_ms"]["p95"]


# --- repeated runs: the run is the sample ---------------------------------------------------


def test_compare_runs_pools_the_runs_windows_so_two_a_side_decide() -> None:
    """Issue 20 item 1: `--repeat 2` (the least the help allows) used to say "too little data"
    for every metric (3 runs a side needed); the runs' windows are now pooled."""
    base = [run_doc(40.0, seed=s, duration_s=32) for s in (20, 21)]
    same = [run_doc(40.0, seed=s, duration_s=32) for s in (24, 25)]
    slower = [run_doc(80.0, seed=s, duration_s=32) for s in (28, 29)]
    c = compare_runs(base, same)
    assert c.runs == [2, 2] and c.usable and c.worse() == []
    m = metric(c, "frame.latency_ms.p50")
    assert m.method and "pooled" in m.method and m.n_run == 60 and m.verdict == Verdict.SAME
    assert c.headline.startswith("no significant change") and "over 2/2 runs" in c.headline
    w = compare_runs(base, slower)
    for name in LATENCY:
        assert metric(w, name).verdict == Verdict.WORSE, metric(w, name)
    # The set names every run, not its first baseline run.
    assert w.baseline_run_id is None
    assert w.baseline_run_ids == [d["run_id"] for d in base]
    assert w.run_ids == [d["run_id"] for d in slower]


def test_repeated_runs_must_share_one_workload() -> None:
    base = [run_doc(40.0, seed=s, duration_s=12) for s in (20, 21)]
    other = [run_doc(40.0, seed=s, duration_s=10) for s in (24, 25)]
    c = compare_runs(base, other)
    assert not c.usable and c.worse() == [] and "duration_s 10.0 vs baseline 12.0" in c.headline


# --- the false-alarm rate and the power, on simulated runs ---------------------------------


def simulated_side(
    rng: np.random.Generator, scale: float = 1.0, n: int = 60, per_window: int = 120
) -> WindowSeries:
    """One run's measured windows: lognormal frame latencies (median 40 ms, log-sd 0.35)
    whose level drifts as AR(1), lag-1 autocorrelation 0.6, 10 % log-sd from window to window
    (the recorded fixtures show 0.6-0.9 at larger swings). ``scale`` multiplies every latency."""
    level = np.empty(n)
    level[0] = rng.normal(0, 0.1)
    for i in range(1, n):
        level[i] = 0.6 * level[i - 1] + rng.normal(0, 0.1 * np.sqrt(1 - 0.36))
    hists = [
        hdr.histogram_of(rng.lognormal(np.log(0.040 * scale) + lv, 0.35, per_window), 5.0)
        for lv in level
    ]
    return WindowSeries(latency={"frame": hists}, rates={"throughput.frames_per_s": [120.0] * n})


def test_a_vs_a_says_no_significant_change_in_at_least_95_percent() -> None:
    """The false-alarm rate: 80 comparisons of one configuration with itself, 60 windows a side:
    the first 80 of benchmarks/compare_calibration.py's seeds (which measures 2 % on 1,000;
    an 80-comparison estimate varies from 0 to ~8 % with the seeds drawn)."""
    alarms = same = 0
    for seed in range(80):
        rng = np.random.default_rng(90_000 + seed)
        c = compare_windows(simulated_side(rng), simulated_side(rng))
        alarms += any(m.verdict in (Verdict.WORSE, Verdict.BETTER) for m in c.metrics)
        same += c.headline.startswith("no significant change in ")
    assert alarms / 80 <= 0.05, f"false-alarm rate {alarms / 80:.1%}"
    assert same / 80 >= 0.95, f"'no significant change' in {same / 80:.1%}"


def test_a_real_20_percent_p95_shift_is_found() -> None:
    """Power: 30 comparisons against a candidate 20 % slower (every latency x 1.2), 60 windows
    a side (benchmarks/compare_calibration.py measures the power on more)."""
    found = 0
    for seed in range(30):
        rng = np.random.default_rng(90_000 + seed)
        c = compare_windows(simulated_side(rng), simulated_side(rng, scale=1.2))
        found += metric(c, "frame.latency_ms.p95").verdict == Verdict.WORSE
    assert found / 30 >= 0.8, f"power {found / 30:.0%}"


def test_block_length_follows_the_measured_autocorrelation() -> None:
    rng = np.random.default_rng(3)
    white = rng.normal(size=200)
    ar = np.empty(200)
    ar[0] = 0
    for i in range(1, 200):
        ar[i] = 0.8 * ar[i - 1] + rng.normal()
    assert block_length(white) <= 2
    assert 6 <= block_length(ar) <= 20
    assert block_length([1.0, 1.0, 1.0, 1.0, 1.0]) == 1


def repeated_side(
    rng: np.random.Generator,
    runs: int,
    inference_scale: float = 1.0,
    windows: int = 28,
    run_sd: float = 0.0,
) -> list[WindowSeries]:
    """``runs`` runs of ``windows`` measured windows (a 30-s run after a 2-s warm-up) of one
    drifting machine (the simulator above, continued from run to run), with a frame family
    (120 replies a window, median 10 ms) and an inference family (20 a window, median 12 ms,
    times ``inference_scale``), as a `--repeat` side; ``run_sd``: a level shift per run
    (log-sd), for a stack that settles differently each time it starts."""
    out = []
    level = rng.normal(0, 0.1)
    for _ in range(runs):
        lv = np.empty(windows)
        shift = rng.normal(0, run_sd) if run_sd else 0.0
        for i in range(windows):
            level = 0.6 * level + rng.normal(0, 0.1 * np.sqrt(1 - 0.36))
            lv[i] = level + shift
        frame = [hdr.histogram_of(rng.lognormal(np.log(0.010) + v, 0.35, 120), 5.0) for v in lv]
        inference = [
            hdr.histogram_of(rng.lognormal(np.log(0.012 * inference_scale) + v, 0.3, 20), 5.0)
            for v in lv
        ]
        rates = {"throughput.frames_per_s": list(rng.normal(120, 1, windows))}
        out.append(WindowSeries(latency={"frame": frame, "inference": inference}, rates=rates))
    return out


def test_repeat_2_a_vs_a_is_no_change_and_a_2x_inference_shift_is_worse() -> None:
    """Issue 20 target: A vs A at the least `--repeat` allows (2): "no significant change" for
    >= 95 % of the metrics with enough replies to be tested; a 2x inference shift: every
    inference latency metric worse. 8 pairs here (seconds each); benchmarks/
    compare_calibration.py --repeat 2 --trials 20 measures the target's 20 and more."""
    tested = same = found = 0
    for seed in range(8):
        rng = np.random.default_rng(70_000 + seed)
        c = compare_windows(repeated_side(rng, 2), repeated_side(rng, 2))
        rows = [m for m in c.metrics if "replies" not in (m.note or "")]
        assert all(m.verdict in (Verdict.SAME, Verdict.TOO_LITTLE_DATA) for m in rows)
        tested += len(rows)
        same += sum(m.verdict == Verdict.SAME for m in rows)
        w = compare_windows(repeated_side(rng, 2), repeated_side(rng, 2, inference_scale=2.0))
        inference = [m for m in w.metrics if m.metric.startswith("inference.") and m.p_value]
        found += bool(inference) and all(m.verdict == Verdict.WORSE for m in inference)
    assert same / tested >= 0.95, f"{same}/{tested} no significant change"
    assert found == 8, f"2x inference found worse in {found}/8"


def test_percentile_intervals_stay_inside_what_was_observed() -> None:
    """Issue 20 item 2: inference p99 57.1 ms (the run's maximum) was given a "95 % CI" of
    [2.08 ms, 1,569 ms]. 1,000 intervals of short, drifting runs (6 windows, 200 replies
    each): none reaches below 0 or above twice the side's largest reply."""
    checked = 0
    for seed in range(100):
        rng = np.random.default_rng(50_000 + seed)
        sides = [simulated_side(rng, n=6, per_window=200) for _ in range(2)]
        top = [max(h.get_max_value() for h in s.latency["frame"]) / hdr.US_PER_MS for s in sides]
        c = compare_windows(sides[0], sides[1])
        for stat in ("p50", "p90", "p95", "p99", "mean"):
            m = metric(c, f"frame.latency_ms.{stat}")
            for ci, hi in ((m.ci_run, top[1]), (m.ci_baseline, top[0])):
                assert ci is not None
                assert 0 <= ci[0] <= ci[1] <= 2 * hi, (stat, ci, hi)
                checked += 1
        # p99.9 of 1,200 replies: the observed range holds it with < 97.5 % confidence.
        assert metric(c, "frame.latency_ms.p999").ci_run is None
    assert checked == 1000


def test_an_undecided_change_is_stated_in_one_unit() -> None:
    """'the change may be anywhere in [-89%, +1e+01]' mixed a percent and a bare factor: both
    ends are percents, however large (issue 19)."""
    from harness.analysis.compare import MetricComparison, _decide
    from harness.analysis.stats import Test

    row = MetricComparison(metric="inference.latency_ms.p99", run=50.0, baseline=20.0,
                           change=1.5, better_when="lower", n_run=8, n_baseline=8,
                           sample_unit="window")  # fmt: skip
    _decide([(row, Test(p=0.5, effect=math.log(2.5), se=1.2, log=True, df=3.0))])
    assert row.verdict == Verdict.TOO_LITTLE_DATA
    assert row.ci_change is not None and row.ci_change[1] > 10  # a factor over 11
    assert row.note is not None
    lo, hi = row.note.split("anywhere in [")[1].split("]")[0].split(", ")
    assert lo.endswith("%") and hi.endswith("%") and "e+" not in hi, row.note
