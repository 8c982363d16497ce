"""The load generator's ceiling: frames/s one generator process sustains on one core.

The generator (this process, pinned to the first allowed core) drives a trivial echo server
(another process, pinned to the last core) at increasing session counts x 30 fps, about 10 s
each, with realistic synthetic frames. Per level it prints frames/s achieved, the late share
(sent > 5 ms after schedule), p99 latency, the generator's CPU and the self-check verdict;
then the ceiling: the highest offered rate with under 1 % late frames.

Run: ``.venv/bin/python -m benchmarks.generator_ceiling [--sessions 100,170,250,340]
[--seconds 10] [--out FILE.json]``. Target (issue 4): >= 5,000 frames/s with < 1 % late.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
from typing import Any

import numpy as np
import psutil

from benchmarks.echo_server import serve_echo_forever, wait_port
from harness import hdr
from harness.analysis import frames as fr
from harness.clock import RunClock
from harness.load import LoadConfig, LoadGenerator, run_with_best_loop


def _trace() -> list[dict]:
    try:
        from harness.load import synthetic_trace

        return synthetic_trace(seed=7, signs=6, sign_mix=None, rest_frames=(15, 30))
    except ImportError:  # the ML core is not there: a frame of the same shape and size
        hand = [[0.41234, 0.52345, -0.01234]] * 21
        return [{"hands": {"left": hand, "right": hand}, "pose": [[0.5, 0.5, 0.0]] * 33}]


def run_level(
    url: str, sessions: int, fps: float, seconds: float, trace: list[dict], server_pid: int
) -> dict[str, Any]:
    """One level: ``sessions`` x ``fps`` for ``seconds`` (+2 s warm-up); its figures."""
    warmup = 2.0
    cfg = LoadConfig(
        ws_url=url,
        sessions=sessions,
        fps=fps,
        duration_s=seconds + warmup,
        warmup_s=warmup,
        ramp_up_s=1.0,
        traces=lambda i: trace,
    )
    server = psutil.Process(server_pid)
    server_cpu0 = sum(server.cpu_times()[:2])
    res = run_with_best_loop(LoadGenerator(cfg, RunClock()).run())
    server_cpu = sum(server.cpu_times()[:2]) - server_cpu0
    counts = fr.counts(res)
    f = res.frames[res.measured_mask()]
    lag_ms = (f["t_sent"] - f["t_scheduled"]) * 1000
    p = hdr.latency_summary(fr.histograms(res)["frame_latency"])
    span = seconds  # measured window
    return {
        "sessions": sessions,
        "offered_fps": sessions * fps,
        "achieved_frames_per_s": round(counts["answered"] / span, 1),
        "sent_per_s": round(counts["sent"] / span, 1),
        "late_share": round(res.generator_late_share, 5),
        "send_lag_p99_ms": round(float(np.nanpercentile(lag_ms, 99)), 3),
        "p50_ms": p["p50"],
        "p99_ms": p["p99"],
        "lost": counts["lost"],
        "generator_cpu_percent": round(res.generator_cpu_percent, 1),
        "generator_cpu_us_per_frame": round(
            res.generator_cpu_percent * 1e4 / max(sessions * fps, 1), 1
        ),
        "server_cpu_percent_approx": round(100 * server_cpu / (seconds + warmup + 1.5), 1),
        "valid": res.valid,
        # InvalidReason models: their text (json.dumps cannot encode the models themselves).
        "invalid_reasons": [getattr(r, "message", str(r)) for r in res.invalid_reasons],
    }


def main() -> int:
    """Run every level, print one JSON line each and the ceiling."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="100,170,250,340")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    server = ctx.Process(
        target=serve_echo_forever, args=(port_q, cores[-1] if len(cores) > 1 else None)
    )
    server.start()
    levels: list[dict[str, Any]] = []
    try:
        port = port_q.get(timeout=30)
        wait_port(port)
        os.sched_setaffinity(0, {cores[0]})
        url = f"ws://127.0.0.1:{port}/"
        trace = _trace()
        for sessions in (int(s) for s in args.sessions.split(",")):
            level = run_level(url, sessions, args.fps, args.seconds, trace, server.pid or 0)
            levels.append(level)
            print(json.dumps(level), flush=True)
    finally:
        server.terminate()
        server.join(5)
        if server.is_alive():
            server.kill()
    ok = [lv for lv in levels if lv["late_share"] < 0.01]
    summary = {
        "ceiling_offered_fps": max((lv["offered_fps"] for lv in ok), default=None),
        "cores": len(cores),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"levels": levels, **summary}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
