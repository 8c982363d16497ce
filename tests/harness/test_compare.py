"""Baseline comparison statistics on constructed per-window data."""

from __future__ import annotations

import numpy as np
import pytest
from core_builders import build_load

from harness.analysis.compare import compare
from harness.analysis.summary import summarize
from harness.scenario.models import Scenario

SCENARIO = Scenario.model_validate(
    {"name": "c", "stack": {"use_torchserve": True},
     "workload": {"sessions": 4, "duration_s": 32, "warmup_s": 2}}
)  # fmt: skip
PROVENANCE = {"cpu_model": "X", "cpu_count": 2, "gpu": None, "python": "3.11.7", "os": "Linux",
              "packages": {"torch": "2.13.0"}}  # fmt: skip


def run_doc(median_ms: float, seed: int, provenance: dict | None = None) -> dict:
    """A results-like document whose frame latencies are lognormal around ``median_ms``."""
    rng = np.random.default_rng(seed)

    def reply(_s: int, _t: float) -> tuple:
        return float(rng.lognormal(np.log(median_ms / 1000), 0.35)), "torchserve", "1.0", None

    load = build_load(sessions=4, fps=30, duration_s=32, warmup_s=2, reply=reply)
    summary, series, histograms, faults = summarize(load, {}, [], SCENARIO)
    return {"run_id": f"run-{seed}", "name": "c", "summary": summary, "series": series,
            "histograms": histograms, "faults": faults,
            "provenance": provenance or PROVENANCE}  # fmt: skip


@pytest.fixture(scope="module")
def baseline() -> dict:
    return run_doc(40.0, seed=1)


def metric(comparison: dict, name: str) -> dict:
    return next(m for m in comparison["metrics"] if m["metric"] == name)


LATENCY = ("frame.latency_ms.p50", "frame.latency_ms.p95", "frame.latency_ms.p99",
           "inference.latency_ms.p95")  # fmt: skip


def test_clearly_better(baseline: dict) -> None:
    c = compare(run_doc(20.0, seed=2), baseline)
    for name in LATENCY:
        m = metric(c, name)
        assert m["verdict"] == "better", m
        assert m["change"] < -0.3 and m["p_value"] < 0.01
        assert m["ci_run"][1] < m["ci_baseline"][0]
        assert m["better_when"] == "lower" and m["method"] == "mann-whitney+bootstrap"
    assert c["environment_differs"] is False and c["warnings"] == []
    assert c["baseline_run_id"] == "run-1"


def test_clearly_worse(baseline: dict) -> None:
    c = compare(run_doc(60.0, seed=3), baseline)
    for name in LATENCY:
        assert metric(c, name)["verdict"] == "worse", metric(c, name)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_same_distribution_is_no_significant_change(baseline: dict, seed: int) -> None:
    c = compare(run_doc(40.0, seed=seed), baseline)
    for name in LATENCY:
        m = metric(c, name)
        assert m["verdict"] == "no significant change", m
        # the intervals of two samples of one distribution overlap
        assert m["ci_run"][0] <= m["ci_baseline"][1] and m["ci_baseline"][0] <= m["ci_run"][1]


def test_every_summary_metric_gets_a_relative_change(baseline: dict) -> None:
    c = compare(run_doc(20.0, seed=7), baseline)
    names = {m["metric"] for m in c["metrics"]}
    assert {"throughput.frames_per_s", "errors.total", "accuracy", "frames.lost"} <= names
    tp = metric(c, "throughput.frames_per_s")
    assert tp["change"] == pytest.approx(0.0) and tp["verdict"] == "no significant change"
    assert metric(c, "errors.total")["better_when"] == "lower"
    assert metric(c, "served_by.torchserve")["verdict"] == "n/a"


def test_different_environment_warns(baseline: dict) -> None:
    other = dict(PROVENANCE, cpu_model="Y", gpu="NVIDIA H100",
                 packages={"torch": "2.12.0"})  # fmt: skip
    c = compare(run_doc(40.0, seed=8, provenance=other), baseline)
    assert c["environment_differs"] is True
    text = " ".join(c["warnings"])
    assert "cpu_model" in text and "gpu" in text and "torch" in text


def test_errors_appearing_are_worse(baseline: dict) -> None:
    run = run_doc(40.0, seed=9)
    run["summary"]["errors"]["total"] = 3
    assert metric(compare(run, baseline), "errors.total")["verdict"] == "worse"
