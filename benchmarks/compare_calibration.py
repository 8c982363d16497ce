"""False-alarm rate and power of the baseline comparison on simulated runs.

Each simulated run is a series of 1-s windows of lognormal frame latencies (median 40 ms,
log-sd 0.35, 120 replies a window) whose level drifts as AR(1) (lag-1 autocorrelation 0.6,
10 % log-sd from window to window), the simulator of tests/harness/test_compare.py. A vs A:
the share of comparisons of one configuration with itself that call ANY metric worse or better
(the false-alarm rate, target <= 5 %), and the share whose headline is "no significant change"
(the rest say "too little data"). Power: the share of comparisons against a candidate
whose every latency is 1.2x that find frame p95 worse.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_calibration.py --trials 200 --windows 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "harness"))

from test_compare import metric, simulated_side

from harness.analysis.compare import Verdict, compare_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--shift", type=float, default=1.2)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
