"""Session traffic against a real backend (uvicorn, WebSocket on loopback, no TorchServe: the
TorchServe cohort's windows fall back to the local engine, but the backend still assigns and
names each session's route at connect, which is what these tests are about).

Short runs: a few seconds of load each.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_server import BackendHandle, run_backend
from scipy.stats import binom, poisson

from harness.clock import RunClock
from harness.load import LoadConfig, LoadGenerator, run_with_best_loop, synthetic_trace
from harness.results.model import Results, SessionRecord, unknown_keys
from harness.scenario.traffic import plan_arrivals
from harness.stack.base import put_rollout

REPO = Path(__file__).resolve().parents[3]
ADMIN = "h15-admin-token-for-tests"
TRACE = synthetic_trace(3, 4, None, (15, 25))


@pytest.fixture(scope="module")
def backend() -> Iterator[BackendHandle]:
    env = {
        "USE_TORCHSERVE": "true",
        "TORCHSERVE_URL": "http://127.0.0.1:9",  # nothing listens: TorchServe windows fall back
        "TORCHSERVE_TIMEOUT_MS": "200",
        "TORCHSERVE_ROLLOUT_PERCENT": "0",
        "ADMIN_TOKEN": ADMIN,
    }
    with run_backend(env) as handle:
        yield handle


def _generate(config: LoadConfig, during: object = None) -> object:
    clock = RunClock()
    gen = LoadGenerator(config, clock)

    async def main() -> object:
        clock.start()
        side = asyncio.create_task(during(clock)) if during else None  # type: ignore[operator]
        result = await gen.run()
        if side is not None:
            await side
        return result

    return run_with_best_loop(main())


@pytest.mark.slow
def test_arrivals_against_a_real_backend(backend: BackendHandle) -> None:
    """Poisson arrivals at 4/s for 6 s: the count lies in its 99 % Poisson bounds, every planned
    session connects, streams its ~1.5 s and is closed by the harness, with costs reported; a
    rollout set to 50 % at t = 2 s reaches exactly the sessions that connect after it."""
    rate, duration = 4.0, 6.0
    plan = plan_arrivals(rate, duration, "poisson", "exponential", 1.5, seed=11)
    lo, hi = poisson.ppf([0.005, 0.995], rate * duration)
    assert lo <= len(plan) <= hi
    put_rollout(backend.base_url, ADMIN, 0)
    changed: list[float] = []

    async def set_rollout(clock: RunClock) -> None:
        await clock.sleep_until(2.0)
        await asyncio.to_thread(put_rollout, backend.base_url, ADMIN, 50)
        changed.append(clock.now())

    config = LoadConfig(
        ws_url=backend.ws_url, sessions=0, fps=30, duration_s=duration, warmup_s=1,
        ramp_up_s=0, traces=lambda _i: TRACE, plan=plan, late_threshold_ms=50,
    )  # fmt: skip
    result = _generate(config, set_rollout)
    sessions = result.sessions  # type: ignore[attr-defined]
    streamed = [s for s in sessions if s["frames"] > 0]
    assert len(sessions) == len(plan)
    assert all(s["outcome"] in ("ended", "open") for s in streamed), sessions
    assert sum(s["outcome"] == "refused" for s in sessions) == 0
    # The generator's records are exactly the results model's SessionRecord.
    for s in sessions:
        assert unknown_keys(SessionRecord.model_validate(s)) == [], s
    assert all(s["connect_ms"] is not None and s["connect_ms"] > 0 for s in streamed)
    # Sessions that left before the end were closed by the harness, the close timed.
    left = [s for s in streamed if s["closed_s"] is not None and s["closed_s"] < duration - 0.5]
    assert left and all(s["close_ms"] is not None for s in left)
    # Their lifetime is their planned length plus the connect lead and the reply drain.
    for s, p in zip(sessions, plan, strict=True):
        if s in left:
            assert p.end_s - p.start_s <= s["lifetime_s"] <= p.end_s - p.start_s + 1.5
    # Every session knows its cohort from the backend's upgrade header.
    assert all(s["cohort"] in ("torchserve", "local") for s in streamed)
    before = [s for s in streamed if s["connected_s"] < 2.0]
    after = [s for s in streamed if s["connected_s"] > changed[0]]
    assert before and all(s["cohort"] == "local" for s in before)
    share = sum(s["cohort"] == "torchserve" for s in after) / len(after)
    lo, hi = binom.ppf([0.005, 0.995], len(after), 0.5) / len(after)
    assert lo <= share <= hi, (share, len(after))


def _scenario(tmp_path: Path, backend: BackendHandle, body: str) -> Path:
    path = tmp_path / "traffic.yaml"
    path.write_text(
        "stack:\n  driver: external\n  use_torchserve: true\n  external:\n"
        f"    ws_url: {backend.ws_url}\n    http_url: {backend.base_url}\n"
        "    admin_token_env: H15_ADMIN\n" + body
    )
    return path


def _harness(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "H15_ADMIN": ADMIN}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *args], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _results(out: Path) -> dict:
    return json.loads((out / "latest" / "results.json").read_text())


@pytest.mark.slow
def test_rollout_block_and_live_outputs_while_running(
    tmp_path: Path, backend: BackendHandle
) -> None:
    """A 50 -> 100 % rollout over arriving sessions; the live JSON lines and the Prometheus
    endpoint are read while the run goes; the results show each step on the timeline."""
    put_rollout(backend.base_url, ADMIN, 0)
    scenario = _scenario(tmp_path, backend, (
        "name: traffic-rollout\n"
        "workload:\n  fps: 30\n  duration_s: 18\n  warmup_s: 1\n"
        "  late_threshold_ms: 50\n"
        "  arrivals: {rate_per_s: 4, process: constant,\n"
        "             session_length: {distribution: fixed, seconds: 2}}\n"
        "  trace: {synthetic: {seed: 3, signs: 4, rest_frames: [15, 25]}}\n"
        "rollout:\n  steps: [50, 100]\n  start_s: 1\n  hold_s: 8\n  settle_s: 0.5\n"
        "  max_holds: 0\n"
        # No TorchServe here: its cohort's windows all fall back, which the judge allows. Both
        # cohorts take the same path, so a latency criterion could only say "too little data"
        # in an 8-s hold on a busy machine (and abort): this test is about the mechanics; the
        # statistics of the judgement are tested on constructed cohorts.
        "  judge: {min_sessions: 1, latency: [], max_fallback_share: 1.0}\n"
        "live: {file: live.jsonl, prometheus_port: 0}\n"
        "report: {enabled: false}\n"
    ))  # fmt: skip
    run_dir = tmp_path / "run"
    proc = _harness(str(scenario), "--run-dir", str(run_dir))
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    live = run_dir / "live.jsonl"
    rows: list[dict] = []
    scraped = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if live.exists():
            rows = [json.loads(x) for x in live.read_text().splitlines() if x.strip()]
        url = next((x.split("live figures: ", 1)[1].strip() for x in lines
                    if "live figures: " in x), None)  # fmt: skip
        if url and not scraped and len(rows) >= 3:
            with urllib.request.urlopen(url, timeout=5) as resp:
                scraped = resp.read().decode()
        if scraped and len(rows) >= 4:
            break
        time.sleep(0.3)
    running_when_read = proc.poll() is None
    proc.wait(timeout=90)
    reader.join(timeout=5)
    assert running_when_read, "".join(lines)
    assert len(rows) >= 4 and rows[-1]["t"] > rows[0]["t"]
    assert {"sessions_started", "cohort_torchserve", "rollout_percent"} <= rows[-1].keys()
    # Gauges carry the run's labels (issue 18 item 3): a baseline run would be another series.
    labels = '{role="candidate",run="run",scenario="traffic-rollout"}'
    assert f"harness_sessions_started{labels} " in scraped
    assert f"harness_frames_per_s{labels} " in scraped
    assert url.startswith("http://127.0.0.1:")
    doc = json.loads((run_dir / "results.json").read_text())
    assert proc.returncode in (0, 2), "".join(lines)  # 2: the generator was INVALID here
    # The whole document, rollout and traffic included, is exactly the results model.
    typed = Results.model_validate(doc)
    assert unknown_keys(typed) == []
    assert typed.rollout is not None and typed.summary.traffic is not None
    assert typed.sessions and typed.sessions[0].outcome in ("ended", "open")
    ro = doc["rollout"]
    assert [s["percent"] for s in ro["steps"]] == [50, 100], ro
    assert ro["outcome"] == "completed", ro["reason"]
    step = ro["steps"][0]["judgements"][0]
    assert step["decision"] == "advance"
    assert step["figures"]["torchserve"]["sessions"] >= 1
    assert step["figures"]["local"]["sessions"] >= 1
    marks = [e for e in doc["events"] if e.get("source") == "rollout"]
    assert [e["params"]["percent"] for e in marks] == [50, 100] and all(e["ok"] for e in marks)
    gate = next(g for g in doc["gates"] if g["metric"] == "rollout")
    assert gate["passed"]
    traffic = doc["summary"]["traffic"]
    # 4/s constant over the 17.5 s the plan covers (the run's 18 s less the connect lead).
    assert traffic["refused"] == 0 and traffic["started"] == traffic["planned"] == 70
    assert traffic["cohorts"].get("torchserve", 0) >= 2
    assert traffic["connect_ms"]["p50"] is not None and traffic["close_ms"]["count"] > 0
    # The live file saw the sessions come and go: about 4/s x 2 s are open at a time.
    assert rows[-1]["sessions_started"] > rows[0]["sessions_started"]
    assert any(r["sessions_ended"] > 0 for r in rows)
    steady = [r["sessions_connected"] for r in rows if r["t"] > 4]
    assert steady and max(steady) <= 14, rows  # ~10: 2 s + connect lead + drain, 4/s
    for r in rows:
        assert r["sessions_connected"] == r["cohort_torchserve"] + r["cohort_local"]
    # No TorchServe here: the TorchServe cohort's every classification falls back, the old
    # pipeline's never does. The share is the TorchServe cohort's (issue 18 item 3), not the
    # old "local share of all answers" that mixed in the old-pipeline cohort.
    for r in rows:
        if r["inferences_torchserve_cohort"]:
            assert (
                r["fallback_share"] == 1.0 and r["fallbacks"] == r["inferences_torchserve_cohort"]
            )
        elif r["inferences_old_pipeline"]:
            assert r["fallback_share"] == 0.0, r
    assert any(r["inferences_old_pipeline"] for r in rows)
    assert any(r["inferences_torchserve_cohort"] for r in rows)
    fb = doc["summary"]["fallback"]
    assert fb["count"] == fb["torchserve_cohort"] > 0 and fb["old_pipeline"] > 0, fb


@pytest.mark.slow
def test_abort_on_fail_stops_early_and_keeps_partial_results(
    tmp_path: Path, backend: BackendHandle
) -> None:
    scenario = _scenario(tmp_path, backend, (
        "name: traffic-abort\n"
        "workload:\n  sessions: 2\n  fps: 30\n  duration_s: 60\n  warmup_s: 1\n"
        "  late_threshold_ms: 50\n"
        "abort_on_fail:\n  gates: ['frame.latency_ms.p50 < 0.001']\n"
        "  min_measured_s: 1\n  check_every_s: 0.5\n"
        "gates: ['errors.total == 0']\nreport: {enabled: false}\n"
    ))  # fmt: skip
    started = time.monotonic()
    proc = _harness(str(scenario), "--out", str(tmp_path / "out"))
    _, err = proc.communicate(timeout=90)
    took = time.monotonic() - started
    assert proc.returncode in (1, 2), err
    assert took < 40, f"the run was not stopped early ({took:.0f} s)"
    doc = _results(tmp_path / "out")
    typed = Results.model_validate(doc)
    assert unknown_keys(typed) == []
    assert typed.aborted is not None and typed.aborted.measured_until_s < 10
    assert doc["aborted"]["gate"] == "frame.latency_ms.p50 < 0.001"
    assert doc["aborted"]["at_s"] < 10
    assert doc["summary"]["duration_s"] < 10  # the partial run, kept and analysed
    assert doc["summary"]["frame"]["latency_ms"]["count"] > 0
    lost = next(g for g in doc["gates"] if g["metric"] == "abort_on_fail")
    assert not lost["passed"] and "run stopped at" in lost["reason"]
    # Said while it happens, with the lag between the figures judged and the stop.
    assert "abort-on-fail: gate 'frame.latency_ms.p50 < 0.001' lost" in err, err[-2000:]
    assert "reply_timeout_s = 5 s" in err
    if doc["valid"]:
        assert doc["verdict"] == "failed" and proc.returncode == 1
