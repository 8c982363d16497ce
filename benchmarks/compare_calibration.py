"""False-alarm rate and power of the baseline comparison on simulated runs.

Each simulated run is a series of 1-s windows of lognormal frame latencies (median 40 ms,
log-sd 0.35, 120 replies a window) whose level drifts as AR(1) (lag-1 autocorrelation 0.6,
10 % log-sd from window to window), the simulator of tests/harness/test_compare.py. A vs A:
the share of comparisons of one configuration with itself that call ANY metric worse or better
(the false-alarm rate, target <= 5 %), and the share whose headline is "no significant change"
(the rest say "too little data"). Power: the share of comparisons against a candidate
whose every latency is 1.2x that find frame p95 worse.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_calibration.py --trials 200 --windows 60

``--repeat N``: N runs a side (``--repeat``'s pooled comparison) of 28 windows each (30-s runs,
2-s warm-up) with a frame and an inference family (tests/harness/test_compare.py
``repeated_side``), optionally a per-run level shift of ``--run-sd`` (log-sd; a stack started
afresh each run): the share of testable rows (enough replies) that say "no significant change"
A vs A, and the pairs whose every inference latency row is worse at 2x inference latency.
``--intervals``: 1,000 side intervals of short drifting runs (6 windows, 200 replies): how many
reach outside [0, 2 x the side's largest reply].

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_calibration.py --repeat 2 --trials 20
    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_calibration.py --intervals
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "harness"))

from test_compare import metric, repeated_side, simulated_side

from harness import hdr
from harness.analysis.compare import Verdict, compare_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--shift", type=float, default=1.2)
    ap.add_argument("--repeat", type=int, default=0, help="N runs a side (0: one run)")
    ap.add_argument("--run-sd", type=float, default=0.0, help="per-run level shift, log-sd")
    ap.add_argument("--intervals", action="store_true", help="the interval bounds check")
    args = ap.parse_args()
    if args.intervals:
        return intervals()
    if args.repeat:
        return repeated(args.repeat, args.trials, args.run_sd)
    for label, scale in (("A vs A", 1.0), (f"x{args.shift} candidate", args.shift)):
        t0, alarms, found, same = time.monotonic(), 0, 0, 0
        for seed in range(args.trials):
            rng = np.random.default_rng(90_000 + seed)
            c = compare_windows(
                simulated_side(rng, n=args.windows),
                simulated_side(rng, scale=scale, n=args.windows),
            )
            alarms += any(m.verdict in (Verdict.WORSE, Verdict.BETTER) for m in c.metrics)
            found += metric(c, "frame.latency_ms.p95").verdict == Verdict.WORSE
            same += c.headline.startswith("no significant change")
        print(
            f"{label}: {args.trials} comparisons of {args.windows} windows a side: any metric "
            f"changed {alarms / args.trials:.1%}, frame p95 worse {found / args.trials:.1%}, "
            f"headline 'no significant change' {same / args.trials:.1%} "
            f"({(time.monotonic() - t0) / args.trials:.2f} s each)"
        )


def repeated(runs: int, trials: int, run_sd: float) -> None:
    """A vs A and a 2x inference shift with ``runs`` runs a side."""
    t0, tested, same, alarms, found = time.monotonic(), 0, 0, 0, 0
    for seed in range(trials):
        rng = np.random.default_rng(70_000 + seed)
        sides = [repeated_side(rng, runs, run_sd=run_sd) for _ in range(2)]
        c = compare_windows(sides[0], sides[1])
        rows = [m for m in c.metrics if "replies" not in (m.note or "")]
        tested += len(rows)
        same += sum(m.verdict == Verdict.SAME for m in rows)
        alarms += sum(m.verdict in (Verdict.WORSE, Verdict.BETTER) for m in rows)
        w = compare_windows(
            repeated_side(rng, runs, run_sd=run_sd),
            repeated_side(rng, runs, inference_scale=2.0, run_sd=run_sd),
        )
        inference = [m for m in w.metrics if m.metric.startswith("inference.") and m.p_value]
        found += bool(inference) and all(m.verdict == Verdict.WORSE for m in inference)
    print(
        f"--repeat {runs}, run-to-run log-sd {run_sd:g}: A vs A {same}/{tested} testable rows "
        f"'no significant change' ({same / tested:.1%}), {alarms} worse/better; 2x inference: "
        f"every inference row worse in {found}/{trials} pairs "
        f"({(time.monotonic() - t0) / trials:.1f} s a pair)"
    )


def intervals() -> None:
    """1,000 side intervals of short runs against [0, 2 x observed max]."""
    outside = checked = 0
    widest = 0.0
    for seed in range(100):
        rng = np.random.default_rng(50_000 + seed)
        sides = [simulated_side(rng, n=6, per_window=200) for _ in range(2)]
        top = [max(h.get_max_value() for h in s.latency["frame"]) / hdr.US_PER_MS for s in sides]
        c = compare_windows(sides[0], sides[1])
        for stat in ("p50", "p90", "p95", "p99", "mean"):
            m = metric(c, f"frame.latency_ms.{stat}")
            for ci, hi in ((m.ci_run, top[1]), (m.ci_baseline, top[0])):
                checked += 1
                if ci is None or not 0 <= ci[0] <= ci[1] <= 2 * hi:
                    outside += 1
                elif ci[1] / hi > widest:
                    widest = ci[1] / hi
    print(
        f"{outside} of {checked} intervals outside [0, 2 x observed max]; highest upper end "
        f"{widest:.2f} x the observed max"
    )


if __name__ == "__main__":
    main()
