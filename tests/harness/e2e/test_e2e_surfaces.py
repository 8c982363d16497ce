"""What the outputs SAY, end to end through the real CLI (issue 18 item 3, issue 20 item 6).

- ``--live - --live-format csv``: stdout is rows only, each one parses; every human word
  (progress, verdict, gates, comparison, ``results:``) is on stderr. A TorchServe-off run's
  fallback share reads 0 % (the old pipeline is not a fallback), never 100 %.
- A healthy 10 % canary through a real TorchServe: the fallback share is the TorchServe
  cohort's, 0 % live and final, while most classifications are answered locally by the
  old-pipeline cohort (which the old "fallback" figure counted: ~90 %).

Short runs (each about 15-30 s on an idle 2-core box).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runner.live import COLUMNS
from harness.stack.local import REPO_ROOT

SCENARIOS = REPO_ROOT / "scenarios"
LOOSE = ["--set", "workload.late_threshold_ms=25", "--set", "report.enabled=false"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not (REPO_ROOT / "build" / "model-store" / "signflow-1.0.mar").is_file(),
        reason="models/archives not built (make setup)",
    ),
]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", *argv, *LOOSE],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_live_csv_on_stdout_is_only_rows(tmp_path: Path) -> None:
    proc = _run(
        str(SCENARIOS / "baseline-quick.yaml"), "--run-dir", str(tmp_path / "run"),
        "--sessions", "2", "--duration", "6", "--warmup", "1",
        "--live", "-", "--live-format", "csv",
    )  # fmt: skip
    assert proc.returncode in (0, 2), proc.stderr[-3000:]  # 2: generator late on a busy box
    rows = list(csv.DictReader(io.StringIO(proc.stdout), strict=True))
    assert len(rows) >= 4, proc.stdout
    assert proc.stdout.splitlines()[0] == ",".join(COLUMNS)
    for row in rows:  # every line a row of the columns, none a human sentence
        assert None not in row and tuple(row) == COLUMNS, row
        float(row["t"])
        assert row["role"] == "candidate" and row["scenario"] == "baseline-quick"
        # TorchServe off: every classification is the old pipeline's, none a fallback.
        assert row["fallback_share"] in ("", "0.0"), row
    assert any(r["fallback_share"] == "0.0" for r in rows), rows
    assert "verdict" in proc.stderr and "results:" in proc.stderr
    assert "verdict" not in proc.stdout and "results:" not in proc.stdout


def test_healthy_canary_reads_no_fallback_live_or_final(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _run(
        str(SCENARIOS / "quickstart.yaml"), "--run-dir", str(run_dir),
        "--sessions", "10", "--fps", "30", "--duration", "10", "--warmup", "2",
        "--live", "live.jsonl", "--prometheus-port", "0",
        "--set", "stack.rollout_percent=10", "--set", "baseline=null", "--set", "gates=[]",
    )  # fmt: skip
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    doc = json.loads((run_dir / "results.json").read_text())
    s = doc["summary"]
    # The backend routes exactly 1 session of 10 to TorchServe at 10 % (deterministic).
    assert s["traffic"]["cohorts"] == {"local": 9, "torchserve": 1}, s["traffic"]
    assert s["served_by"]["local"] > 0.6  # the old pipeline's answers, by design
    assert s["fallback"]["torchserve_cohort"] > 0 and s["fallback"]["count"] == 0, s["fallback"]
    assert s["fallback"]["share"] == 0.0
    assert sum(doc["series"]["served_fallback"]) == 0
    rows = [json.loads(x) for x in (run_dir / "live.jsonl").read_text().splitlines()]
    assert len(rows) >= 6 and all(r["fallback_share"] in (0.0, None) for r in rows), rows
    assert sum(r["inferences_old_pipeline"] for r in rows) > 0
    assert sum(r["inferences_torchserve_cohort"] for r in rows) > 0
    assert {r["role"] for r in rows} == {"candidate"} and rows[0]["run"] == run_dir.name
