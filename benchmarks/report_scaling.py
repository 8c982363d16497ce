"""results.json and HTML report size and time against the run's length (issue 23 item 4).

    .venv/bin/python benchmarks/report_scaling.py [--sessions 128] [--fps 30]
        [--durations 3600 28800] [--out DIR] [--json out.json]

Builds a long synthetic run the way a real one is built: one minute of ``sessions`` x ``fps``
frames (``analysis_scaling.recording``) through ``harness.analysis.summary.summarize``, its
per-window series and per-window histograms then repeated to each duration (with one p99 spike
and one throughput dip placed late in the run, and per-second CPU/RSS of two components), on
top of a recorded run's document (tests/report/fixtures/recorded-baseline-quick). Reports, per
duration: results.json bytes (total, per window, and the per-window histograms' share), the
time to write and read it (``write_results`` / ``read_results``), and the HTML report's bytes
and render time (``build_report``). To time another revision, run the script from an exported
tree of it (``git archive REV | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from analysis_scaling import recording  # noqa: E402

from harness.analysis.summary import summarize  # noqa: E402
from harness.report.render import build_report  # noqa: E402
from harness.results.model import Results  # noqa: E402
from harness.results.writer import read_results, write_results  # noqa: E402
from harness.scenario import load_scenario  # noqa: E402

FIXTURE = REPO / "tests" / "report" / "fixtures" / "recorded-baseline-quick.results.json"
MINUTE_S = 60.0


def _tile(values: list[Any], n: int) -> list[Any]:
    # Repeat the minute's full windows: not its warm-up, nor its last window (partial).
    body = values[2:-1] or values
    return (values[:2] + body * (n // max(1, len(body)) + 1))[:n]


def long_results(sessions: int, fps: float, duration_s: float) -> Results:
    """A synthetic Results of ``duration_s`` 1-s windows at ``sessions`` x ``fps``."""
    scenario = load_scenario(REPO / "scenarios" / "baseline.yaml")
    _summary, series, hists, _faults = summarize(
        recording(sessions, fps, MINUTE_S), {}, [], scenario
    )
    n = int(duration_s)
    rng = np.random.default_rng(1)
    long_series: dict[str, Any] = {}
    for key, values in series.items():
        long_series[key] = _tile(values, n) if isinstance(values, list) else values
    long_series["t"] = [float(i) for i in range(n)]
    long_series["warmup"] = [i < 2 for i in range(n)]
    spike, dip = int(n * 0.8) + 7, int(n * 0.6) + 3
    p99 = list(long_series["frame_p99_ms"])
    p99[spike] = 950.0  # one stall: it must stay visible in a downsampled chart
    long_series["frame_p99_ms"] = p99
    fps_s = list(long_series["frames_per_s"])
    fps_s[dip] = 0.0
    long_series["frames_per_s"] = fps_s
    t = np.arange(n, dtype=float)
    long_series["cpu_percent"] = {
        "backend": list(np.round(60 + 10 * rng.standard_normal(n), 1)),
        "harness": list(np.round(30 + 5 * rng.standard_normal(n), 1)),
    }
    long_series["rss_mb"] = {
        "backend": list(np.round(400 + t * 0.001 + rng.standard_normal(n), 1)),
        "harness": list(np.round(300 + rng.standard_normal(n), 1)),
    }
    long_hists = dict(hists)
    long_hists["windows"] = {k: _tile(v, n) for k, v in hists["windows"].items()}
    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    doc["series"] = long_series
    doc["histograms"] = long_hists
    doc["summary"]["duration_s"] = duration_s
    doc["summary"]["measured_s"] = duration_s - 2.0
    return Results.model_validate(doc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=128)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--durations", type=float, nargs="+", default=[3600.0, 28800.0])
    p.add_argument("--out", type=Path, help="keep results.json and report.html here")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = []
    for duration in args.durations:
        results = long_results(args.sessions, args.fps, duration)
        out = args.out or Path(tempfile.mkdtemp(prefix="report-scaling-"))
        run_dir = out / f"{int(duration)}s"
        started = time.perf_counter()
        path = write_results(run_dir, results)
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        again = read_results(path)
        read_s = time.perf_counter() - started
        hist_bytes = len(json.dumps(again.histograms.windows, indent=1))
        started = time.perf_counter()
        report = build_report(again, None, run_dir / "report.html")
        render_s = time.perf_counter() - started
        size = path.stat().st_size
        rows.append({
            "duration_s": duration, "windows": int(duration), "results_bytes": size,
            "results_bytes_per_window": round(size / duration),
            "window_histograms_share": round(hist_bytes / size, 3),
            "write_s": round(write_s, 2), "read_s": round(read_s, 2),
            "report_bytes": report.stat().st_size, "render_s": round(render_s, 2),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
