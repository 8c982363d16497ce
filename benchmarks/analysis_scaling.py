"""End-of-run analysis time against the run's length (issue 23: it must be linear).

    .venv/bin/python benchmarks/analysis_scaling.py [--sessions 32] [--fps 30]
        [--durations 600 1200] [--json out.json]

Builds synthetic recordings (FRAME_DTYPE rows, as the generator records them: every frame
answered in 1-20 ms, one in 30 an inference, 1 % lost) of each duration and times
``harness.analysis.summary.summarize`` on them (the whole per-frame analysis: histograms,
1-s windows, counts, faults). Linear analysis: the time ratio follows the duration ratio (2x
the duration, ~2x the time); the old per-window masks gave ~4x. To time another revision, run
the script from an exported tree of it (``git archive REV | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.analysis.summary import summarize  # noqa: E402
from harness.load.recording import FRAME_DTYPE, LoadResult  # noqa: E402
from harness.scenario import load_scenario  # noqa: E402


def recording(sessions: int, fps: float, duration_s: float, seed: int = 0) -> LoadResult:
    """A synthetic recording of ``sessions`` x ``fps`` x ``duration_s`` frames."""
    rng = np.random.default_rng(seed)
    per = int(duration_s * fps)
    n = sessions * per
    f = np.empty(n, dtype=FRAME_DTYPE)
    f["session"] = np.repeat(np.arange(sessions), per)
    f["frame_idx"] = np.tile(np.arange(per), sessions)
    t = np.tile(np.arange(per) / fps, sessions) + f["session"] * 1e-3
    f["t_scheduled"] = t
    f["t_sent"] = t + 1e-4
    reply = t + rng.uniform(0.001, 0.02, n)
    reply[rng.random(n) < 0.01] = np.nan
    f["t_reply"] = reply
    inference = (f["frame_idx"] % 30 == 29) & ~np.isnan(reply)
    f["served_by"] = np.where(inference, 0, -1)
    f["model_version"] = np.where(inference, 1, -1)
    f["prediction"] = np.where(inference, 2, -1)
    f["truth"] = np.where(inference, 2, -1)
    f["error_code"] = -1
    return LoadResult(
        frames=f, labels=["local", "1.0", "hello"], fps=fps, duration_s=duration_s,
        warmup_s=2.0, late_threshold_ms=5.0, disconnects=0, send_failures=0,
        generator_late_share=0.0, generator_cpu_percent=10.0, generator_cpu_saturated=False,
    )  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--durations", type=float, nargs="+", default=[600.0, 1200.0])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    scenario = load_scenario(REPO / "scenarios" / "baseline.yaml")
    rows = []
    for duration in args.durations:
        load = recording(args.sessions, args.fps, duration)
        started = time.perf_counter()
        summarize(load, {}, [], scenario)
        elapsed = time.perf_counter() - started
        rows.append({"duration_s": duration, "frames": int(load.frames.size),
                     "summarize_s": round(elapsed, 3)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) > 1:
        ratio = rows[-1]["summarize_s"] / rows[0]["summarize_s"]
        print(json.dumps({"duration_ratio": args.durations[-1] / args.durations[0],
                          "time_ratio": round(ratio, 2)}))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
