"""The search, the Pareto front, equivalence and the recommendation on constructed inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.summary import summarize
from harness.scenario.models import Scenario
from harness.sweep.analysis import cost, outcome, pareto_front, recommend
from harness.sweep.emit import emit_config
from harness.sweep.model import Search
from harness.sweep.search import MACHINE_LIMIT_NOTE, CapacitySearch


def _drive(search: CapacitySearch, knee: int, invalid_from: int | None = None) -> int:
    runs = 0
    while (n := search.next_level()) is not None:
        runs += 1
        if invalid_from is not None and n >= invalid_from:
            search.record(n, "machine-limit")
        else:
            search.record(n, "pass" if n <= knee else "fail")
    return runs


@pytest.mark.parametrize("knee", range(1, 32))
def test_search_finds_the_knee_within_one_session_in_at_most_8_runs(knee: int) -> None:
    search = CapacitySearch(Search(start=2, max=32, resolution=1))
    runs = _drive(search, knee)
    assert search.capacity is not None and knee - 1 <= search.capacity <= knee
    assert runs <= 8, search.levels
    assert runs <= Search(start=2, max=32).max_runs()
    exact = CapacitySearch(Search(start=2, max=32, resolution=0))
    _drive(exact, knee)
    assert exact.capacity == knee


def test_search_bracket_and_nothing_passes() -> None:
    search = CapacitySearch(Search(start=4, max=64, resolution=4))
    _drive(search, 21)
    assert search.capacity is not None and 21 - 4 < search.capacity <= 21
    none = CapacitySearch(Search(start=4, max=64))
    _drive(none, 0)
    assert none.capacity == 0 and [n for n, _ in none.levels] == [4, 2, 1]
    assert none.note == "fails the constraints already at 1 session(s)"


def test_passing_at_max_is_no_number() -> None:
    search = CapacitySearch(Search(start=4, max=16))
    _drive(search, 100)
    assert search.capacity is None
    assert search.note == "at least 16 sessions (passed at search.max; raise search.max)"
    assert search.censored and search.capacity is None


def test_confirm_needs_a_failing_level_to_fail_again_before_it_counts() -> None:
    # One noisy failing run at 128 (the machine, not the system): with confirm 2 it is run again,
    # passes, and the search goes on up; without it, that one run set the capacity at 96.
    noisy = {128: ["fail", "pass"]}

    def drive(confirm: int) -> CapacitySearch:
        search = CapacitySearch(Search(start=16, max=256, resolution=16, confirm=confirm))
        while (n := search.next_level()) is not None:
            queue = noisy.get(n)
            search.record(n, queue.pop(0) if queue else ("pass" if n <= 150 else "fail"))
        return search

    once = drive(1)
    assert once.capacity is not None and once.capacity < 128
    noisy[128] = ["fail", "pass"]
    twice = drive(2)
    assert twice.capacity is not None and 150 - 16 <= twice.capacity <= 150
    assert [o for n, o in twice.levels if n == 128] == ["fail", "pass"]
    assert twice.tries(128) == 2
    # A real knee is confirmed (every failing level run twice) and found as before.
    exact = CapacitySearch(Search(start=16, max=256, resolution=16, confirm=2))
    runs = _drive(exact, 150)
    assert exact.capacity is not None and 150 - 16 <= exact.capacity <= 150
    assert runs <= Search(start=16, max=256, resolution=16, confirm=2).max_runs()
    assert all(o == "fail" for n, o in exact.levels if n == exact.failed)
    assert sum(1 for n, _ in exact.levels if n == exact.failed) == 2


def test_machine_limit_ends_the_search_without_a_number() -> None:
    search = CapacitySearch(Search(start=2, max=64))
    runs = _drive(search, knee=40, invalid_from=16)
    assert runs == 4  # 2, 4, 8 pass; 16 is INVALID: stop
    assert search.capacity is None
    assert search.note == f"{MACHINE_LIMIT_NOTE} (passed at 8 sessions)"


def test_budget_stop_keeps_what_was_found() -> None:
    search = CapacitySearch(Search(start=2, max=64))
    for n, o in ((2, "pass"), (4, "pass")):
        assert search.next_level() == n
        search.record(n, o)
    search.stop("budget: 2 runs used")
    assert search.next_level() is None and search.capacity is None
    assert search.note == "search ended early: budget: 2 runs used; at least 4 sessions"


def test_outcome_of_a_run() -> None:
    assert outcome({"verdict": "passed"}, 0) == ("pass", None)
    failed = {"verdict": "failed", "gates": [{"expr": "a < 1", "passed": False}]}
    assert outcome(failed, 1) == ("fail", "failed a < 1")
    late = {"verdict": "invalid", "invalid_reasons": ["generator fell behind: 5% of frames"]}
    assert outcome(late, 2)[0] == "machine-limit"
    sut = {"verdict": "invalid", "invalid_reasons": ["system under test stopped reading: x"]}
    assert outcome(sut, 2)[0] == "fail"  # the system is past its capacity, not the machine
    # results schema 2: structured reasons with a kind
    typed = {"verdict": "invalid", "invalid_reasons": [{"kind": "cpu_saturated", "message": "m"}]}
    assert outcome(typed, 2) == ("machine-limit", "m")
    assert outcome({"verdict": "error", "error": "StackError: no"}, 3) == (
        "error",
        "StackError: no",
    )


def test_pareto_front_on_constructed_points() -> None:
    points = [
        ("a", 100.0, 20.0),  # front: lowest latency
        ("b", 200.0, 30.0),  # front
        ("c", 150.0, 35.0),  # dominated by b
        ("d", 300.0, 80.0),  # front: highest throughput
        ("e", 200.0, 31.0),  # dominated by b (same throughput, more latency)
        ("f", 90.0, 20.0),  # dominated by a
    ]
    assert pareto_front(points) == ["a", "b", "d"]
    assert pareto_front([("x", 1.0, 1.0), ("y", 1.0, 1.0)]) == ["x", "y"]  # ties: both


def _cfg(cid: str, value: float | None, workers: int, delay: int, status: str = "met") -> dict:
    sc = {
        "stack": {
            "use_torchserve": True,
            "torchserve_replicas": 1,
            "torchserve": {"workers": workers, "max_batch_delay_ms": delay, "batch_size": 8},
        }
    }
    return {"id": cid, "status": status, "value": value, "cost": list(cost({}, sc))}


def test_equivalent_capacities_recommend_the_cheaper() -> None:
    configs = [
        _cfg("c01", 12, workers=2, delay=5),
        _cfg("c02", 13, workers=2, delay=25),  # best measured, but only 1 session more
        _cfg("c03", 12, workers=1, delay=5),  # cheapest of the equivalent
        _cfg("c04", 8, workers=1, delay=1),  # cheap but clearly worse
        _cfg("c05", 20, workers=1, delay=1, status="unknown"),  # not decided: never chosen
    ]
    rec = recommend(configs, {}, "capacity", True, resolution=1)
    assert rec == {"config": "c03", "best_measured": "c02", "equivalent": ["c01", "c02"],
                   "censored": False, "tied": [], "tie_break": None}  # fmt: skip
    # With a clear winner the winner is recommended, however costly.
    configs[1]["value"] = 20
    rec = recommend(configs, {}, "capacity", True, resolution=1)
    assert rec is not None and rec["config"] == "c02" and rec["equivalent"] == []
    assert recommend([_cfg("c01", 0, 1, 5, status="not met")], {}, "capacity", True, 1) is None


def _doc(median_ms: float, seed: int) -> dict:
    """A results document from the real analysis: 4 sessions x 30 fps for 30 s, frame latencies
    lognormal around ``median_ms`` (the comparison needs real per-window histograms)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/harness: core_builders
    from core_builders import build_load

    rng = np.random.default_rng(seed)

    def reply(_s: int, _t: float) -> tuple:
        return float(rng.lognormal(np.log(median_ms / 1000), 0.3)), "torchserve", "1.0", None

    load = build_load(sessions=4, fps=30, duration_s=30, warmup_s=2, reply=reply)
    sc = Scenario.model_validate(
        {"name": "c", "stack": {"use_torchserve": True},
         "workload": {"sessions": 4, "duration_s": 30, "warmup_s": 2}}
    )  # fmt: skip
    summary, series, histograms, _ = summarize(load, {}, [], sc)
    return {"run_id": f"r{seed}", "name": "c", "summary": summary, "series": series,
            "histograms": histograms, "provenance": {}}  # fmt: skip


def test_metric_equivalence_uses_the_comparison_statistics() -> None:
    docs = {"p1": _doc(20.0, 1), "p2": _doc(20.2, 2), "p3": _doc(40.0, 3)}
    configs = [
        {"id": "c01", "status": "met", "value": 20.0, "cost": [1, 2], "best_point": "p1"},
        {"id": "c02", "status": "met", "value": 20.2, "cost": [1, 1], "best_point": "p2"},
        {"id": "c03", "status": "met", "value": 40.0, "cost": [0, 0], "best_point": "p3"},
    ]
    rec = recommend(configs, docs, "frame.latency_ms.p95", False, 1)
    # c01 is best measured; c02 is 1 % worse, inside the noise, and cheaper: recommended.
    # c03 is cheapest but clearly worse: not equivalent.
    assert rec is not None
    assert (rec["config"], rec["best_measured"], rec["equivalent"]) == ("c02", "c01", ["c01"])


def test_emit_config_writes_the_recommended_settings(tmp_path: Path) -> None:
    stack = {
        "driver": "local",
        "use_torchserve": True,
        "torchserve": {"batch_size": 8, "max_batch_delay_ms": 5, "workers": 1},
        "external": None,
        "compose": None,
    }
    doc = {
        "name": "t",
        "configurations": [{"id": "c03", "label": "batch_size=8", "stack": stack}],
        "recommendation": {"config": "c03"},
    }
    props, model, scenario = emit_config(doc, tmp_path / "cfg")
    text = props.read_text()
    assert "\nbatch_size=8\n" in text and "\nmax_batch_delay=5\n" in text
    assert "\ndefault_workers_per_model=1\n" in text
    assert "batchSize: 8" in model.read_text() and "maxBatchDelay: 5" in model.read_text()
    import yaml

    block = yaml.safe_load(scenario.read_text())
    assert block["stack"]["torchserve"] == stack["torchserve"]
    assert "external" not in block["stack"]
    with pytest.raises(ValueError, match="nothing to emit"):
        emit_config({**doc, "recommendation": None}, tmp_path / "none")


def _bound(cid: str, at: int, use_torchserve: bool, point: str) -> dict:
    """A configuration that passed at search.max (``at``): its capacity is a lower bound."""
    sc = {"stack": {"use_torchserve": use_torchserve, "torchserve": {"workers": 1}}}
    return {"id": cid, "status": "met", "value": at, "capacity": None, "censored": True,
            "capacity_at_least": at, "cost": list(cost({}, sc)), "best_point": point}  # fmt: skip


def test_censored_capacities_are_never_equivalent_ties_go_to_the_constraints() -> None:
    """Issue 20 item 3: both configurations of sweeps/capacity.yaml passed the largest load
    (at least 16 sessions); the sweep called them "equivalent within the noise" and named the
    cheaper although its p95 was 3x higher. Bounds tie; the constraint metrics decide."""
    docs = {"p1": _doc(24.0, 1), "p2": _doc(8.0, 2)}
    configs = [_bound("c01", 16, False, "p1"), _bound("c02", 16, True, "p2")]
    metrics = ["frame.latency_ms.p95", "errors.total"]
    rec = recommend(configs, docs, "capacity", True, 2, metrics)
    assert rec is not None and rec["config"] == "c02" and rec["censored"] is True
    assert rec["equivalent"] == [] and rec["tied"] == ["c01"]
    assert rec["tie_break"] and "frame.latency_ms.p95 c02 better than c01" in rec["tie_break"]
    # The cheaper one wins when it is the better one, still not "equivalent".
    docs = {"p1": _doc(8.0, 1), "p2": _doc(24.0, 2)}
    rec = recommend(configs, docs, "capacity", True, 2, metrics)
    assert rec is not None and rec["config"] == "c01" and rec["equivalent"] == []
    # No difference in the constraints: the cheapest, saying so.
    docs = {"p1": _doc(8.0, 1), "p2": _doc(8.0, 3)}
    rec = recommend(configs, docs, "capacity", True, 2, metrics)
    assert rec is not None and rec["config"] == "c01" and rec["equivalent"] == []
    assert "no constraint metric differs" in (rec["tie_break"] or "")


def test_a_bound_beats_a_measured_capacity_and_is_not_equivalent_to_it() -> None:
    configs = [_cfg("c01", 15, workers=1, delay=1), _bound("c02", 16, True, "p2")]
    configs[1]["cost"] = [9.0]  # costlier
    rec = recommend(configs, {}, "capacity", True, resolution=2)
    assert rec is not None and rec["config"] == "c02" and rec["equivalent"] == []


def test_dry_run_says_which_configuration_the_budget_cuts() -> None:
    from harness.sweep.cli import describe
    from harness.sweep.loader import load_sweep

    repo = Path(__file__).resolve().parents[3]
    plan = load_sweep(repo / "sweeps/capacity.yaml", ["budget.max_runs=17"])
    text = describe(plan)
    assert "would cut" in text and "c02" in text and "stopped after 3 of 14 runs" in text
    assert "c01 (use_torchserve=False): " not in text.split("would cut", 1)[1]
    assert "enough for every" in describe(load_sweep(repo / "sweeps/capacity.yaml", []))
