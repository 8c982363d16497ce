"""Gate grammar and evaluation (absolute, between, relative, null metrics, fault metrics)."""

from __future__ import annotations

import pytest

from harness.analysis.compare import Comparison, MetricComparison, Verdict
from harness.analysis.gates import (
    ANY,
    METRICS,
    GateSyntaxError,
    check_metric,
    evaluate_gate,
    evaluate_gates,
    parse_gate,
    resolve_metric,
)

SUMMARY = {
    "frame": {"latency_ms": {"p95": 12.3, "p99": 40.0}},
    "throughput": {"inferences_per_s": 250.0},
    "errors": {"total": 0},
    "accuracy": 0.97,
    "gpu": {"present": False, "reason": "no NVIDIA GPU found (NVML: Driver Not Loaded)",
            "util_mean": None},
}  # fmt: skip
BASE = {"frame": {"latency_ms": {"p95": 11.5, "p99": 30.0}}, "accuracy": 0.99}
FAULTS = [
    {"kind": "outage", "time_to_recover_s": 2.0},
    {"kind": "outage", "time_to_recover_s": 3.5},
    {"kind": "reload", "mixed_window_len_s": None},
]


def one(expr: str, baseline: dict | None = None) -> dict:
    return evaluate_gates([expr], SUMMARY, FAULTS, baseline)[0]


@pytest.mark.parametrize(
    ("expr", "passed"),
    [
        ("frame.latency_ms.p95 < 30", True),
        ("frame.latency_ms.p95 <= 12.3", True),
        ("frame.latency_ms.p95 > 12.3", False),
        ("throughput.inferences_per_s >= 200", True),
        ("errors.total == 0", True),
        ("errors.total != 0", False),
        ("accuracy >= 0.95", True),
        ("accuracy between 0.98 1.0", False),
        ("throughput.inferences_per_s between 200 300", True),
        ("faults.outage.time_to_recover_s < 3", False),  # the max over outages is 3.5
        ("faults.outage.time_to_recover_s < 4", True),
        ("frame.latency_ms.p95 < 1e2", True),
    ],
)
def test_absolute_and_between(expr: str, passed: bool) -> None:
    result = one(expr)
    assert result["passed"] is passed, result
    assert result["expr"] == expr
    assert (result["reason"] is None) is passed


def test_result_fields() -> None:
    r = one("throughput.inferences_per_s between 200 300")
    assert r["op"] == "between" and r["threshold"] == 200 and r["threshold_hi"] == 300
    assert r["measured"] == 250.0 and r["relative"] is False
    r = one("frame.latency_ms.p95 < 10")
    assert r["reason"] == "measured 12.3, required < 10"


def test_relative_to_baseline() -> None:
    r = one("frame.latency_ms.p99 <= baseline * 1.10", BASE)
    assert r["relative"] and r["threshold"] == pytest.approx(33.0) and r["passed"] is False
    assert one("frame.latency_ms.p99 <= baseline + 25", BASE)["passed"] is True
    assert one("frame.latency_ms.p95 <= baseline * 1.10", BASE)["passed"] is True
    assert one("accuracy >= baseline - 0.05", BASE)["passed"] is True
    assert one("accuracy >= baseline", BASE)["passed"] is False


def test_relative_without_baseline_fails_with_reason() -> None:
    r = one("frame.latency_ms.p99 <= baseline * 1.1")
    assert r["passed"] is False and "no baseline" in r["reason"]


def test_null_metric_never_passes() -> None:
    r = one("gpu.util_mean between 40 70")
    assert r["passed"] is False and r["measured"] is None
    assert "GPU not present" in r["reason"] and "NVML" in r["reason"]
    r = one("faults.reload.mixed_window_len_s < 1")
    assert r["passed"] is False and "not measured" in r["reason"]
    r = one("faults.outage.outage_latency_ms.p99 < 1")
    assert r["passed"] is False and "not measured for every outage" in r["reason"]
    r = one("frame.latency_ms.p42 < 1")
    assert r["passed"] is False and "unknown metric 'frame.latency_ms.p42'" in r["reason"]


def test_nested_fault_figures_are_gateable() -> None:
    faults = [
        {"kind": "outage", "outage_latency_ms": {"p99": 120.0}, "recovery_latency_ms": None},
        {"kind": "outage", "outage_latency_ms": {"p99": 300.0}, "recovery_latency_ms": None},
    ]
    (r,) = evaluate_gates(["faults.outage.outage_latency_ms.p99 <= 250"], SUMMARY, faults)
    assert r["measured"] == 300.0 and r["passed"] is False  # the worst outage
    (r,) = evaluate_gates(["faults.outage.recovery_latency_ms.p99 <= 250"], SUMMARY, faults)
    assert r["passed"] is False and "not measured" in r["reason"]


def test_data_keyed_counts_are_zero_when_absent() -> None:
    summary = {"errors": {"by_code": {"timeout": 2}}, "model_versions": {"1.0": 10}}
    got = evaluate_gates(
        ["errors.by_code.timeout == 2", "errors.by_code.auth == 0", "model_versions.2.0 == 0"],
        summary,
    )
    assert [g["passed"] for g in got] == [True, True, True]
    assert [g["measured"] for g in got] == [2.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("metric", "suggestion"),
    [
        ("errors.totl", "errors.total"),
        ("served_by.torchserv", "served_by.torchserve"),
        ("faults.outage.start_torchserve_s", "faults.outage.restart_duration_s"),
        ("frame.latency_ms.p9", "frame.latency_ms.p99"),
        ("stall.max", "stall.max_ms"),
    ],
)
def test_catalogue_rejects_typos_with_a_suggestion(metric: str, suggestion: str) -> None:
    why = check_metric(metric)
    assert why is not None and f"did you mean '{suggestion}'" in why


def test_catalogue_refuses_fault_metrics_the_timeline_cannot_measure() -> None:
    assert check_metric("faults.outage.outage_latency_ms.p99", ["reload_model"]) is not None
    assert "needs kill_torchserve" in str(check_metric("faults.outage.errors_during_failover", []))
    why = check_metric("faults.outage.recovery_latency_ms.p99", ["kill_torchserve"])
    assert why is not None and "start_torchserve" in why
    assert check_metric("faults.outage.recovery_latency_ms.p99", KILL_START) is None
    assert check_metric("faults.reload.fallbacks", ["reload_model"]) is None
    assert check_metric("errors.by_code.timeout", []) is None
    assert check_metric("cpu.backend.mean_percent", []) is None


KILL_START = ["kill_torchserve", "start_torchserve"]


def test_every_catalogue_metric_exists_in_a_real_summary() -> None:
    """The catalogue and summarize() cannot drift: each fixed path resolves in a real run's
    results (a number, or null with a reason), never 'not in this run's results'."""
    import json
    from pathlib import Path

    from core_builders import build_load, constant_reply

    from harness.analysis.summary import summarize
    from harness.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    sc = load_scenario(root / "scenarios" / "fallback-kill.yaml")
    load = build_load(sessions=2, fps=10, duration_s=30, warmup_s=3, reply=constant_reply(0.01))
    events = [
        {"at_s": 10.0, "action": "kill_torchserve", "params": {}, "started_s": 10.0,
         "finished_s": 10.1, "ok": True},
        {"at_s": 20.0, "action": "start_torchserve", "params": {}, "started_s": 20.0,
         "finished_s": 24.0, "ok": True},
        {"at_s": 25.0, "action": "reload_model", "params": {"version": "2.0"},
         "started_s": 25.0, "finished_s": 26.0, "ok": True},
    ]  # fmt: skip
    fixture = root / "tests" / "report" / "fixtures" / "synthetic-gpu-torchserve.results.json"
    # TorchServe's section as the collectors' summary gives it (every key, values unmeasured).
    # The processes' 1-s samples (the leak gates' slopes), flat, for each component.
    t = [float(i) for i in range(30)]
    comps = ("backend", "torchserve", "harness")
    process = {"t": t, **{k: {c: [1.0] * 30 for c in comps} for k in ("rss_mb", "fds", "threads")}}
    collectors = {
        "series": {"torchserve": {"t": [0.0]}, "process": process},
        "summaries": {"torchserve": {}},
    }
    summary, _s, _h, faults = summarize(load, collectors, events, sc)
    # The process section needs sampled processes: take a real run's (same shape).
    summary["cpu"] = json.loads(fixture.read_text())["summary"]["cpu"]
    for m in METRICS:
        path = m.pattern.replace(ANY, "x")
        value, why = resolve_metric(path, summary, faults)
        assert value is not None or "not in this run" not in str(why), (path, why)


@pytest.mark.parametrize(
    "expr", ["p95 is low", "frame.latency_ms.p95 <", "a between 3 1", "x < baseline ^ 2", ""]
)
def test_syntax_errors(expr: str) -> None:
    with pytest.raises(GateSyntaxError):
        parse_gate(expr)


def test_validate_checks_every_gate_metric_before_anything_starts() -> None:
    """Issue 11 items 13/18: typos and outage gates without a kill fail at load time, naming
    the gate; a nested fault figure is accepted."""
    from pathlib import Path

    from harness.scenario import ScenarioError, load_scenario

    path = Path(__file__).resolve().parents[2] / "scenarios" / "fallback-kill.yaml"
    sc = load_scenario(path, ["gates=['faults.outage.outage_latency_ms.p99 <= 250']"])
    assert [g.expr for g in sc.gates] == ["faults.outage.outage_latency_ms.p99 <= 250"]
    assert sc.gates[0].metric == "faults.outage.outage_latency_ms.p99"  # parsed once, at load
    bad = "gates=['errors.totl == 0', 'served_by.torchserv > 0.5', 'stall.max_ms <= 300']"
    with pytest.raises(ScenarioError) as err:
        load_scenario(path, [bad])
    text = str(err.value)
    assert "field 'gates[0]': unknown metric 'errors.totl'; did you mean 'errors.total'?" in text
    assert "'served_by.torchserv'; did you mean 'served_by.torchserve'?" in text
    assert "gates[2]" not in text
    no_kill = ["timeline=[]", "gates=['faults.outage.recovery_latency_ms.p99 <= 250']"]
    with pytest.raises(ScenarioError, match=r"needs kill_torchserve and start_torchserve"):
        load_scenario(path, no_kill)


# --- compare gates (issue 18 item 4) ---------------------------------------------------------


def _comparison(**verdicts: str) -> Comparison:
    rows = [
        MetricComparison(
            metric=name.replace("__", "."), run=20.0, baseline=5.0, change=3.0,
            verdict=Verdict(v), p_value=0.0005 if v == "worse" else None,
            note="n = 19 replies; p50 needs >= 20" if v == "too little data" else None,
        )
        for name, v in verdicts.items()
    ]  # fmt: skip
    return Comparison(baseline_run_id="base", metrics=rows)


def test_compare_gate_parses_to_the_comparison_verdict() -> None:
    g = parse_gate("compare.inference.latency_ms.p50 != worse")
    assert (g.metric, g.op, g.verdict) == ("inference.latency_ms.p50", "!=", "worse")
    assert str(g) == "compare.inference.latency_ms.p50 != worse"
    assert parse_gate("compare.accuracy == same").verdict == "no significant change"
    with pytest.raises(GateSyntaxError, match="worse, better, same"):
        parse_gate("compare.accuracy != wrose")


def test_compare_gate_fails_on_worse_and_passes_too_little_data_saying_so() -> None:
    cmp = _comparison(
        inference__latency_ms__p50="worse",
        inference__latency_ms__p95="too little data",
        frame__latency_ms__p95="no significant change",
    )
    gates = [
        "compare.inference.latency_ms.p50 != worse",
        "compare.inference.latency_ms.p95 != worse",
        "compare.frame.latency_ms.p95 != worse",
        "compare.frame.latency_ms.p95 == better",
        "compare.accuracy != worse",
    ]
    got = {g["expr"]: g for g in evaluate_gates(gates, SUMMARY, FAULTS, BASE, cmp)}
    worse = got[gates[0]]
    assert worse["passed"] is False and worse["verdict"] == "worse"
    assert worse["measured"] == 3.0 and worse["metric"] == "compare.inference.latency_ms.p50"
    assert worse["reason"] == "comparison says worse (+300.0%), p = 0.0005, required != worse"
    little = got[gates[1]]
    assert little["passed"] is True and "too little data" in little["reason"]
    assert "p50 needs >= 20" in little["reason"]  # what would settle it
    assert got[gates[2]]["passed"] is True and got[gates[2]]["reason"] is None
    assert got[gates[3]]["passed"] is False  # == needs exactly that verdict
    assert got[gates[4]]["passed"] is False
    assert "no row for accuracy" in got[gates[4]]["reason"]
    # No baseline, or one that cannot be compared: failed with the reason, never a pass.
    alone = evaluate_gates(gates[:1], SUMMARY, FAULTS)[0]
    assert alone["passed"] is False and "no baseline was given" in alone["reason"]
    unusable = Comparison(usable=False, problem="the baseline has no summary")
    off = evaluate_gates(gates[:1], SUMMARY, FAULTS, BASE, unusable)[0]
    assert off["passed"] is False and "the baseline has no summary" in off["reason"]


def test_compare_gates_are_checked_at_validate_with_file_and_line(tmp_path) -> None:
    from pathlib import Path

    from harness.scenario import ScenarioError, load_scenario

    repo = Path(__file__).resolve().parents[2]
    quick = repo / "scenarios" / "quickstart.yaml"
    sc = load_scenario(quick)
    assert any(g.verdict == "worse" for g in sc.gates)  # the shipped gates use the form
    text = quick.read_text().replace(
        "compare.inference.latency_ms.p50 != worse", "compare.inference.latency_ms.p42 != worse"
    )
    bad = tmp_path / "quickstart.yaml"
    bad.write_text(text)
    (tmp_path / "baseline-quick.yaml").write_text(
        (repo / "scenarios" / "baseline-quick.yaml").read_text()
    )
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "p42" in ln)
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert f"{bad}:{line}: field 'gates[" in str(err.value)
    assert "the comparison does not judge 'inference.latency_ms.p42'" in str(err.value)
    # Without a baseline the gate cannot be judged: refused before anything starts.
    with pytest.raises(ScenarioError, match="reads the comparison with a baseline"):
        load_scenario(quick, ["baseline=null"])
    assert load_scenario(quick, ["baseline=null"], has_external_baseline=True)
    # Mid-run checks have no baseline: refused there too.
    with pytest.raises(ScenarioError, match=r"abort_on_fail.*reads the comparison"):
        load_scenario(quick, ["abort_on_fail={gates: ['compare.accuracy != worse']}"])
    with pytest.raises(ScenarioError, match="a compare gate names the comparison's verdict"):
        load_scenario(quick, ["gates=['compare.accuracy >= 0.9']"])


def test_sweep_constraint_cannot_be_a_compare_gate(tmp_path) -> None:
    from pathlib import Path

    from harness.sweep.loader import SweepError, load_sweep

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "sweeps" / "capacity.yaml").read_text()
    text = text.replace("../scenarios/", f"{repo}/scenarios/")
    text = text.replace("errors.total == 0", "compare.errors.per_s != worse")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SweepError, match="cannot be relative to a baseline"):
        load_sweep(path)


def test_relative_gate_is_not_judged_between_unlike_workloads() -> None:
    """The comparison gives no verdict between runs of different workloads unless asked
    (issue 20 item 4); a baseline-relative gate is such a verdict too: it fails, saying why,
    instead of judging a 2-session run against a 4-session baseline."""
    unlike = Comparison(baseline_run_id="b", usable=False, workload_differs=True,
                        problem="the workloads differ (sessions 2 vs 4)")  # fmt: skip
    r = evaluate_gate(parse_gate("frame.latency_ms.p99 <= baseline + 25"), SUMMARY, (), BASE,
                      unlike)  # fmt: skip
    assert r["passed"] is False and "another workload" in r["reason"]
    asked = unlike.model_copy(update={"usable": True, "problem": None})
    r = evaluate_gate(parse_gate("frame.latency_ms.p99 <= baseline + 25"), SUMMARY, (), BASE,
                      asked)  # fmt: skip
    assert r["passed"] is True
    # An absolute gate does not depend on the baseline at all.
    assert evaluate_gate(parse_gate("accuracy >= 0.9"), SUMMARY, (), BASE, unlike)["passed"]
