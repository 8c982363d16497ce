"""Buckets -> the rollout judge's observations (harness/analysis/histogram_cohorts.py) and the
judge over Prometheus (harness/analysis/prometheus_judge.py), on range queries recorded from
a real Prometheus that scraped a real canary run (tests/harness/analysis/data/
prometheus_canary_ranges.json: scenarios/canary.yaml with stack.prometheus.enabled=true, real
backend and TorchServe, 1 s scrape; the file also holds that run's in-run rollout record and
PromQL's own histogram_quantile of the whole run)."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis.histogram_cohorts import (
    HistogramCohort,
    bucket_quantile,
    increases,
    pseudo_samples,
)
from harness.analysis.prometheus_judge import (
    QUERIES,
    JudgeSettings,
    NoSeries,
    Series,
    judge_series,
    rollout_steps,
    series_from,
)
from harness.collectors.prometheus_api import RangeResult
from harness.results.model import RolloutRecord
from harness.scenario import load_scenario

DATA = Path(__file__).parent / "data" / "prometheus_canary_ranges.json"
CANARY = Path(__file__).resolve().parents[3] / "scenarios" / "canary.yaml"


@cache
def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DATA.read_text())
    return doc


def _series() -> Series:
    got = {r["query"]: RangeResult.model_validate(r) for r in _doc()["ranges"]}
    return series_from(got, "recorded")


def _settings() -> JudgeSettings:
    ro = load_scenario(CANARY).rollout
    assert ro is not None
    return JudgeSettings(
        judge=ro.judge, settle_s=ro.settle_s, look_every_s=ro.look_every_s,
        budget_s=ro.budget_s, final_percent=ro.steps[-1],
    )  # fmt: skip


def test_increases_count_through_a_reset_and_a_gap() -> None:
    # 5 -> 7 (+2), gap, 9 (+2), reset to 1 (+1), 4 (+3)
    v = np.array([5.0, 7.0, np.nan, 9.0, 1.0, 4.0])
    assert increases(v).tolist() == [0.0, 2.0, 2.0, 4.0, 5.0, 8.0]


def test_pseudo_samples_keep_every_bucket_count() -> None:
    edges = np.array([1.0, 2.0, 5.0])
    counts = np.array([3.0, 0.0, 4.0, 2.0])  # 2 beyond the last edge (+Inf)
    x = pseudo_samples(edges, counts)
    assert x.size == 9 and np.all(np.diff(x[:-1]) >= 0)
    binned = np.histogram(x[np.isfinite(x)], bins=[0.0, 1.0, 2.0, 5.0])[0].tolist()
    assert binned == [3, 0, 4]
    assert np.isinf(x[-2:]).all()  # the +Inf bucket's observations are never answered in time
    # evenly inside the bucket, as histogram_quantile interpolates: 3 in (0, 1] at 1/6, 1/2, 5/6
    assert x[:3] == pytest.approx([1 / 6, 0.5, 5 / 6])


def test_thinned_pseudo_samples_keep_the_distribution() -> None:
    edges = np.array([1.0, 2.0, 4.0, 8.0])
    counts = np.array([300.0, 600.0, 90.0, 10.0, 0.0])
    x = pseudo_samples(edges, counts, n=100)  # one observation per 10 frames
    assert x.size == 100
    for q in (0.5, 0.95, 0.99):
        # the thinned sample's quantile sits in the bucket of the histogram's own quantile
        hq = bucket_quantile(edges, counts, q)
        assert hq is not None
        lo = max([0.0, *[e for e in edges if e < hq]])
        hi = min(e for e in edges if e >= hq)
        assert lo <= float(np.quantile(x, q)) <= hi


def test_mismatched_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="need edges \\+ 1"):
        pseudo_samples(np.array([1.0, 2.0]), np.array([1.0, 2.0]))


def test_bucket_quantile_is_promqls_histogram_quantile() -> None:
    """On the recorded run: our quantile of the whole run's bucket counts equals what the real
    Prometheus computed with histogram_quantile over the same buckets."""
    series = _series()
    promql = _doc()["promql_quantiles_at_end"]["values"]
    for route, cohort in series.cohorts.items():
        whole = HistogramCohort(cohort)
        frames = whole.frame_counts()
        inference, _ = whole.inference_counts()
        for q in ("0.5", "0.95"):
            ours = bucket_quantile(cohort.frame_edges, frames, float(q))
            assert ours == pytest.approx(promql["frame"][route][q], rel=1e-9)
            ours = bucket_quantile(cohort.inference_edges, inference, float(q))
            assert ours == pytest.approx(promql["inference"][route][q], rel=1e-9)


def test_steps_come_from_the_rollout_percent_gauge() -> None:
    series = _series()
    steps = rollout_steps(series.t, series.percent)
    assert [s.percent for s in steps] == [10, 50, 100]
    assert [s.ended for s in steps] == [True, True, False]
    t = np.arange(6.0)
    assert rollout_steps(t, np.array([0, 0, 10, 10, 0, 0.0]))[0].end_s == 4.0
    assert rollout_steps(t, np.zeros(6)) == []


def test_the_prometheus_judge_decides_each_step_as_the_in_run_judge_did() -> None:
    """Item 5 on the recorded run: same decision per step, and the counts the statistics
    rest on (sessions, frames, classifications) within a few percent of the in-run judge's."""
    in_run = RolloutRecord.model_validate(_doc()["in_run_rollout"])
    record = judge_series(_series(), _settings())
    assert record.outcome == in_run.outcome == "completed"
    assert [s.percent for s in record.steps] == [s.percent for s in in_run.steps]
    assert [s.decision for s in record.steps] == [s.decision for s in in_run.steps]
    for ours, theirs in zip(record.steps, in_run.steps, strict=True):
        a, b = ours.judgements[-1].figures, theirs.judgements[-1].figures
        for side in ("torchserve", "local"):
            fa, fb = getattr(a, side), getattr(b, side)
            assert abs(fa.sessions - fb.sessions) <= 2
            assert fa.frames == pytest.approx(fb.frames, rel=0.1)
            assert abs(fa.inferences - fb.inferences) <= max(2, 0.1 * fb.inferences)
        # server-side latency (received -> reply built) never exceeds what the client saw
        # (scheduled -> reply): the in-run figure is at or above the bucket holding ours
        for side in ("torchserve", "local"):
            ours_p = getattr(a, side).inference_latency_ms.p50
            theirs_p = getattr(b, side).inference_latency_ms.p50
            lo = max([0.0, *[e * 1000 for e in _series().inference_edges if e * 1000 < ours_p]])
            assert theirs_p >= lo


def test_a_slow_canary_cohort_aborts_and_a_short_one_is_inconclusive() -> None:
    """The same recorded series, edited: the TorchServe cohort's classifications moved to
    the 1-2 s bucket abort step 1; a step that ends before enough evidence is inconclusive."""
    series = _series()
    ts = series.cohorts["torchserve"]
    slow = ts.inference_buckets.copy()
    edges = list(ts.inference_edges)
    one_s = edges.index(2.0)  # the (1, 2] s bucket
    slow[:, one_s] = slow.sum(axis=1)
    slow[:, :one_s] = 0.0
    slow[:, one_s + 1 :] = 0.0
    from dataclasses import replace

    bad = replace(
        series, cohorts={**series.cohorts, "torchserve": replace(ts, inference_buckets=slow)}
    )
    record = judge_series(bad, _settings())
    assert record.outcome == "aborted" and record.failed_step == 0
    (j,) = record.steps[0].judgements
    failed = [c.criterion for c in j.criteria if c.status == "fail"]
    assert failed == ["inference.p50 latency"], j.reason
    # the first step ended 3 s after it was set: far too few TorchServe observations
    steps = rollout_steps(series.t, series.percent)
    cut = series.percent.copy()
    first = int(np.searchsorted(series.t, steps[0].set_s))
    cut[first + 3 :] = 0.0
    short = judge_series(replace(series, percent=cut), _settings())
    assert short.outcome == "inconclusive", short.reason
    assert short.steps[0].judgements[0].settle


def test_no_series_is_an_error_naming_it() -> None:
    empty = {expr: RangeResult(query=expr, start=0.0, end=10.0, step=1.0) for expr, _ in QUERIES}
    with pytest.raises(NoSeries, match="no signflow_rollout_percent series at X"):
        series_from(empty, "at X")


def test_accuracy_is_never_judged_from_prometheus() -> None:
    record = judge_series(_series(), _settings())
    for step in record.steps:
        acc = next(c for c in step.judgements[-1].criteria if c.criterion == "accuracy")
        assert acc.status == "n/a" and "ground truth" in acc.why
    assert not math.isnan(record.steps[0].set_s)


def test_an_in_run_look_without_prometheus_is_undecided_and_says_why() -> None:
    """rollout.judge.source: prometheus with nothing answering: never a decision on no data."""
    from harness.analysis.prometheus_judge import judge_window
    from harness.scenario.models import RolloutJudge
    from harness.stack.procs import free_port

    url = f"http://127.0.0.1:{free_port()}"
    look = judge_window(url, (100.0, 110.0), RolloutJudge())
    assert look.decision == "continue" and "unreachable" in look.reason
    last = judge_window(url, (100.0, 110.0), RolloutJudge(), final=True)
    assert last.decision == "inconclusive"


def test_source_prometheus_needs_the_stacks_prometheus() -> None:
    from harness.scenario import ScenarioError

    with pytest.raises(ScenarioError, match=r"set stack\.prometheus\.enabled: true"):
        load_scenario(CANARY, ["rollout.judge.source=prometheus"])
    sc = load_scenario(CANARY, ["rollout.judge.source=prometheus", "stack.prometheus.enabled=true"])
    assert sc.rollout is not None and sc.rollout.judge.source == "prometheus"


def test_a_day_long_undecided_step_costs_a_few_hundred_looks() -> None:
    """Looks every 10 s for the first 120, then whenever the span grew by 5 %: a day at 10 s
    is ~200 looks, not 8640 (the bounds hold at every look: any schedule keeps them valid)."""
    from harness.analysis.histogram_cohorts import CohortSeries
    from harness.scenario.models import RolloutJudge

    step = 10.0
    t = np.arange(0.0, 86_400.0 + step, step)
    fe = np.array([0.001, 0.002, 0.005])
    ie = np.array([0.01, 0.02, 0.05])

    def cohort(rate: float) -> CohortSeries:
        frames = np.outer(t, [0.6, 0.3, 0.1, 0.0]) * rate
        inference = np.outer(t, [0.3, 0.5, 0.2, 0.0]) * rate / 15
        return CohortSeries(
            t=t, frame_edges=fe, frame_buckets=frames, inference_edges=ie,
            inference_buckets=inference, inference_local_buckets=inference * 0,
            errors=t * 0, sessions_opened=t * 0, sessions_open=np.full(t.size, 5.0),
        )  # fmt: skip

    series = Series(
        start=0.0, step=step, t=t, percent=np.r_[0.0, np.full(t.size - 1, 10.0)],
        cohorts={"torchserve": cohort(1.0), "local": cohort(9.0)}, fps=30.0,
        frame_edges=list(fe), inference_edges=list(ie),
    )  # fmt: skip
    # the same distribution and no allowance: neither passes nor fails, ever
    judge = RolloutJudge(latency=["frame.p95"], latency_allowance_ms=0, latency_allowance_ratio=0)
    record = judge_series(series, JudgeSettings(judge=judge, look_every_s=step))
    (only,) = record.steps
    assert only.decision is None and record.outcome == "running"  # still undecided: continue
    assert 120 < len(only.looks) < 260
    at = [look.at_s for look in only.looks]
    assert at == sorted(at) and at[-1] == t[-1]
