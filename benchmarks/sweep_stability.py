"""Is a sweep's recommendation stable? The same sweep on the known-capacity server, N times.

    PYTHONPATH=. .venv/bin/python benchmarks/sweep_stability.py --repeats 2

The sweep is tests/harness/sweep/test_sweep_known.py's (known_sweeps.py): two single-queue
configurations whose capacities are 4 and 6 sessions at 5 fps (closed form), p95 < 300 ms, 5 s
runs. Prints, per
repeat, the recommendation, each configuration's capacity and runs, and the sweep's wall time;
writes benchmarks/results/sweep_stability.json. Stable: every repeat recommends the same
configuration (or one the sweep calls equivalent).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "harness" / "sweep"))

from known_sweeps import FAST_MS, FPS, KNEES, SLOW_MS, known_sweep_text  # noqa: E402

from harness.sweep import load_sweep, run_sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "harness" / "sweep" / "known_server.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    repeats = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "known.yaml"
            path.write_text(known_sweep_text(port, [SLOW_MS, FAST_MS]), encoding="utf-8")
            for i in range(args.repeats):
                t0 = time.monotonic()
                doc, code = run_sweep(load_sweep(path), Path(tmp) / f"out{i}")
                rec = doc["recommendation"] or {}
                row = {
                    "exit": code,
                    "recommended": rec.get("config"),
                    "equivalent": rec.get("equivalent", []),
                    "capacity": {c["id"]: c["capacity"] for c in doc["configurations"]},
                    "runs": {c["id"]: len(c["points"]) for c in doc["configurations"]},
                    "wall_s": round(time.monotonic() - t0, 1),
                }
                repeats.append(row)
                print(json.dumps(row))
    finally:
        server.terminate()
        server.wait(timeout=10)
    picks = {r["recommended"] for r in repeats}
    # Every repeat's pick is the one recommended, or one called equivalent to it, in every repeat.
    stable = all(picks <= {r["recommended"], *r["equivalent"]} for r in repeats)
    result = {"fps": FPS, "true_capacity": dict(zip(("c01", "c02"), KNEES, strict=True))}
    result |= {"repeats": repeats, "stable": stable}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep_stability.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"stable: {stable} ({sorted(map(str, picks))})")


if __name__ == "__main__":
    main()
