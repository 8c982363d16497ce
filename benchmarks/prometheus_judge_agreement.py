"""Issue 22 target: the in-run rollout judgement and ``harness judge`` over Prometheus reach
the same decision on every step of 3 canary runs.

    .venv/bin/python benchmarks/prometheus_judge_agreement.py [--runs 3] [--scenario canary.yaml]
        [--json benchmarks/results/prometheus_judge_agreement.json] [--set KEY=VALUE ...]

Each run is ``harness run scenarios/canary.yaml --set stack.prometheus.enabled=true`` (real
backend, TorchServe and Prometheus scraping every 1 s; the shipped 60 s), then
``harness judge --run RUN_DIR --step 1`` (the run's stored series served by a real Prometheus,
the same judge on the cohorts' histogram buckets, the run's interval, the run's scenario).
Per step: both decisions, looks, counts (sessions, frames, classifications per cohort) and
the cohort percentiles with the bucket holding Prometheus's (its resolution). The two
latencies differ in kind: the in-run judge's are the client's (scheduled -> reply: network,
the in-order reply queue and the generator's own delay included), Prometheus's the server's
(received -> reply built), so the figures are expected at or above the bucket, not inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.analysis.judgement import ProductionJudgement  # noqa: E402
from harness.analysis.prometheus_judge import agreement  # noqa: E402
from harness.results.model import Results  # noqa: E402


def _one(out: Path, sets: list[str], scenario: str) -> dict[str, object]:
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "harness", "run", str(ROOT / "scenarios" / scenario),
           "--out", str(out), "--set", "stack.prometheus.enabled=true"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    t0 = time.monotonic()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    run_s = time.monotonic() - t0
    (results,) = [p for p in out.glob("*/results.json") if not p.parent.is_symlink()]
    doc = Results.model_validate_json(results.read_text())
    t0 = time.monotonic()
    judged = subprocess.run(
        [sys.executable, "-m", "harness", "judge", "--run", str(results.parent), "--step", "1",
         "--out", str(out / "judgement")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    judge_s = time.monotonic() - t0
    j = ProductionJudgement.model_validate_json((out / "judgement" / "judgement.json").read_text())
    assert doc.rollout is not None
    agree = agreement(
        doc.rollout, j.rollout,
        [e / 1000 for e in j.source.frame_buckets_ms],
        [e / 1000 for e in j.source.inference_buckets_ms],
    )  # fmt: skip
    return {
        "run_exit": run.returncode, "verdict": doc.verdict, "in_run_outcome": doc.rollout.outcome,
        "judge_exit": judged.returncode, "prometheus_outcome": j.rollout.outcome,
        "same_decisions": agree.same_decisions,
        "decisions": [[s.percent, s.in_run, s.prometheus] for s in agree.steps],
        "run_s": round(run_s, 1), "judge_s": round(judge_s, 1),
        "loadavg_1m_before": round(load, 2),
        "agreement": agree.model_dump(mode="json"),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--scenario", default="canary.yaml", help="a rollout scenario in scenarios/")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="prom-agree-") as tmp:
        for i in range(args.runs):
            res = _one(Path(tmp) / f"run{i}", args.sets, args.scenario)
            print(json.dumps({k: v for k, v in res.items() if k != "agreement"}), flush=True)
            runs.append(res)
    summary = {
        "what": "in-run rollout judgement vs harness judge over the run's Prometheus, per step "
        "(issue 22 target: same decision on every step of 3 canary runs)",
        "command": "benchmarks/prometheus_judge_agreement.py " + " ".join(sys.argv[1:]),
        "conditions": "2-core VM shared with other helpers' work (load average per run)",
        "same_decision_on_every_step": all(r["same_decisions"] for r in runs),
        "steps_compared": sum(len(r["decisions"]) for r in runs),  # type: ignore[arg-type]
        "runs": runs,
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["same_decision_on_every_step"] else 1


if __name__ == "__main__":
    sys.exit(main())
