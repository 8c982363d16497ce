"""False-abort and true-abort rates of the rollout judge on simulated cohorts.

    PYTHONPATH=. .venv/bin/python benchmarks/rollout_judge.py --seeds 50

Healthy: the canary's shape (of ~20 concurrent sessions, 10 % and 50 % on TorchServe, whose HTTP
hop adds ~15 ms per inference, 2 % of its classifications answered locally), judged with
canary.yaml's judge. Slow: rollout-abort.yaml's TorchServe without hedging (inferences ~1 s, the
in-order frames behind them waiting too). Hedged: the same TorchServe with the backend's hedge
(users see ~205 ms, 90 % of the cohort's classifications answered locally).
Cohorts come from tests/harness/traffic/cohorts.py (lognormal frame and inference latencies).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "harness" / "traffic"))

from cohorts import simulate

from harness.analysis.rollout import judge_step
from harness.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
# (kind, TorchServe-cohort inference ms, frames queued behind an inference, local share)
KINDS = (("healthy", 21.0, 3, 0.02), ("slow", 1000.0, 30, 0.0), ("hedged", 205.0, 6, 0.9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hold-s", type=float, default=9.0, help="judged window per step (s)")
    args = ap.parse_args()
    judge = load_scenario(REPO / "scenarios" / "canary.yaml").rollout.judge  # type: ignore[union-attr]
    window = (0.0, args.hold_s)
    counts: dict[str, dict[str, int]] = {k[0]: {} for k in KINDS}
    started = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for share in (0.1, 0.5):
            ts = max(2, round(20 * share))
            control = simulate(rng, 20 - ts, t1=args.hold_s)
            for kind, inference_ms, queue, local in KINDS:
                canary = simulate(rng, ts, t1=args.hold_s, inference_ms=inference_ms,
                                  queue_frames=queue, local_share=local)  # fmt: skip
                d = judge_step(canary, control, judge, window, final=True).decision
                counts[kind][d] = counts[kind].get(d, 0) + 1
    took = time.perf_counter() - started
    n = 2 * args.seeds
    for kind, c in counts.items():
        print(f"{kind}: {n} judgements: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"false-abort rate (healthy): {counts['healthy'].get('abort', 0) / n:.3f}")
    for kind in ("slow", "hedged"):
        print(f"abort rate ({kind}): {counts[kind].get('abort', 0) / n:.3f}")
    print(f"{took / (len(KINDS) * n) * 1000:.0f} ms per judgement")


if __name__ == "__main__":
    main()
