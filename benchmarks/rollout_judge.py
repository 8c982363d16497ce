"""Error rates of the sequential rollout judge on simulated cohorts, judged every second.

    PYTHONPATH=. .venv/bin/python benchmarks/rollout_judge.py --rollouts 1000 --power-rollouts 200

Each simulated rollout step is judged every second (anytime-valid: harness/analysis/sequential.py)
until it decides or its budget (``--budget-s``, two hold periods of canary.yaml) runs out:

- ``aa``: A/A, both cohorts the same (inference p50 100 ms), canary.yaml's judge, the 10 % step
  of ~20 concurrent sessions (2 on TorchServe) and the 50 % step (10): every abort is a false
  abort; judged for ``--aa-s`` (60 s) so the many looks are part of the test;
- ``slow``: TorchServe's inference p50 2x the old one's (200 ms vs 100 ms; frames queued behind
  an inference wait too), with canary.yaml's judge at a purely relative 25 % allowance
  (``latency_allowance_ms: 0``: canary.yaml's 50 ms floor is there for ~10 ms local
  inferences; a 2x slowdown of a 100 ms p50 is beyond either). Power: aborted within the budget;
- ``thin``: the same 2x from a cohort of one session a minute (each streaming 10 s): the judge
  must say inconclusive, never abort.
Cohorts come from tests/harness/traffic/cohorts.py (lognormal frame and inference latencies).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "harness" / "traffic"))

from cohorts import simulate

from harness.analysis.rollout import CohortFrames, judge_step
from harness.scenario import load_scenario
from harness.scenario.models import RolloutJudge

REPO = Path(__file__).resolve().parents[1]
CONCURRENT = 20  # canary.yaml: 2 new sessions a second, 10 s each


def decide(
    canary: CohortFrames, control: CohortFrames, judge: RolloutJudge, end_s: int
) -> tuple[str, int]:
    """Look every second from 2 s to ``end_s``: (decision, second it was made)."""
    for t in range(2, end_s + 1):
        d = judge_step(canary, control, judge, (0.0, float(t)), final=t == end_s).decision
        if d != "continue":
            return d, t
    return "continue", end_s


def thin_cohort(rng: np.random.Generator, t1: float, inference_ms: float) -> CohortFrames:
    """One session a minute, each streaming 10 s: over ``t1`` s, the sessions that started."""
    parts = []
    t = rng.exponential(60.0)
    while t < t1:
        parts.append(simulate(rng, 1, t0=t, t1=min(t + 10.0, t1), inference_ms=inference_ms,
                              queue_frames=6))  # fmt: skip
        t += rng.exponential(60.0)
    return CohortFrames.join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=200, help="A/A rollouts per step share")
    ap.add_argument("--power-rollouts", type=int, default=200, help="slow/thin rollouts per share")
    ap.add_argument("--aa-s", type=int, default=60, help="how long A/A steps are judged (s)")
    ap.add_argument("--budget-s", type=int, default=30, help="a step's budget (2 x hold_s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=None, help="override canary.yaml's alpha")
    ap.add_argument("--kinds", default="aa,slow,thin")
    args = ap.parse_args()
    judge = load_scenario(REPO / "scenarios" / "canary.yaml").rollout.judge  # type: ignore[union-attr]
    if args.alpha is not None:
        judge = judge.model_copy(update={"alpha": args.alpha})
    relative = judge.model_copy(update={"latency_allowance_ms": 0.0})
    started = time.perf_counter()
    looks = 0
    out: dict[str, Counter[str]] = {}
    when: dict[str, list[int]] = {}
    for kind in args.kinds.split(","):
        for share in (0.1, 0.5) if kind != "thin" else (0.1,):
            key = f"{kind} {share:.0%}"
            out[key], when[key] = Counter(), []
            for r in range(args.rollouts if kind == "aa" else args.power_rollouts):
                rng = np.random.default_rng([args.seed, r, int(share * 100), len(kind)])
                ts = max(2, round(CONCURRENT * share))
                end = args.aa_s if kind == "aa" else args.budget_s
                control = simulate(rng, CONCURRENT - ts, t1=end, inference_ms=100.0,
                                   queue_frames=6)  # fmt: skip
                if kind == "aa":
                    canary = simulate(rng, ts, t1=end, inference_ms=100.0, queue_frames=6)
                    d, t = decide(canary, control, judge, end)
                elif kind == "slow":
                    canary = simulate(rng, ts, t1=end, inference_ms=200.0, queue_frames=6)
                    d, t = decide(canary, control, relative, end)
                else:
                    canary = thin_cohort(rng, end, 200.0)
                    d, t = decide(canary, control, relative, end)
                looks += t - 1
                out[key][d] += 1
                if d in ("abort", "advance"):
                    when[key].append(t)
    took = time.perf_counter() - started
    for key, c in out.items():
        n = sum(c.values())
        times = when[key]
        at = (
            f", decided at median {np.median(times):.0f} s (p95 {np.percentile(times, 95):.0f} s)"
            if times
            else ""
        )
        print(f"{key:9} {n} rollouts: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
              + at)  # fmt: skip
    if "aa 10%" in out:
        aa = out["aa 10%"] + out["aa 50%"]
        n_aa = sum(aa.values())
        print(f"false-abort rate (A/A, judged every second for {args.aa_s} s): "
              f"{aa['abort'] / n_aa:.4f} ({aa['abort']} of {n_aa}; "
              f"alpha {judge.alpha})")  # fmt: skip
    for key in ("slow 10%", "slow 50%"):
        if key in out:
            n = sum(out[key].values())
            print(f"power ({key}, 2x inference p50, within {args.budget_s} s): "
                  f"{out[key]['abort'] / n:.3f}")  # fmt: skip
    if "thin 10%" in out:
        thin = out["thin 10%"]
        print(f"thin cohort (1 session/min, 2x): aborted {thin['abort']} of "
              f"{sum(thin.values())}, inconclusive {thin['inconclusive']}")  # fmt: skip
    print(f"{took:.0f} s, {took / max(looks, 1) * 1000:.1f} ms per look ({looks} looks)")


if __name__ == "__main__":
    main()
