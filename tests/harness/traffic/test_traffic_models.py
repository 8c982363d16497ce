"""Traffic plans (arrivals, stages), the scenario rules about them, CLI shorthands, live files."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import poisson

from harness.cli import main, parse_seconds, shorthand_overrides
from harness.load.generator import LiveStats
from harness.runner.live import COLUMNS, LiveExporter, LiveFile, RunLabels, row_of
from harness.scenario import ScenarioError, load_scenario
from harness.scenario.traffic import arrival_times, plan_arrivals, plan_stages, target_at

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("seed", range(5))
def test_poisson_counts_within_bounds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = arrival_times(3.0, 100.0, "poisson", rng)
    lo, hi = poisson.ppf([0.005, 0.995], 300)
    assert lo <= t.size <= hi
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 100
    # Exponential gaps: their mean is 1/rate within a loose bound for 300 draws.
    assert 0.25 < np.diff(t).mean() < 0.42


def test_constant_arrivals_are_evenly_spaced() -> None:
    t = arrival_times(2.0, 10.0, "constant", np.random.default_rng(0))
    assert t.size == 20
    assert np.allclose(np.diff(t), 0.5, atol=0.011)


def test_arrival_rate_stages_follow_the_integral() -> None:
    # ramp 0 -> 4/s over 10 s (20), hold 4/s for 10 s (40), ramp down over 10 s (20)
    stages = [(10, 4), (10, 4), (10, 0)]
    t = arrival_times(stages, 30.0, "constant", np.random.default_rng(0))
    assert t.size == 80
    assert np.count_nonzero(t < 10) == 20 and np.count_nonzero((t >= 10) & (t < 20)) == 40
    assert target_at(stages, 5.0) == pytest.approx(2.0)


def test_session_lengths() -> None:
    fixed = plan_arrivals(2.0, 20.0, "constant", "fixed", 5.0, 1)
    assert all(p.end_s - p.start_s == pytest.approx(min(5.0, 20.0 - p.start_s)) for p in fixed)
    exp = plan_arrivals(20.0, 100.0, "poisson", "exponential", 2.0, 1)
    lengths = np.array([p.end_s - p.start_s for p in exp if p.end_s < 100.0])
    assert 1.8 < lengths.mean() < 2.2  # ~2000 draws of Exp(mean 2)
    traced = plan_arrivals(1.0, 10.0, "constant", "trace", None, 1, lambda i: 1.0 + i)
    assert [round(p.end_s - p.start_s, 6) for p in traced[:3]] == [1.0, 2.0, 3.0]
    assert plan_arrivals(1.0, 10.0, "poisson", "fixed", 1.0, 7) == plan_arrivals(
        1.0, 10.0, "poisson", "fixed", 1.0, 7
    )  # seeded: the same plan every time


def test_session_stages_open_and_close_slots() -> None:
    plan = plan_stages([(5, 3), (10, 3), (5, 0)], 20.0)
    for t in (1.0, 4.9, 6.0, 12.0, 16.0, 19.5):
        open_now = sum(p.start_s <= t < p.end_s for p in plan)
        assert open_now == int(np.floor(float(target_at([(5, 3), (10, 3), (5, 0)], t)) + 1e-9))
    assert len(plan) == 3
    # A slot that closes and reopens gets a new session.
    up_down_up = [(0.1, 1), (1, 1), (0.1, 0), (1, 0), (0.1, 1), (1, 1)]
    again = plan_stages(up_down_up, 3.3)
    assert [(round(p.start_s, 3), round(p.end_s, 3)) for p in again] == [(0.1, 1.1), (2.3, 3.3)]


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("name: t\n" + body)
    return path


ARRIVALS = (
    "workload:\n  duration_s: 20\n  arrivals: {rate_per_s: 2, session_length: "
    "{distribution: fixed, seconds: 5}}\n"
)


def test_set_rollout_no_session_can_observe_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "stack: {use_torchserve: true, rollout_percent: 0}\n"
        "workload: {sessions: 4, duration_s: 12, ramp_up_s: 1}\n"
        "timeline: [{at_s: 3, action: set_rollout, percent: 100}]\n"
    ))  # fmt: skip
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "set_rollout at 3 s reaches no session" in text
    assert "connect by t=1.5 s" in text and "workload.arrivals" in text
    # With arrivals, the same change reaches every later session: accepted.
    ok = _write(tmp_path, "stack: {use_torchserve: true, rollout_percent: 0}\n" + ARRIVALS
                + "timeline: [{at_s: 3, action: set_rollout, percent: 100}]\n")  # fmt: skip
    assert load_scenario(ok).timeline[0].percent == 100


def test_rollout_block_rules(tmp_path: Path) -> None:
    fixed = _write(tmp_path, (
        "stack: {use_torchserve: true}\nworkload: {sessions: 4, duration_s: 40}\n"
        "rollout: {steps: [10, 100], hold_s: 10}\n"
    ))  # fmt: skip
    with pytest.raises(ScenarioError, match="a rollout needs sessions that keep arriving"):
        load_scenario(fixed)
    long = _write(tmp_path, "stack: {use_torchserve: true}\n" + ARRIVALS
                  + "rollout: {steps: [10, 50, 100], hold_s: 10}\n")  # fmt: skip
    # hold_s is a maximum (a step ends when decided): running past the end is a warning
    warnings: list[str] = []
    load_scenario(long, warnings=warnings)
    assert any(re.search(r"end at 30 s, past workload\.duration_s", w) for w in warnings)
    falling = _write(tmp_path, "stack: {use_torchserve: true}\n" + ARRIVALS
                     + "rollout: {steps: [50, 10], hold_s: 5}\n")  # fmt: skip
    with pytest.raises(ScenarioError, match="rollout steps must rise"):
        load_scenario(falling)


def test_exactly_one_traffic_model(tmp_path: Path) -> None:
    both = _write(tmp_path, ARRIVALS.replace("duration_s: 20", "duration_s: 20\n  sessions: 3"))
    with pytest.raises(ScenarioError, match="exactly one traffic model"):
        load_scenario(both)
    none = _write(tmp_path, "workload: {duration_s: 20}\n")
    with pytest.raises(ScenarioError, match="exactly one traffic model"):
        load_scenario(none)


def test_abort_on_fail_gates_are_checked_like_gates(tmp_path: Path) -> None:
    bad = _write(tmp_path, "workload: {sessions: 1, duration_s: 5}\n"
                 "abort_on_fail: {gates: ['frame.latency_ms.p77 < 3']}\n")  # fmt: skip
    with pytest.raises(ScenarioError, match=r"abort_on_fail\.gates"):
        load_scenario(bad)


def test_shipped_rollout_scenarios_validate() -> None:
    canary = load_scenario(REPO / "scenarios" / "canary.yaml")
    assert canary.rollout is not None and canary.rollout.steps == [10, 50, 100]
    assert canary.workload.arrivals is not None
    abort = load_scenario(REPO / "scenarios" / "rollout-abort.yaml")
    assert abort.stack.torchserve.max_batch_delay_ms >= 500
    assert abort.rollout == canary.rollout  # only the fault differs


def test_shorthands_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_seconds("90") == 90 and parse_seconds("2m") == 120 and parse_seconds("1h") == 3600
    with pytest.raises(ValueError, match="not a duration"):
        parse_seconds("soon")

    class Args:
        sessions, duration, fps, warmup = "20", "60s", "30", None
        arrival_rate = live = live_format = prometheus_port = None

    sets = shorthand_overrides(Args(), {"HARNESS_FPS": "15", "HARNESS_WARMUP": "5s"})
    assert "workload.sessions=20" in sets and "workload.arrivals=null" in sets
    assert "workload.duration_s=60" in sets
    assert "workload.fps=30" in sets  # the flag wins over HARNESS_FPS
    assert "workload.warmup_s=5" in sets  # the variable fills what no flag gave
    # End to end: validate with shorthands on a shipped arrivals scenario.
    code = main(["validate", str(REPO / "scenarios" / "canary.yaml"), "--duration", "1m",
                 "--arrival-rate", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "poisson arrivals 3/s" in out and "60 s" in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "HARNESS_SESSIONS" in help_text and "HARNESS_OUT" in help_text


def _stats(t: float) -> LiveStats:
    return LiveStats(
        elapsed=t, remaining=10 - t, frames_per_s=120.0, p95_ms=4.5, errors=0,
        fallback_share=None, sessions_connected=4, sessions_started=5, sessions_ended=1,
        sessions_refused=0, cohorts={"torchserve": 1, "local": 3},
    )  # fmt: skip


def test_live_file_jsonl_and_csv(tmp_path: Path) -> None:
    f = LiveFile(tmp_path / "l.jsonl", "jsonl")
    f.write(row_of(_stats(1.0), 10))
    # Flushed per row: readable before the file is closed.
    row = json.loads((tmp_path / "l.jsonl").read_text().splitlines()[0])
    assert row["cohort_torchserve"] == 1 and row["rollout_percent"] == 10
    f.close()
    c = LiveFile(tmp_path / "l.csv", "csv")
    c.write(row_of(_stats(1.0)))
    c.write(row_of(_stats(2.0)))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "l.csv").read_text())))
    c.close()
    assert [r["t"] for r in rows] == ["1.0", "2.0"] and tuple(rows[0]) == COLUMNS
    assert rows[0]["p95_ms"] == "4.5" and rows[0]["rollout_percent"] == ""


def test_live_exporter_serves_on_loopback() -> None:
    exporter = LiveExporter("127.0.0.1", 0)
    try:
        exporter.update(row_of(_stats(3.0), 50, RunLabels("r1", "canary", "candidate")))
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        exporter.close()
    labels = '{role="candidate",run="r1",scenario="canary"}'
    assert f"harness_rollout_percent{labels} 50.0" in text
    assert f"harness_sessions_started{labels} 5.0" in text
    assert f"harness_p95_ms{labels} 4.5" in text


def test_live_gauges_and_rows_are_labelled_per_run(tmp_path: Path) -> None:
    """Issue 18 item 3: the baseline and the candidate run of one invocation are two series
    (gauges labelled run/scenario/role), and on one stdout a CSV reader sees ONE header."""
    exporter = LiveExporter("127.0.0.1", 0)
    base = RunLabels("20261207T000000Z-baseline-quick", "baseline-quick", "baseline")
    cand = RunLabels("20261207T000030Z-quickstart", "quickstart", "candidate")
    try:
        exporter.update(row_of(_stats(3.0), None, base))
        exporter.update(row_of(_stats(4.0), 100, cand))
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        exporter.close()
    series = [ln for ln in text.splitlines() if ln.startswith("harness_t{")]
    assert len(series) == 2, series
    assert any('role="baseline"' in ln and ln.endswith(" 3.0") for ln in series), series
    assert any('role="candidate"' in ln and ln.endswith(" 4.0") for ln in series), series
    assert 'harness_fallback_share{role="baseline",run="20261207T000000Z-baseline-quick"' in text

    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        for labels in (base, cand):  # two runs, one stdout
            f = LiveFile("-", "csv")
            f.write(row_of(_stats(1.0), None, labels))
            f.close()
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert [r["role"] for r in rows] == ["baseline", "candidate"], stream.getvalue()
    assert [r["scenario"] for r in rows] == ["baseline-quick", "quickstart"]
