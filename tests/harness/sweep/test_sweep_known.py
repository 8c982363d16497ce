"""Sweeps against the known-capacity WebSocket server (real sockets, real runs, external driver).

Runs are 5 s at 5 fps after a 2 s warm-up where the knee matters, 2 s after 0.5-1 s where only
the search's bookkeeping does; the closed-form capacity is ``known_server.capacity``. That the
same sweep twice recommends the same configuration is measured by
benchmarks/sweep_stability.py (a second sweep here would double this file's ~2 minutes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from known_server import capacity
from known_sweeps import FAST_MS, FPS, KNEES, REPO, SLOW_MS, known_sweep_text, known_url

from harness.sweep import SCHEMA, SCHEMA_VERSION, load_sweep, run_sweep
from harness.sweep.search import MACHINE_LIMIT_NOTE

pytestmark = pytest.mark.slow


def test_capacity_found_and_recommended(
    tmp_path: Path, known_port: int, write_sweep: Callable[..., Path]
) -> None:
    assert (capacity(FPS, SLOW_MS), capacity(FPS, FAST_MS)) == KNEES
    path = write_sweep(known_sweep_text(known_port, [SLOW_MS, FAST_MS]))
    doc, code = run_sweep(load_sweep(path), tmp_path / "out")
    assert code == 0, doc["configurations"]
    slow, fast = doc["configurations"]
    for c, true in zip((slow, fast), KNEES, strict=True):
        # Within one session of the true knee, in at most 8 runs.
        assert c["capacity"] is not None and abs(c["capacity"] - true) <= 1, c
        assert len(c["points"]) <= 8
        assert c["status"] == "met"
    # The faster queue holds more sessions: it is the one recommended.
    assert doc["recommendation"]["config"] == "c02"
    # One stack per configuration (their URLs differ), reused over every load level.
    assert doc["stack_starts"] == 2 and doc["stack_restarts"] == 1
    assert doc["schema"] == SCHEMA and doc["schema_version"] == SCHEMA_VERSION
    sweep_dir = next(p for p in (tmp_path / "out").iterdir() if not p.is_symlink())
    on_disk = json.loads((sweep_dir / "sweep.json").read_text())
    assert on_disk["recommendation"] == doc["recommendation"]
    for p in doc["points"]:  # every point is an ordinary run folder
        run = json.loads((sweep_dir / p["run_dir"] / "results.json").read_text())
        assert run["scenario"]["workload"]["sessions"] == p["sessions"]
        assert [g["expr"] for g in run["gates"]] == doc["constraints"]
        assert (sweep_dir / p["run_dir"] / "junit.xml").is_file()
    html = (sweep_dir / "sweep.html").read_text()
    assert 'id="recommendation"' in html and 'data-config="c02"' in html


def test_invalid_ends_the_search_and_budget_holds(
    tmp_path: Path, known_port: int, write_sweep: Callable[..., Path]
) -> None:
    url = known_url(known_port, SLOW_MS)
    # Outcomes do not matter here (the INVALID run and the budget decide), so runs are short.
    text = known_sweep_text(
        known_port, [], budget="{max_runs: 3, max_minutes: 5}", duration_s=2, warmup_s=0.5
    ).replace(
        "  points:\n",
        "  points:\n"
        # late_threshold 1 us: every frame is "late", the generator's self-check says INVALID
        f'    - {{workload.late_threshold_ms: 0.001, stack.external.ws_url: "{url}"}}\n'
        f'    - {{workload.late_threshold_ms: 50, stack.external.ws_url: "{url}"}}\n',
    )
    doc, code = run_sweep(load_sweep(write_sweep(text)), tmp_path / "out")
    invalid, budgeted = doc["configurations"]
    assert [p["outcome"] for p in doc["points"] if p["config"] == "c01"] == ["machine-limit"]
    assert invalid["capacity"] is None
    assert invalid["capacity_note"].startswith(MACHINE_LIMIT_NOTE)
    assert invalid["status"] == "unknown"
    # 3 runs in all: c02 got the other 2, then the budget ended its search without a number.
    assert doc["budget"]["runs_used"] == 3 and len(budgeted["points"]) == 2
    assert budgeted["capacity"] is None and budgeted["note"].startswith("budget: 3 runs used")
    assert doc["status"] == "budget" and doc["recommendation"] is None and code == 1
    # Only the workload differs between them: one stack served both configurations.
    assert doc["stack_starts"] == 1 and doc["stack_restarts"] == 0


def test_ctrl_c_mid_sweep_keeps_finished_points(
    tmp_path: Path, known_port: int, write_sweep: Callable[..., Path]
) -> None:
    # The faster queue (capacity 6): 2 and 4 sessions pass with room to spare however short the
    # runs, so the search's third point is 8, the run interrupted.
    path = write_sweep(
        known_sweep_text(known_port, [FAST_MS], report=True, duration_s=2, warmup_s=1)
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", str(path), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[sweep] point 3/") or time.monotonic() > deadline:
                break
        time.sleep(1.0)  # inside the third run
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines) + rest
    assert proc.returncode == 130, text
    sweep_dir = next(p for p in out.iterdir() if not p.is_symlink())
    doc = json.loads((sweep_dir / "sweep.json").read_text())
    assert doc["status"] == "interrupted"
    assert doc["configurations"][0]["status"] == "unknown"
    assert doc["configurations"][0]["note"] == "interrupted"
    finished = [p for p in doc["points"] if p["outcome"] in ("pass", "fail")]
    assert [p["sessions"] for p in finished] == [2, 4]
    for p in finished:
        assert (sweep_dir / p["run_dir"] / "report.html").is_file()
    # The interrupted run left partial results, kept and marked, never counted as an outcome.
    cut = [p for p in doc["points"] if p["why"] == "interrupted"]
    assert [p["sessions"] for p in cut] == [8]
    assert (sweep_dir / "sweep.html").is_file()
    assert f"interrupted: partial sweep in {sweep_dir}/sweep.json" in text
