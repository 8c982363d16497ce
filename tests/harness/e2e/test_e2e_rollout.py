"""The two shipped rollout scenarios end to end on the local stack (real backend, TorchServe,
WebSocket sessions), with their decisions asserted: canary.yaml walks 10 -> 50 -> 100 % and
passes (exit 0); rollout-abort.yaml aborts at its first step (exit 1). Each runs its shipped
duration (60 s and 50 s) plus the stack's start (~20 s here).
"""

from __future__ import annotations

import pytest
from test_e2e_cli import _no_leftovers, _results, _run

from harness.results.model import Results

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
]


def test_canary_walks_to_100_percent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, output = _run("canary.yaml", tmp_path)
    doc, run_dir = _results(tmp_path, "canary")
    ro = Results.model_validate(doc).rollout
    assert ro is not None
    assert ro.outcome == "completed", ro.reason
    assert code == 0 and doc["verdict"] == "passed", output[-3000:]
    assert [s.percent for s in ro.steps] == [10, 50, 100]
    assert [s.decision for s in ro.steps] == ["advance", "advance", "complete"]
    for step in ro.steps:
        (judgement,) = step.judgements
        # decided at a look before the budget ran out, on evidence that is in the record
        assert judgement.look is not None and judgement.look == len(step.looks)
        assert step.looks[-1].decision in ("advance", "complete")
        latency = [c for c in judgement.criteria if c.criterion.endswith("latency")]
        assert latency and all(c.status == "pass" and c.evidence for c in latency)
    assert "rollout step 1/3: 10 %" in output and "evidence plan" in output
    _no_leftovers(run_dir)


def test_rollout_abort_aborts_at_its_first_step(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, output = _run("rollout-abort.yaml", tmp_path)
    doc, run_dir = _results(tmp_path, "rollout-abort")
    ro = Results.model_validate(doc).rollout
    assert ro is not None and ro.outcome == "aborted", ro and ro.reason
    assert code == 1 and doc["verdict"] == "failed"
    assert ro.failed_step == 0 and len(ro.steps) == 1
    assert ro.reason is not None and ro.reason.startswith("step 1 (10 %) aborted at look ")
    (judgement,) = ro.steps[0].judgements
    failed = [c for c in judgement.criteria if c.status == "fail"]
    assert any(c.criterion == "inference.p50 latency" for c in failed), judgement.reason
    crit = next(c for c in failed if c.criterion == "inference.p50 latency")
    # the TorchServe cohort waited ~1 s (the hedge floor follows maxBatchDelay: no hedge won)
    assert crit.torchserve is not None and crit.torchserve > 800
    assert judgement.figures.torchserve.local_share is not None
    assert judgement.figures.torchserve.local_share < 0.2
    assert ro.rolled_back_s is not None
    assert "rollout ABORTED at 10 %" in output
    _no_leftovers(run_dir)
