"""Error rates of the sequential rollout judge on simulated cohorts, judged every second.

    PYTHONPATH=. .venv/bin/python benchmarks/rollout_judge.py --rollouts 1000 --power-rollouts 200

Each simulated rollout step is judged every second (anytime-valid: harness/analysis/sequential.py)
until it decides or its budget (``--budget-s``, two hold periods of canary.yaml) runs out:

- ``aa``: A/A, both cohorts the same (inference p50 100 ms), canary.yaml's judge, the 10 % step
  of ~20 concurrent sessions (2 on TorchServe) and the 50 % step (10): every abort is a false
  abort; looked at every second for ``--aa-s`` (60 s), on after an advance too, so an abort at
  any of the ~60 looks counts;
- ``slow``: TorchServe's inference p50 2x the old one's (200 ms vs 100 ms; frames queued behind
  an inference wait too), with canary.yaml's judge at a purely relative 25 % allowance
  (``latency_allowance_ms: 0``, ``latency_allowance_ratio: 0.25``: canary.yaml's 100 ms / 50 %
  is sized for a busy 2-core machine, under which a 2x of a 100 ms p50 is within policy).
  Power: aborted within the budget (two hold periods);
- ``thin``: the same 2x from a cohort of one session a minute (each streaming 10 s): the judge
  must say inconclusive, never abort.
Cohorts come from tests/harness/traffic/cohorts.py (lognormal frame and inference latencies).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
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


def watch(
    canary: CohortFrames, control: CohortFrames, judge: RolloutJudge, end_s: int
) -> tuple[str, int]:
    """Look every second from 2 s to ``end_s`` and keep looking after an advance (the
    stricter A/A test: any abort at any of the ~60 looks counts): ("abort", first abort s),
    else the first decision and when."""
    first: tuple[str, int] | None = None
    for t in range(2, end_s + 1):
        d = judge_step(canary, control, judge, (0.0, float(t)), final=t == end_s).decision
        if d == "abort":
            return d, t
        if first is None and d != "continue":
            first = (d, t)
    return first or ("continue", end_s)


def thin_cohort(rng: np.random.Generator, t1: float, inference_ms: float) -> CohortFrames:
    """One session a minute, each streaming 10 s: over ``t1`` s, the sessions that started."""
    parts = []
    t = rng.exponential(60.0)
    while t < t1:
        parts.append(simulate(rng, 1, t0=t, t1=min(t + 10.0, t1), inference_ms=inference_ms,
                              queue_frames=6))  # fmt: skip
        t += rng.exponential(60.0)
    return CohortFrames.join(parts)


def one_rollout(
    task: tuple[str, float, int, int, int, RolloutJudge, RolloutJudge],
) -> tuple[str, str, int, int]:
    """One simulated rollout step: (kind and share, decision, second, looks made)."""
    kind, share, r, seed, end, judge, relative = task
    rng = np.random.default_rng([seed, r, int(share * 100), len(kind)])
    ts = max(2, round(CONCURRENT * share))
    control = simulate(rng, CONCURRENT - ts, t1=end, inference_ms=100.0, queue_frames=6)
    if kind == "aa":
        canary = simulate(rng, ts, t1=end, inference_ms=100.0, queue_frames=6)
        d, t = watch(canary, control, judge, end)
        looks = end - 1 if d != "abort" else t - 1
    elif kind == "slow":
        canary = simulate(rng, ts, t1=end, inference_ms=200.0, queue_frames=6)
        d, t = decide(canary, control, relative, end)
        looks = t - 1
    else:
        canary = thin_cohort(rng, end, 200.0)
        d, t = decide(canary, control, relative, end)
        looks = t - 1
    return f"{kind} {share:.0%}", d, t, looks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=200, help="A/A rollouts per step share")
    ap.add_argument("--power-rollouts", type=int, default=200, help="slow/thin rollouts per share")
    ap.add_argument("--aa-s", type=int, default=60, help="how long A/A steps are judged (s)")
    ap.add_argument("--budget-s", type=int, default=30, help="a step's budget (2 x hold_s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=None, help="override canary.yaml's alpha")
    ap.add_argument("--kinds", default="aa,slow,thin")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    judge = load_scenario(REPO / "scenarios" / "canary.yaml").rollout.judge  # type: ignore[union-attr]
    if args.alpha is not None:
        judge = judge.model_copy(update={"alpha": args.alpha})
    relative = judge.model_copy(
        update={"latency_allowance_ms": 0.0, "latency_allowance_ratio": 0.25}
    )
    started = time.perf_counter()
    looks = 0
    out: dict[str, Counter[str]] = {}
    when: dict[str, list[int]] = {}
    tasks = [
        (kind, share, r, args.seed, args.aa_s if kind == "aa" else args.budget_s, judge, relative)
        for kind in args.kinds.split(",")
        for share in ((0.1, 0.5) if kind != "thin" else (0.1,))
        for r in range(args.rollouts if kind == "aa" else args.power_rollouts)
    ]
    # Rollouts are independent: spread them over the CPUs (spawned: no state shared).
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for key, d, t, n in pool.imap_unordered(one_rollout, tasks, chunksize=8):
            out.setdefault(key, Counter())[d] += 1
            when.setdefault(key, [])
            looks += n
            if d in ("abort", "advance"):
                when[key].append(t)
    out = dict(sorted(out.items()))
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
    print(f"{took:.0f} s wall, {looks} looks over {args.jobs} processes")


if __name__ == "__main__":
    main()
