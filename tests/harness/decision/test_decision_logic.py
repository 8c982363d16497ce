"""Each criterion met / not met / unknown on recorded evidence; the decision rule; the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from decision_builders import (
    GPU_TS,
    INVALID_KILL,
    KILL,
    OLD,
    RELOAD,
    aligned,
    decision_file,
    edited,
    fixture,
    level,
    one_workload,
    sweep_doc,
    sweep_evidence,
)

from harness.analysis.compare import Comparison, MetricComparison, Verdict
from harness.decision import DecisionError, load_decision
from harness.decision.criteria import (
    MORE_LOAD,
    comparison_of,
    judge_errors,
    judge_gates,
    judge_gpu,
    judge_latency,
    judge_rollout,
    judge_throughput,
)
from harness.decision.evidence import EvidenceSet, RunEvidence
from harness.decision.model import (
    Criterion,
    Decision,
    Outcome,
    Status,
    decide_outcome,
    verdict_sentence,
)
from harness.decision.spec import (
    GPU_HOST_HINT,
    ErrorsTarget,
    GatesTarget,
    GpuTarget,
    LatencyTarget,
    RolloutTarget,
    ThroughputTarget,
)
from harness.results.model import RolloutRecord, RolloutStep
from harness.sweep.search import MACHINE_LIMIT_NOTE

ROOT = Path(__file__).resolve().parents[3]


def rel(p: Path) -> str:
    return p.name


def pair(baseline: RunEvidence, candidate: RunEvidence) -> EvidenceSet:
    return EvidenceSet(baselines=[aligned(baseline, candidate)], candidates=[candidate])


def test_unlike_workloads_leave_latency_unknown() -> None:
    """Runs of different workloads get no comparison verdict (issue 20 item 4): the criterion
    relative to the baseline is unknown, naming the difference, never met or not met on it."""
    ev = EvidenceSet(baselines=[fixture(OLD)], candidates=[fixture(GPU_TS)])
    c = judge_latency("frame_latency", "frame", LatencyTarget(), ev, comparison_of(ev), rel)
    assert c.status == Status.UNKNOWN and "workloads differ" in (c.why or ""), c.why


# --------------------------------------------------------------------------- latency


def test_frame_latency_met_below_target_and_better_than_baseline() -> None:
    ev = pair(fixture(OLD), fixture(GPU_TS))
    c = judge_latency("frame_latency", "frame", LatencyTarget(), ev, comparison_of(ev), rel)
    assert c.status == Status.MET, c.why
    assert c.measured[0].value == pytest.approx(15.085)
    assert c.baseline[0].value == pytest.approx(42.003)
    assert c.compared[0].verdict == "better" and c.compared[0].p_value is not None


def test_frame_latency_not_met_above_target_and_worse() -> None:
    ev = pair(fixture(GPU_TS), fixture(OLD))  # the slow one as the candidate
    c = judge_latency("frame_latency", "frame", LatencyTarget(), ev, comparison_of(ev), rel)
    assert c.status == Status.NOT_MET
    assert "42.0 ms >= 30 ms" in c.why and "worse" in c.why


def test_latency_below_target_but_worse_than_baseline_is_not_met() -> None:
    ev = pair(fixture(GPU_TS), edited(fixture(OLD), frame__latency_ms__p95=20.0))
    row = MetricComparison(metric="frame.latency_ms.p95", run=20.0, baseline=15.0,
                           change=0.33, verdict=Verdict.WORSE, p_value=1e-6)  # fmt: skip
    c = judge_latency("frame_latency", "frame", LatencyTarget(), ev, Comparison(metrics=[row]), rel)
    assert c.status == Status.NOT_MET and "worse" in c.why
    # ... and met when the file asks for the absolute target only.
    t = LatencyTarget(vs_baseline="ignore")
    assert judge_latency("f", "frame", t, ev, Comparison(metrics=[row]), rel).status == Status.MET


def test_too_little_data_is_unknown_with_what_settles_it() -> None:
    # The synthetic files have no per-window inference histograms: the comparison cannot
    # judge inference p95, so a candidate under the target is still not "met".
    ev = pair(fixture(OLD), fixture(GPU_TS))
    c = judge_latency("inference_latency", "inference", LatencyTarget(), ev, comparison_of(ev), rel)
    assert c.status == Status.UNKNOWN
    assert "too little data" in c.why
    assert c.settle is not None and "repeat" in c.settle


def test_too_few_independent_blocks_say_how_long_a_run_would_decide() -> None:
    # The A/A control's frame p95: 29 windows a side in 9-s blocks, undecided. "a p95 needs
    # >= 200 replies" was not the reason (it had thousands): the run was too short for its swings.
    ev = pair(fixture(GPU_TS), edited(fixture(OLD), frame__latency_ms__p95=20.0))
    row = MetricComparison(metric="frame.latency_ms.p95", run=20.0, baseline=19.0, n_run=29,
                           n_baseline=29, block_windows=[9, 7], verdict=Verdict.TOO_LITTLE_DATA,
                           note="too little data (change in [-48%, +78%])")  # fmt: skip
    c = judge_latency("frame_latency", "frame", LatencyTarget(), ev, Comparison(metrics=[row]), rel)
    assert c.status == Status.UNKNOWN
    assert c.settle is not None and c.settle.startswith("runs measuring ~90 s")
    assert "29 s hold 3 independent blocks" in c.settle


def test_an_invalid_run_is_unknown_never_judged() -> None:
    ev = pair(fixture(OLD), fixture("recorded-quickstart.results.json"))
    c = judge_latency("frame_latency", "frame", LatencyTarget(), ev, comparison_of(ev), rel)
    assert c.status == Status.UNKNOWN and "INVALID" in c.why


def test_an_invalid_baseline_hides_no_failure_of_the_candidate() -> None:
    # The baseline run INVALID (the load machine fell behind): the comparison cannot be made,
    # but the candidate's own p95 over the design's 30 ms is still a measured miss.
    invalid = fixture("recorded-baseline-quick.results.json")
    slow = pair(invalid, fixture(OLD))
    c = judge_latency("frame_latency", "frame", LatencyTarget(), slow, comparison_of(slow), rel)
    assert c.status == Status.NOT_MET and "42.0 ms >= 30 ms" in c.why
    fast = pair(invalid, fixture(GPU_TS))
    c = judge_latency("frame_latency", "frame", LatencyTarget(), fast, comparison_of(fast), rel)
    assert c.status == Status.UNKNOWN and "no comparison" in c.why and "INVALID" in c.why


def test_missing_runs_are_unknown() -> None:
    c = judge_latency("frame_latency", "frame", LatencyTarget(), EvidenceSet(), None, rel)
    assert c.status == Status.UNKNOWN and c.settle


# --------------------------------------------------------------------------- GPU, errors


def test_no_gpu_is_unknown_with_its_reason_and_the_gpu_host_script() -> None:
    c = judge_gpu(GpuTarget(), pair(fixture(GPU_TS), fixture(OLD)), rel)
    assert c.status == Status.UNKNOWN
    assert "NVML" in c.why  # the collector's own reason
    assert c.settle == GPU_HOST_HINT == "run on a GPU host: scripts/gpu-run.sh"


def test_gpu_utilisation_met_and_not_met() -> None:
    ev = pair(fixture(OLD), fixture(GPU_TS))  # mean 48.4 %
    assert judge_gpu(GpuTarget(), ev, rel).status == Status.MET
    assert judge_gpu(GpuTarget(util_between=(60, 70)), ev, rel).status == Status.NOT_MET


def test_errors() -> None:
    ev = pair(fixture(OLD), fixture(GPU_TS))
    assert judge_errors(ErrorsTarget(), ev, rel).status == Status.MET
    bad = pair(fixture(OLD), edited(fixture(GPU_TS), errors__total=3))
    c = judge_errors(ErrorsTarget(), bad, rel)
    assert c.status == Status.NOT_MET and c.measured[0].value == 3


# --------------------------------------------------------------------------- faults, rollout

KILL_GATES = GatesTarget(
    gates=[
        "faults.outage.outage_latency_ms.p99 <= 250",
        "faults.outage.errors_during_failover == 0",
        "errors.total == 0",
    ]
)


def test_kill_gates_met_not_met_and_unknown() -> None:
    run = fixture(KILL)  # outage p99 97.8 ms, no errors
    assert judge_gates("kill", "k", KILL_GATES, run, None, rel).status == Status.MET
    strict = GatesTarget(gates=["faults.outage.outage_latency_ms.p99 <= 50"])
    c = judge_gates("kill", "k", strict, run, None, rel)
    assert c.status == Status.NOT_MET and "97.79" in c.why
    # A metric the run did not measure (no stall figure in this file): unknown, not a pass.
    stall = GatesTarget(gates=["faults.outage.outage_max_stall_ms <= 300"])
    assert judge_gates("kill", "k", stall, run, None, rel).status == Status.UNKNOWN
    # A failed gate wins over an unknown one.
    both = GatesTarget(gates=[*stall.gates, *strict.gates])
    assert judge_gates("kill", "k", both, run, None, rel).status == Status.NOT_MET


def test_invalid_fault_run_is_unknown() -> None:
    c = judge_gates("kill", "k", KILL_GATES, fixture(INVALID_KILL), None, rel)
    assert c.status == Status.UNKNOWN and "INVALID" in c.why and c.settle


def test_reload_gates() -> None:
    gates = GatesTarget(gates=["frames.lost == 0", "faults.reload.errors == 0"])
    assert judge_gates("reload", "r", gates, fixture(RELOAD), None, rel).status == Status.MET
    assert judge_gates("reload", "r", gates, None, "no file", rel).status == Status.UNKNOWN


def _with_rollout(outcome: str, percents: list[int], failed: int | None = None) -> RunEvidence:
    run = fixture(GPU_TS)
    steps = [RolloutStep(step=i, percent=p, set_s=5.0 + 12 * i) for i, p in enumerate(percents)]
    ro = RolloutRecord(steps=steps, outcome=outcome, reason="why", failed_step=failed)  # type: ignore[arg-type]
    return RunEvidence(run.path, run.results.model_copy(update={"rollout": ro}), run.document)


def test_rollout_completed_aborted_incomplete() -> None:
    t = RolloutTarget()
    assert judge_rollout(t, _with_rollout("completed", [10, 50, 100]), None, rel).status == (
        Status.MET
    )
    aborted = judge_rollout(t, _with_rollout("aborted", [10, 50], failed=1), None, rel)
    assert aborted.status == Status.NOT_MET and "50 %" in aborted.why
    short = judge_rollout(t, _with_rollout("incomplete", [10, 50]), None, rel)
    assert short.status == Status.UNKNOWN and short.settle
    no_block = judge_rollout(t, fixture(GPU_TS), None, rel)
    assert no_block.status == Status.UNKNOWN


# --------------------------------------------------------------------------- capacity


def _cap(base: list[dict], cand: list[dict], **kw: object) -> Criterion:
    ev = EvidenceSet(capacity=sweep_evidence(sweep_doc(base, cand, **kw)))  # type: ignore[arg-type]
    return judge_throughput(ThroughputTarget(), ev, "c02", "c01", rel)


def test_capacity_lower_than_baseline_beyond_resolution_is_not_met() -> None:
    base = [level(8, "pass"), level(16, "pass"), level(32, "pass"), level(64, "fail"),
            level(48, "pass"), level(56, "fail")]  # fmt: skip
    cand = [level(8, "pass"), level(16, "pass"), level(32, "fail"), level(24, "pass")]
    # [24, 32) vs [48, 56): more than one resolution step (8) apart.
    c = _cap(base, cand)
    assert c.status == Status.NOT_MET and "lower than the baseline" in c.why
    assert c.ratio is not None and c.ratio.value == pytest.approx(24 / 48)
    assert c.measured[0].value == 24 * 30  # frames/s at the capacity


def test_capacities_within_the_resolution_are_met_as_the_same() -> None:
    levels = [level(8, "pass"), level(16, "pass"), level(32, "fail"), level(24, "fail")]
    c = _cap(levels, levels)
    assert c.status == Status.MET and "same within the sweep's resolution" in c.why


ADJ_BASE = [level(8, "pass"), level(16, "pass"), level(32, "fail"), level(24, "pass")]
ADJ_CAND = [level(8, "pass"), level(16, "pass"), level(32, "fail"), level(24, "fail")]


def _adjacent(tmp_path: Path, base_run: str | None, cand_run: str | None) -> Criterion:
    """Brackets one step apart ([24, 32) vs [16, 24)); the runs at 24 sessions given."""
    sweep = tmp_path / "sweep.json"
    fixtures = ROOT / "tests" / "report" / "fixtures"
    runs = (("c01", base_run), ("c02", cand_run))
    docs = {cid: json.loads((fixtures / name).read_text(encoding="utf-8"))
            for cid, name in runs if name is not None}  # fmt: skip
    if len(docs) == 2:  # a sweep's runs at one level share the workload: declared so
        docs["c01"] = one_workload(docs["c01"], docs["c02"])
    for cid, doc in docs.items():
        (tmp_path / cid / "s0024").mkdir(parents=True)
        (tmp_path / cid / "s0024" / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    ev = EvidenceSet(capacity=sweep_evidence(sweep_doc(ADJ_BASE, ADJ_CAND), sweep))
    return judge_throughput(ThroughputTarget(), ev, "c02", "c01", rel)


def test_one_step_lower_is_settled_by_the_runs_at_that_load(tmp_path: Path) -> None:
    # The candidate failed 24 sessions where the baseline passed, and its frame p95 there is
    # worse by the comparison statistics: lower, not noise.
    c = _adjacent(tmp_path, base_run=GPU_TS, cand_run=OLD)
    assert c.status == Status.NOT_MET and "at 24 sessions frame p95" in c.why


def test_one_step_lower_without_a_worse_latency_is_noise(tmp_path: Path) -> None:
    c = _adjacent(tmp_path, base_run=OLD, cand_run=GPU_TS)
    assert c.status == Status.MET and "within the sweep's noise" in c.why


def test_one_step_lower_without_the_runs_is_unknown(tmp_path: Path) -> None:
    c = _adjacent(tmp_path, base_run=None, cand_run=None)
    assert c.status == Status.UNKNOWN and c.settle == "a finer search.resolution"


def test_two_censored_capacities_are_unknown_never_equal() -> None:
    levels = [level(8, "pass"), level(16, "pass"), level(32, "pass"), level(64, "pass")]
    c = _cap(levels, levels)
    assert c.status == Status.UNKNOWN
    assert "lower bound" in c.why and c.settle and "raise search.max" in c.settle
    assert c.measured[0].bound == "at_least" and c.ratio is not None and c.ratio.value is None


def test_a_censored_candidate_above_a_measured_baseline_is_met() -> None:
    base = [level(8, "pass"), level(16, "fail"), level(12, "fail")]
    cand = [level(8, "pass"), level(16, "pass"), level(32, "pass"), level(64, "pass")]
    c = _cap(base, cand)
    assert c.status == Status.MET and c.ratio is not None and c.ratio.bound == "at_least"


def test_a_measured_candidate_below_a_censored_baseline_is_not_met() -> None:
    base = [level(8, "pass"), level(16, "pass"), level(32, "pass"), level(64, "pass")]
    cand = [level(8, "pass"), level(16, "pass"), level(32, "fail")]
    c = _cap(base, cand)
    assert c.status == Status.NOT_MET
    assert c.ratio is not None and c.ratio.bound == "at_most"
    assert c.ratio.value == pytest.approx(31 / 64)


def test_capacity_below_the_design_throughput() -> None:
    base = [level(2, "pass"), level(4, "fail")]
    cand = [level(2, "pass"), level(4, "fail")]
    c = _cap(base, cand, fps=30.0)  # 60 frames/s at the capacity
    assert c.status == Status.NOT_MET and "< 200" in c.why
    # The same figure as a lower bound only: unknown, raise search.max.
    low = [level(2, "pass"), level(4, "pass")]
    c = _cap(low, low, search_max=4)
    assert c.status == Status.UNKNOWN and "raise search.max" in (c.settle or "")


def test_a_capacity_the_load_machine_censored_is_settled_by_more_load_not_search_max() -> None:
    # The A/A control on a busy host: the baseline failed 128 sessions, the candidate's run at
    # 128 was INVALID (the generator fell behind). A higher search.max cannot settle that.
    base = [level(16, "pass"), level(32, "pass"), level(64, "pass"), level(128, "fail"),
            level(96, "pass"), level(112, "pass")]  # fmt: skip
    cand = [level(16, "pass"), level(32, "pass"), level(64, "pass"), level(128, "machine-limit")]
    doc = sweep_doc(base, cand, resolution=16, search_max=128)
    doc["configurations"][1]["capacity_note"] = f"{MACHINE_LIMIT_NOTE} (passed at 64 sessions)"
    c = judge_throughput(ThroughputTarget(), EvidenceSet(capacity=sweep_evidence(doc)), "c02",
                         "c01", rel)  # fmt: skip
    assert c.status == Status.UNKNOWN and "lower bound" in c.why
    assert c.settle == MORE_LOAD
    # Censored by search.max instead: raising it is what settles it.
    doc["configurations"][1]["capacity_note"] = "at least 64 sessions (passed at search.max)"
    c = judge_throughput(ThroughputTarget(), EvidenceSet(capacity=sweep_evidence(doc)), "c02",
                         "c01", rel)  # fmt: skip
    assert c.settle == "raise search.max above 128 sessions"


def test_a_candidate_that_passed_no_load() -> None:
    # Fails at 8 (240 frames/s offered), the load machine could not offer 4: the capacity may
    # still be 7 sessions (210 frames/s): unknown, not "failed every load".
    limited = [level(4, "machine-limit")]
    c = _cap(limited, [level(8, "fail"), level(4, "machine-limit")])
    assert c.status == Status.UNKNOWN and "no lower load passed" in c.why
    # Failing at 4 sessions: at most 3 x 30 = 90 frames/s, below the design's 200.
    c = _cap(limited, [level(4, "fail"), level(2, "machine-limit")])
    assert c.status == Status.NOT_MET and "at most 90 frames/s" in c.why


def test_no_capacity_evidence_is_unknown() -> None:
    c = judge_throughput(ThroughputTarget(), EvidenceSet(), "c02", "c01", rel)
    assert c.status == Status.UNKNOWN


# --------------------------------------------------------------------------- the rule, the file


@pytest.mark.parametrize(
    ("statuses", "outcome", "code"),
    [
        ([Status.MET, Status.MET], Outcome.GO, 0),
        ([Status.MET, Status.NOT_MET, Status.UNKNOWN], Outcome.NO_GO, 1),
        ([Status.MET, Status.UNKNOWN], Outcome.INCONCLUSIVE, 4),
        ([], Outcome.INCONCLUSIVE, 4),
    ],
)
def test_decision_rule(statuses: list[Status], outcome: Outcome, code: int) -> None:
    assert decide_outcome(statuses) == outcome
    assert int(outcome.exit_code) == code


def test_sentence_names_what_failed_and_what_is_unknown() -> None:
    ev = pair(fixture(GPU_TS), fixture(OLD))
    crit = [
        judge_latency("frame_latency", "frame", LatencyTarget(), ev, comparison_of(ev), rel),
        judge_gpu(GpuTarget(), ev, rel),
    ]
    text = verdict_sentence("migration", crit, decide_outcome([c.status for c in crit]))
    assert text.startswith("migration: NO-GO on this host")
    assert "not met: frame latency (p95 42" in text
    assert "unknown: GPU utilisation (run on a GPU host: scripts/gpu-run.sh)" in text


def test_decision_document_round_trips() -> None:
    ev = pair(fixture(OLD), fixture(GPU_TS))
    crit = [judge_gpu(GpuTarget(), ev, rel)]
    d = Decision(
        name="m", decision_file="x.yaml", decided_at="2026-01-01T00:00:00Z", host="h",
        decision=Outcome.GO, sentence="s", exit_code=0, criteria=crit,
    )  # fmt: skip
    text = d.to_json()
    assert '"schema": "signflow.decision"' in text and '"schema_version": 1' in text
    assert Decision.model_validate_json(text) == d


def test_the_shipped_decision_file_validates() -> None:
    plan = load_decision(ROOT / "scenarios" / "migration.yaml")
    c = plan.spec.criteria
    assert c.throughput and c.throughput.min_frames_per_s == 200
    assert c.inference_latency and c.inference_latency.p95_below_ms == 30
    assert c.gpu and c.gpu.util_between == (40, 70)
    assert plan.spec.evidence.capacity and plan.spec.evidence.capacity.candidate == "c02"


def test_a_bad_decision_file_names_line_and_field(tmp_path: Path) -> None:
    path = decision_file(
        tmp_path / "d.yaml",
        "  frame_latncy: {p95_below_ms: 30}\n  kill: {gates: [faults.outage.nope <= 3]}\n",
    )
    with pytest.raises(DecisionError) as err:
        load_decision(path)
    assert f"{path}:" in str(err.value) and "did you mean 'frame_latency'" in str(err.value)
    path = decision_file(tmp_path / "d2.yaml", "  kill: {gates: [faults.outage.nope <= 3]}\n")
    with pytest.raises(DecisionError) as err:
        load_decision(path)
    assert f"{path}:9: field 'criteria.kill.gates[0]'" in str(err.value)


def test_a_criterion_without_its_evidence_is_refused(tmp_path: Path) -> None:
    path = decision_file(tmp_path / "d.yaml", "  gpu: {}\n", evidence="  {}\n")
    with pytest.raises(DecisionError, match=r"criteria\.gpu needs evidence\.runs"):
        load_decision(path)


def test_sets_flatten_to_single_keys_and_later_layers_win() -> None:
    from harness.decision.spec import override_list

    got = override_list(
        {"workload.late_threshold_ms": 25},
        {"workload": {"fps": 15}, "load.search": {"start": 8}, "timeline": []},
    )
    assert got == [
        "workload.late_threshold_ms=25",
        "workload.fps=15",  # one key, not the whole workload section
        "load.search.start=8",
        "timeline=[]",
    ]
    assert override_list({}) == []
