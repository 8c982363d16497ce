"""The rollout judge on constructed cohorts: advance, hold, abort, and why."""

from __future__ import annotations

import numpy as np
import pytest
from cohorts import simulate

from harness.analysis.rollout import compare_cohorts, judge_step, rollout_gate
from harness.scenario.models import RolloutJudge

WINDOW = (0.0, 20.0)


def _judge(**kw: object) -> RolloutJudge:
    return RolloutJudge(**kw)  # type: ignore[arg-type]


def test_same_behaviour_advances() -> None:
    rng = np.random.default_rng(1)
    canary, control = simulate(rng, 4), simulate(rng, 12)
    out = judge_step(canary, control, _judge(), WINDOW)
    assert out.decision == "advance", out.reason
    assert {c.status for c in out.criteria} <= {"pass", "n/a"}
    assert out.figures.torchserve.sessions == 4
    assert out.figures.local.sessions == 12


def test_slow_torchserve_cohort_aborts_naming_the_criterion() -> None:
    rng = np.random.default_rng(2)
    canary = simulate(rng, 4, inference_ms=1000.0, queue_frames=30)
    control = simulate(rng, 12)
    out = judge_step(canary, control, _judge(), WINDOW)
    assert out.decision == "abort"
    failed = [c.criterion for c in out.criteria if c.status == "fail"]
    assert "inference.p50 latency" in failed and "frame.p95 latency" in failed
    assert "significantly worse" in out.reason
    # The statistics are the project's (one call into compare_windows), with their verdict.
    crit = next(c for c in out.criteria if c.criterion == "inference.p50 latency")
    assert crit.statistics["verdict"] == "worse"
    assert crit.torchserve > 900 and crit.local < 20


def test_a_slower_hop_within_the_allowance_advances() -> None:
    # TorchServe's HTTP hop: +15 ms per inference is significant but within 25 ms.
    rng = np.random.default_rng(3)
    canary = simulate(rng, 4, inference_ms=21.0)
    control = simulate(rng, 12, inference_ms=6.0)
    out = judge_step(canary, control, _judge(), WINDOW)
    crit = next(c for c in out.criteria if c.criterion == "inference.p50 latency")
    assert crit.statistics["verdict"] == "worse"
    assert crit.status == "pass"
    assert out.decision == "advance"
    # ...and beyond a tighter allowance it aborts.
    tight = judge_step(canary, control, _judge(latency_allowance_ms=5), WINDOW)
    assert tight.decision == "abort"


def test_errors_and_accuracy_abort() -> None:
    rng = np.random.default_rng(4)
    control = simulate(rng, 12)
    errors = judge_step(simulate(rng, 4, error_share=0.05), control, _judge(), WINDOW)
    assert errors.decision == "abort" and "errors" in errors.reason
    wrong = judge_step(simulate(rng, 6, accuracy=0.5), control, _judge(), WINDOW)
    assert wrong.decision == "abort" and "accuracy" in wrong.reason


def test_a_torchserve_cohort_served_locally_aborts() -> None:
    """Hedging hides a slow TorchServe's latency (the local hedge answers): the cohort's
    latency looks fine, but most of its classifications come from the local engine."""
    rng = np.random.default_rng(8)
    control = simulate(rng, 12)
    hidden = simulate(rng, 4, local_share=0.9)
    out = judge_step(hidden, control, _judge(), WINDOW)
    assert out.decision == "abort"
    crit = next(c for c in out.criteria if c.criterion == "fallback")
    assert crit.status == "fail" and crit.torchserve > 0.8
    assert "answered locally" in out.reason
    healthy = judge_step(simulate(rng, 4, local_share=0.02), control, _judge(), WINDOW)
    assert next(c for c in healthy.criteria if c.criterion == "fallback").status == "pass"


def test_too_small_a_cohort_holds_then_aborts_when_no_hold_is_left() -> None:
    rng = np.random.default_rng(5)
    canary, control = simulate(rng, 1), simulate(rng, 12)
    out = judge_step(canary, control, _judge(min_sessions=2), WINDOW)
    assert out.decision == "hold"
    assert "torchserve cohort has fewer than 2 sessions" in out.reason
    last = judge_step(canary, control, _judge(min_sessions=2), WINDOW, final=True)
    assert last.decision == "abort"
    assert last.reason.startswith("too little evidence")


def test_too_few_windows_holds() -> None:
    rng = np.random.default_rng(6)
    canary, control = simulate(rng, 4, t1=3.0), simulate(rng, 12, t1=3.0)
    out = judge_step(canary, control, _judge(), (0.0, 3.0))
    assert out.decision == "hold"
    assert "too little data" in out.reason


def test_compare_cohorts_is_per_window() -> None:
    rng = np.random.default_rng(7)
    rows = compare_cohorts(simulate(rng, 3), simulate(rng, 3), WINDOW, 5.0)
    row = rows["frame.latency_ms.p95"]
    assert row.n_run == 20 and row.n_baseline == 20  # one per 1-s window
    assert row.sample_unit == "window"


@pytest.mark.parametrize(
    ("outcome", "passed"), [("completed", True), ("aborted", False), ("incomplete", False)]
)
def test_rollout_gate(outcome: str, passed: bool) -> None:
    gate = rollout_gate({"outcome": outcome, "reason": "why"})
    assert gate is not None and gate["passed"] is passed
    assert gate["reason"] == (None if passed else "why")
    assert rollout_gate(None) is None


def test_no_false_abort_in_20_healthy_judgements() -> None:
    """The healthy canary's shape (10 % and 50 % of ~20 sessions, TorchServe's hop +15 ms on
    inference): 20 seeded judgements (10 seeds x 2 steps), no abort.
    benchmarks/rollout_judge.py measures the rate over more."""
    aborts = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        for share in (0.1, 0.5):
            ts = max(2, round(20 * share))
            canary = simulate(rng, ts, inference_ms=21.0)
            control = simulate(rng, 20 - ts)
            aborts += judge_step(canary, control, _judge(latency_allowance_ms=50),
                                 WINDOW).decision == "abort"  # fmt: skip
    assert aborts == 0
