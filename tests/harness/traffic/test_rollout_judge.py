"""The rollout judge on constructed cohorts: advance, abort, inconclusive, and why; its
sequential error rates on simulated series (A/A, shifted, thin data), seeded."""

from __future__ import annotations

import numpy as np
import pytest
from cohorts import simulate

from harness.analysis.rollout import CohortFrames, judge_step, rollout_gate
from harness.exitcodes import ExitCode
from harness.results.model import RolloutRecord, Verdict
from harness.runner.execute import gates_verdict
from harness.scenario.models import RolloutJudge

WINDOW = (0.0, 20.0)


def _judge(**kw: object) -> RolloutJudge:
    return RolloutJudge(**kw)  # type: ignore[arg-type]


def _crit(out, name):  # type: ignore[no-untyped-def]
    return next(c for c in out.criteria if c.criterion == name)


def test_same_behaviour_advances_with_its_evidence() -> None:
    rng = np.random.default_rng(1)
    canary, control = simulate(rng, 4), simulate(rng, 12)
    out = judge_step(canary, control, _judge(), WINDOW)
    assert out.decision == "advance", out.reason
    assert {c.status for c in out.criteria} <= {"pass", "n/a"}
    assert out.figures.torchserve.sessions == 4
    assert out.figures.local.sessions == 12
    crit = _crit(out, "inference.p50 latency")
    ev = crit.evidence
    assert crit.status == "pass" and ev is not None
    assert ev.units == "classifications" and ev.n_torchserve >= 12
    # the TorchServe interval's upper end is at or below the pass bar
    assert ev.ci_torchserve[1] is not None and ev.pass_below is not None
    assert ev.ci_torchserve[1] <= ev.pass_below
    # Bonferroni: 9 bounds a fail rests on, 4 a pass does (two latency criteria)
    assert ev.alpha == pytest.approx(0.01 / 9) and ev.alpha_pass == pytest.approx(0.01 / 4)


def test_slow_torchserve_cohort_aborts_naming_the_criterion() -> None:
    rng = np.random.default_rng(2)
    canary = simulate(rng, 4, inference_ms=1000.0, queue_frames=30)
    control = simulate(rng, 12)
    out = judge_step(canary, control, _judge(), WINDOW)
    assert out.decision == "abort"
    failed = [c.criterion for c in out.criteria if c.status == "fail"]
    assert "inference.p50 latency" in failed and "frame.p95 latency" in failed
    assert "worse beyond the" in out.reason and "with confidence" in out.reason
    crit = _crit(out, "inference.p50 latency")
    assert crit.torchserve > 900 and crit.local < 20
    ev = crit.evidence
    assert ev is not None and ev.fail_above is not None
    assert ev.ci_torchserve[0] is not None and ev.ci_torchserve[0] > ev.fail_above


def test_a_slower_hop_within_the_allowance_advances() -> None:
    # TorchServe's HTTP hop: +15 ms per inference, within the 25 ms allowance.
    rng = np.random.default_rng(3)
    canary = simulate(rng, 4, inference_ms=21.0)
    control = simulate(rng, 12, inference_ms=6.0)
    out = judge_step(canary, control, _judge(), WINDOW)
    assert _crit(out, "inference.p50 latency").status == "pass"
    assert out.decision == "advance"
    # ...and beyond a tighter allowance it aborts.
    tight = judge_step(canary, control, _judge(latency_allowance_ms=5), WINDOW)
    assert tight.decision == "abort"


def test_errors_and_accuracy_abort() -> None:
    rng = np.random.default_rng(4)
    control = simulate(rng, 12)
    errors = judge_step(simulate(rng, 4, error_share=0.2), control, _judge(), WINDOW)
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
    crit = _crit(out, "fallback")
    assert crit.status == "fail" and crit.torchserve > 0.8
    assert "answered locally" in out.reason
    healthy = judge_step(simulate(rng, 4, local_share=0.02), control, _judge(), WINDOW)
    assert _crit(healthy, "fallback").status != "fail"


def test_too_small_a_cohort_continues_then_is_inconclusive_never_aborted() -> None:
    rng = np.random.default_rng(5)
    # One slow TorchServe session: one user never decides a step, either way.
    canary, control = simulate(rng, 1, inference_ms=1000.0, queue_frames=30), simulate(rng, 12)
    out = judge_step(canary, control, _judge(min_sessions=2), WINDOW)
    assert out.decision == "continue"
    assert "torchserve cohort has 1 session (need 2)" in out.reason
    last = judge_step(canary, control, _judge(min_sessions=2), WINDOW, final=True)
    assert last.decision == "inconclusive"
    assert last.reason.startswith("the evidence budget ran out with no criterion failed")


def test_thin_data_is_undecided_and_says_how_much_more() -> None:
    rng = np.random.default_rng(6)
    canary, control = simulate(rng, 2, t1=4.0), simulate(rng, 12, t1=4.0)
    out = judge_step(canary, control, _judge(), (0.0, 4.0), final=True)
    assert out.decision == "inconclusive"
    crit = _crit(out, "inference.p50 latency")
    assert crit.status == "n/a" and crit.evidence is not None
    assert crit.evidence.needed == 12 - crit.evidence.n_torchserve
    assert "at least 12 needed" in crit.why


def test_the_window_cuts_the_frames() -> None:
    rng = np.random.default_rng(7)
    canary, control = simulate(rng, 3), simulate(rng, 3)
    out = judge_step(canary, control, _judge(), (5.0, 10.0))
    assert out.figures.torchserve.frames == pytest.approx(3 * 5 * 30, abs=3)
    assert out.figures.torchserve.sessions == 3
    assert CohortFrames().between(0, 1).sessions == 0


@pytest.mark.parametrize(
    ("outcome", "passed"),
    [("completed", True), ("aborted", False), ("inconclusive", False), ("incomplete", False)],
)
def test_rollout_gate(outcome: str, passed: bool) -> None:
    gate = rollout_gate({"outcome": outcome, "reason": "why"})
    assert gate is not None and gate["passed"] is passed
    want = None if passed else ("INCONCLUSIVE: why" if outcome == "inconclusive" else "why")
    assert gate["reason"] == want
    assert rollout_gate(None) is None


def test_three_outcomes_and_their_exit_codes() -> None:
    ok = {"metric": "errors.total", "passed": True}
    for outcome, verdict, code in (
        ("completed", Verdict.PASSED, ExitCode.OK),
        ("aborted", Verdict.FAILED, ExitCode.GATES_FAILED),
        ("inconclusive", Verdict.INCONCLUSIVE, ExitCode.INCONCLUSIVE),
    ):
        rec = {"outcome": outcome, "reason": "why", "steps": []}
        RolloutRecord.model_validate(rec)  # the results contract knows the outcome
        gate = rollout_gate(rec)
        assert gate is not None
        assert gates_verdict([ok, gate], rec) == (verdict, code)
    # Inconclusive never hides a failed gate: another gate lost makes the run FAILED.
    rec = {"outcome": "inconclusive", "reason": "why"}
    lost = {"metric": "errors.total", "passed": False}
    assert gates_verdict([lost, rollout_gate(rec)], rec) == (  # type: ignore[list-item]
        Verdict.FAILED,
        ExitCode.GATES_FAILED,
    )
    assert ExitCode.INCONCLUSIVE == 4 and Verdict.INCONCLUSIVE.value == "inconclusive"


def _looks(canary: CohortFrames, control: CohortFrames, judge: RolloutJudge, end: int) -> str:
    """Judge every second from 2 s to ``end``: the first decision, or inconclusive."""
    for t in range(2, end + 1):
        d = judge_step(canary, control, judge, (0.0, float(t)), final=t == end).decision
        if d != "continue":
            return d
    return "continue"


def test_error_rates_of_the_sequential_judge_seeded() -> None:
    """Judged every second: A/A never aborts (20 rollouts of 30 looks), a 2x slower inference
    p50 is aborted (>= 9 of 10 within 30 s at a 25 % allowance), and the same 2x from a thin
    cohort (one TorchServe session, min_sessions 2) is inconclusive, never aborted.
    benchmarks/rollout_judge.py measures the rates over 2,000 rollouts."""
    judge = _judge(latency_allowance_ms=50)
    relative = _judge(latency_allowance_ms=0)
    aa = [
        _looks(simulate(rng, 2, t1=30.0, inference_ms=40.0),
               simulate(rng, 18, t1=30.0, inference_ms=40.0), judge, 30)
        for rng in (np.random.default_rng(200 + s) for s in range(20))
    ]  # fmt: skip
    assert "abort" not in aa
    slow = [
        _looks(simulate(rng, 2, t1=30.0, inference_ms=200.0, queue_frames=6),
               simulate(rng, 18, t1=30.0, inference_ms=100.0, queue_frames=6), relative, 30)
        for rng in (np.random.default_rng(300 + s) for s in range(10))
    ]  # fmt: skip
    assert slow.count("abort") >= 9, slow
    thin = [
        _looks(simulate(rng, 1, t1=30.0, inference_ms=200.0, queue_frames=6),
               simulate(rng, 18, t1=30.0, inference_ms=100.0, queue_frames=6), relative, 30)
        for rng in (np.random.default_rng(400 + s) for s in range(5))
    ]  # fmt: skip
    assert thin == ["inconclusive"] * 5


def test_a_straddling_criterion_says_how_much_more_would_settle_it() -> None:
    """Wide TorchServe latencies around a p50 just under the bar: the last look projects how
    many more classifications, at the spread seen so far, would decide it."""
    rng = np.random.default_rng(9)
    canary = simulate(rng, 3, t1=24.0, inference_ms=60.0)
    control = simulate(rng, 18, t1=24.0, inference_ms=10.0)
    judge = _judge(latency_allowance_ms=60, latency=["inference.p50"])
    out = judge_step(canary, control, judge, (0.0, 24.0), final=True)
    crit = _crit(out, "inference.p50 latency")
    assert out.decision == "inconclusive" and crit.status == "n/a", out.reason
    ev = crit.evidence
    assert ev is not None and ev.ci_torchserve[1] is not None  # bounded, but above the bar
    assert ev.needed is not None and ev.needed > 0
    from harness.analysis.sequential import quantile_bounds

    # the same data repeated that often does pass
    more = np.resize(canary.latency_units("inference"), ev.n_torchserve + ev.needed)
    hi = quantile_bounds(more, 0.5, ev.alpha, ev.alpha_pass)[1]  # type: ignore[arg-type]
    assert ev.pass_below is not None and hi <= ev.pass_below


def test_the_console_and_the_banner_say_inconclusive() -> None:
    from harness.results.verdict import verdict_line

    gate = {"expr": "rollout", "metric": "rollout", "op": None, "passed": False}
    doc = {"verdict": "inconclusive", "valid": True, "gates": [gate]}
    line = verdict_line(doc)
    assert line.status == "inconclusive"
    assert line.headline == "INCONCLUSIVE: the rollout ran out of evidence with nothing failed"
