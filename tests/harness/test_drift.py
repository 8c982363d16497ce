"""Leak gates (issue 23 item 3): Theil-Sen slopes per hour with their interval, on synthetic
series and on real processes sampled by the ProcessCollector; None with a reason when a run is
too short to fit, and the gate then fails saying so."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from harness import hdr
from harness.analysis import drift
from harness.analysis.frames import Window
from harness.analysis.gates import evaluate_gates
from harness.collectors import ProcessCollector
from harness.results.model import Summary, metric_spec


def test_flat_series_has_a_zero_slope_inside_its_interval() -> None:
    t = list(range(600))
    fit, why = drift.theil_sen(t, [300.0] * 600)
    assert why is None and fit is not None
    assert fit.per_h == 0.0 and fit.low == 0.0 and fit.high == 0.0
    assert fit.start == pytest.approx(300.0) and fit.points == 600 and fit.span_s == 599


def test_leaking_series_slope_per_hour_and_its_interval() -> None:
    # 2 MB a minute on top of 250 MB: 120 MB/h.
    t = np.arange(0.0, 1800.0)
    fit, _ = drift.theil_sen(list(t), list(250.0 + t * 2.0 / 60.0))
    assert fit is not None
    assert fit.per_h == pytest.approx(120.0)
    assert fit.low is not None and fit.high is not None
    assert fit.low <= 120.0 + 1e-6 and fit.high >= 120.0 - 1e-6


def test_noisy_series_with_outliers_keeps_the_slope_least_squares_loses() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 3600.0)
    y = 400.0 + 5.0 * t / 3600.0 + rng.normal(0.0, 2.0, t.size)  # 5 MB/h under 2 MB noise
    y[-60:] += 300.0  # a last-minute burst (a GC that has not run yet, a restart)
    fit, _ = drift.theil_sen(list(t), list(y))
    assert fit is not None and fit.low is not None and fit.high is not None
    assert fit.per_h == pytest.approx(5.0, abs=2.0)
    assert fit.low < 5.0 < fit.high and fit.high - fit.low < 5.0
    ols = np.polyfit(t, y, 1)[0] * 3600.0
    assert ols > 25.0  # least squares would call this a leak
    # Over MAX_POINTS samples are reduced to bin medians: same answer.
    assert fit.points == 3600


def test_gaps_are_skipped_and_short_series_give_a_reason() -> None:
    fit, why = drift.theil_sen([0, 1, 2, 3], [1.0, None, float("nan"), 2.0])
    assert fit is None and why is not None and "at least 10" in why
    fit, why = drift.theil_sen(list(range(15)), [1.0] * 15)
    assert fit is None and why is not None and "span 14 s" in why and "20 s" in why


def _process_series(rss: list[float | None], fds: list[int], threads: list[int]) -> dict:
    t = [float(i) for i in range(len(rss))]
    return {
        "process": {
            "t": t,
            "rss_mb": {"backend": rss},
            "fds": {"backend": fds},
            "threads": {"backend": threads},
        }
    }


def test_process_drift_after_the_warmup_and_null_with_reason_when_short() -> None:
    n = 120
    # Start-up growth in the first 60 s (warm-up) then flat, with an fd leak.
    rss = [100.0 + min(i, 60) * 5.0 for i in range(n)]
    series = _process_series(rss, [10 + i // 4 for i in range(n)], [8] * n)
    out = drift.process_drift(series, t_lo=60.0)["backend"]
    assert out.rss_mb_per_h == 0.0 and out.reason is None
    assert out.fds_per_h == pytest.approx(900.0)  # one every 4 s
    assert out.threads_per_h == 0.0 and out.samples == 60 and out.rss_mb_start == 400.0
    with_warmup = drift.process_drift(series, t_lo=0.0)["backend"]
    assert with_warmup.rss_mb_per_h is not None and with_warmup.rss_mb_per_h > 0
    short = drift.process_drift(series, t_lo=110.0)["backend"]
    assert short.rss_mb_per_h is None and short.reason is not None
    assert "10 samples" not in short.reason and "at least 20 s measured" in short.reason


def _window(t: float, warmup: bool, ms: float) -> Window:
    h = hdr.histogram_of([ms / 1000.0] * 50)
    return Window(t, warmup, 50, 50, 0, 0, hist={"frame_latency": h, "inference_latency": h})


def test_latency_drift_blocks_rule_and_slope() -> None:
    assert drift.block_rule(3600) == 600.0 and drift.block_rule(1800) == 600.0
    assert drift.block_rule(1799) == 599.0 and drift.block_rule(30) == 10.0
    assert drift.block_rule(29) is None
    # p99 climbing 1 ms a minute over 30 min measured: 60 ms/h, three 10-min blocks.
    ws = [_window(float(i), i < 60, 10.0 + max(i - 60, 0) / 60.0) for i in range(1860)]
    d = drift.latency_drift(ws)
    assert d.block_s == 600.0 and d.blocks == 3 and d.reason is None
    assert d.frame_p99_ms_per_h == pytest.approx(60.0, rel=0.05)
    flat = drift.latency_drift([_window(float(i), False, 10.0) for i in range(45)])
    assert flat.block_s == 15.0 and flat.blocks == 3 and flat.frame_p99_ms_per_h == 0.0
    short = drift.latency_drift([_window(float(i), i < 5, 10.0) for i in range(30)])
    assert short.frame_p99_ms_per_h is None and short.reason is not None
    assert "25 s measured" in short.reason and "at least 30 s" in short.reason


def test_leak_metrics_are_in_the_catalogue_with_units() -> None:
    spec = metric_spec("memory.backend.rss_mb_per_h")
    assert spec is not None and spec.unit == "MB/h"
    assert metric_spec("memory.torchserve.fds_per_h").unit == "1/h"  # type: ignore[union-attr]
    assert metric_spec("drift.frame_p99_ms_per_h").unit == "ms/h"  # type: ignore[union-attr]
    assert metric_spec("memory.nobody.rss_mb_per_h") is None


# A process that leaks ~2 MB, one open file and one thread per step; and one that only sleeps.
LEAKER = (
    "import sys, threading, time\n"
    "kept = []\n"
    "for _ in range(200):\n"
    "    kept.append(b'x' * 2_000_000); kept.append(open(sys.executable, 'rb'))\n"
    "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    "    time.sleep(0.1)\n"
)
HEALTHY = "import time\ntime.sleep(60)\n"


@pytest.fixture
def process() -> Iterator[callable]:  # type: ignore[valid-type]
    started: list[subprocess.Popen[bytes]] = []

    def start(code: str) -> int:
        p = subprocess.Popen([sys.executable, "-c", code])
        started.append(p)
        return p.pid

    yield start
    for p in started:
        p.kill()
        p.wait(5)


async def _summary_of(pid: int) -> dict:
    c = ProcessCollector(lambda: {"backend": [pid]}, include_self=False)
    await c.baseline()
    # 24 samples 0.1 s apart, labelled 1 s apart: time compressed tenfold, the slopes with it.
    for k in range(24):
        time.sleep(0.1)
        await c.sample(float(k), 1.0)
    s = c.series()
    assert len(s["fds"]["backend"]) == 24 and len(s["threads"]["backend"]) == 24
    assert all(v >= 3 for v in s["fds"]["backend"]) and all(v >= 1 for v in s["threads"]["backend"])
    memory = drift.process_drift({"process": s}, t_lo=0.0)
    return Summary.model_validate(
        {"memory": {k: v.model_dump() for k, v in memory.items()}}
    ).model_dump(mode="json")


GATES = [
    "memory.backend.rss_mb_per_h < 2000",
    "memory.backend.fds_per_h < 100",
    "memory.backend.threads_per_h < 100",
]


async def test_leak_gates_fail_a_leaking_process_and_pass_a_healthy_one(process) -> None:  # type: ignore[no-untyped-def]
    leaking = await _summary_of(process(LEAKER))
    healthy = await _summary_of(process(HEALTHY))
    bad = evaluate_gates(GATES, leaking)
    good = evaluate_gates(GATES, healthy)
    assert [g["passed"] for g in bad] == [False, False, False], bad
    assert [g["passed"] for g in good] == [True, True, True], good
    # About one step (2 MB, a file, a thread) per labelled second: ~7,200 MB/h, ~3,600 fds/h.
    assert bad[0]["measured"] > 3_000 and bad[1]["measured"] > 1_000


def test_a_too_short_run_fails_the_gate_with_what_would_settle_it() -> None:
    series = _process_series([100.0] * 8, [5] * 8, [3] * 8)
    memory = drift.process_drift(series, t_lo=0.0)
    summary = {"memory": {k: v.model_dump() for k, v in memory.items()}}
    summary["drift"] = drift.latency_drift([_window(float(i), False, 5.0) for i in range(8)])
    summary["drift"] = summary["drift"].model_dump()
    gates = evaluate_gates(
        ["memory.backend.rss_mb_per_h < 20", "drift.frame_p99_ms_per_h < 10"], summary
    )
    assert not gates[0]["passed"] and not gates[1]["passed"]
    assert "not fitted" in gates[0]["reason"] and "8 samples" in gates[0]["reason"]
    assert "at least 20 s measured settles it" in gates[0]["reason"]
    assert "measure at least 30 s" in gates[1]["reason"]
    old = evaluate_gates(["memory.backend.rss_mb_per_h < 20"], {"memory": None})
    assert "written before leak gates" in old[0]["reason"]


def test_soak_scenario_validates_with_its_leak_gates() -> None:
    from pathlib import Path

    from harness.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    sc = load_scenario(root / "scenarios" / "soak.yaml")
    assert sc.workload.duration_s == 1800 and sc.workload.warmup_s >= 60
    metrics = {g.metric for g in sc.gates}
    assert {"memory.backend.rss_mb_per_h", "drift.frame_p99_ms_per_h", "errors.total"} <= metrics


def test_abort_on_fail_refuses_a_slope_gate_and_gates_accept_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.scenario import ScenarioError, load_scenario

    head = "name: s\nworkload: {sessions: 1, duration_s: 60}\n"
    path = tmp_path / "s.yaml"
    path.write_text(head + "abort_on_fail: {gates: ['drift.frame_p99_ms_per_h < 10']}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "slope over the whole measured window" in str(err.value)
    assert "abort_on_fail.gates[0]" in str(err.value)
    path.write_text(head + "gates: ['drift.frame_p99_ms_per_h < 10']\n")
    assert load_scenario(path)
