"""Gate grammar and evaluation (absolute, between, relative, null metrics, fault metrics)."""

from __future__ import annotations

import pytest

from harness.analysis.gates import GateSyntaxError, evaluate_gates, parse_gate

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
    r = one("faults.nothing.x < 1")
    assert r["passed"] is False and "no nothing fault" in r["reason"]
    r = one("frame.latency_ms.p42 < 1")
    assert r["passed"] is False and "no such metric" in r["reason"]


@pytest.mark.parametrize(
    "expr", ["p95 is low", "frame.latency_ms.p95 <", "a between 3 1", "x < baseline ^ 2", ""]
)
def test_syntax_errors(expr: str) -> None:
    with pytest.raises(GateSyntaxError):
        parse_gate(expr)
