"""How long ``harness judge`` takes over a long interval, worst case (a step that never
decides, so every look is taken), on synthetic bucket series (no Prometheus: the judging, not
the queries).

    .venv/bin/python benchmarks/prometheus_judge_scale.py --hours 24 --fps 1000 [--step 10]

``--fps``: frames per second over both cohorts (10 % TorchServe); the cohorts have the same
distribution and the allowance is 0, so the latency criterion neither passes nor fails.
Measured here (2-core shared VM): 1 h at 1000 fps, 142 looks, 8.9 s; 24 h at 1000 fps, 207
looks, 76 s (before the sparser look schedule: 1 h took 23 s with 359 looks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis.histogram_cohorts import CohortSeries
from harness.analysis.prometheus_judge import JudgeSettings, Series, judge_series
from harness.scenario.models import RolloutJudge

FRAME_EDGES = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.03, 0.04, 0.05,
               0.1, 0.25, 0.5, 1.0, 2.5, 5.0]  # fmt: skip
INFERENCE_EDGES = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
                   0.1, 0.2, 0.5, 1.0, 2.0, 5.0]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--fps", type=float, default=1000.0)
    ap.add_argument("--step", type=float, default=10.0)
    args = ap.parse_args()
    t = np.arange(0.0, args.hours * 3600 + args.step, args.step)
    fe, ie = np.array(FRAME_EDGES), np.array(INFERENCE_EDGES)

    def cohort(share: float) -> CohortSeries:
        fb = np.zeros(fe.size + 1)
        fb[[1, 2, 3]] = [0.6, 0.3, 0.1]
        ib = np.zeros(ie.size + 1)
        ib[[5, 6, 7]] = [0.3, 0.5, 0.2]
        inference = np.outer(t, ib) * args.fps * share / 15
        return CohortSeries(
            t=t, frame_edges=fe, frame_buckets=np.outer(t, fb) * args.fps * share,
            inference_edges=ie, inference_buckets=inference,
            inference_local_buckets=inference * 0, errors=t * 0,
            sessions_opened=t * 0, sessions_open=np.full(t.size, 30 * share),
        )  # fmt: skip

    series = Series(
        start=0.0, step=args.step, t=t, percent=np.r_[0.0, np.full(t.size - 1, 10.0)],
        cohorts={"torchserve": cohort(0.1), "local": cohort(0.9)}, fps=30.0,
        frame_edges=FRAME_EDGES, inference_edges=INFERENCE_EDGES,
    )  # fmt: skip
    judge = RolloutJudge(latency=["frame.p95", "inference.p50"], latency_allowance_ms=0,
                         latency_allowance_ratio=0)  # fmt: skip
    t0 = time.process_time()
    record = judge_series(series, JudgeSettings(judge=judge, look_every_s=args.step))
    spent = time.process_time() - t0
    (step,) = record.steps
    print(f"{args.hours:g} h at {args.fps:g} frames/s, step {args.step:g} s: {len(step.looks)} "
          f"looks, {spent:.1f} s CPU, decision {step.decision or 'continue'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
