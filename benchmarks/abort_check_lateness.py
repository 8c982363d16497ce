"""Does the abort-on-fail check make the load generator late? (issue 20 item 5)

The generator (this process) drives the trivial echo server (another process) at ``--sessions``
x ``--fps`` for ``--seconds`` (+2 s warm-up) while the abort-on-fail check summarises the whole
load so far every ``--check-every`` seconds, one run per mode, interleaved ``--repeats`` times:

- ``none``: no check (the reference);
- ``thread``: the summary in a thread of the generator's process (the check before issue 20);
- ``process``: the summary in a process of its own (``AbortWatcher.prepare``, the check now).

Per run it prints the late share (frames sent > ``late_threshold_ms`` after schedule, the
self-check's figure; a share over 1 % makes a run INVALID), the p99 send lag and the checks made.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/abort_check_lateness.py [--sessions 40]
[--fps 30] [--seconds 20] [--check-every 1] [--repeats 2] [--out FILE.json]``.

``--loop-only``: the same three modes without the generator and the echo server, to see the
check's effect apart from a busy machine's noise: an event loop wakes every 1/300 s for
``--seconds`` and records how late each wake-up is, while the check summarises a recorded load
of ``--sessions`` x ``--fps`` x ``--frames-s`` seconds every ``--check-every`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.echo_server import serve_echo_forever, wait_port
from harness.clock import RunClock
from harness.load import LoadConfig, LoadGenerator
from harness.runner.watch import AbortWatcher
from harness.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
MODES = ("none", "thread", "process")


def _trace() -> list[dict[str, Any]]:
    from harness.load import synthetic_trace

    return synthetic_trace(seed=7, signs=6, sign_mix=None, rest_frames=(15, 30))


async def _run(cfg: LoadConfig, mode: str, check_every_s: float) -> dict[str, Any]:
    scenario = load_scenario(
        REPO / "scenarios" / "baseline-quick.yaml",
        [
            f"workload.sessions={cfg.sessions}",
            f"workload.fps={cfg.fps}",
            f"workload.duration_s={cfg.duration_s}",
            f"workload.warmup_s={cfg.warmup_s}",
            "abort_on_fail={gates: ['errors.total < 100000000'], min_measured_s: 1, "
            f"check_every_s: {check_every_s}}}",
        ],
    )
    clock = RunClock()
    gen = LoadGenerator(cfg, clock)
    assert scenario.abort_on_fail is not None
    watcher = AbortWatcher(scenario.abort_on_fail, scenario, gen, clock)
    if mode == "process":
        watcher.prepare()
    stop = asyncio.Event()
    try:
        await gen.prepare()
        clock.start()
        load = asyncio.create_task(gen.run())
        check = asyncio.create_task(watcher.run(load, stop)) if mode != "none" else None
        res = await load
        stop.set()
        if check is not None:
            await check
    finally:
        watcher.close()
    f = res.frames[res.measured_mask()]
    lag_ms = (f["t_sent"] - f["t_scheduled"]) * 1000
    return {
        "mode": mode,
        "late_share": round(res.generator_late_share, 5),
        "send_lag_p99_ms": round(float(np.nanpercentile(lag_ms, 99)), 3),
        "send_lag_max_ms": round(float(np.nanmax(lag_ms)), 3),
        "checks": watcher.checks,
        "valid": res.valid,
    }


async def _loop_lag(mode: str, load: Any, scenario: Any, seconds: float, every: float) -> Any:
    """Wake-up lateness (ms) of a loop ticking at 300 Hz while ``mode`` checks ``load``."""

    class _Gen:
        def partial_now(self) -> Any:
            return load

    class _Clock:
        def now(self) -> float:
            return 0.0

    assert scenario.abort_on_fail is not None
    spec = scenario.abort_on_fail.model_copy(update={"check_every_s": every})
    watcher = AbortWatcher(spec, scenario, _Gen(), _Clock())
    if mode == "process":
        watcher.prepare()
    stop = asyncio.Event()
    target = asyncio.create_task(stop.wait())
    checker = asyncio.create_task(watcher.run(target, stop)) if mode != "none" else None
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    period = 1 / 300
    start = loop.time()
    due = start + period
    try:
        while due - start < seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            lags.append((loop.time() - due) * 1000)
            due += period
    finally:
        stop.set()
        if checker is not None:
            await checker
        target.cancel()
        watcher.close()
    arr = np.array(lags)
    return {
        "mode": mode,
        "checks": watcher.checks,
        "wake_late_share_over_5ms": round(float(np.mean(arr > 5.0)), 5),
        "wake_lag_p99_ms": round(float(np.percentile(arr, 99)), 3),
        "wake_lag_max_ms": round(float(arr.max()), 3),
    }


def loop_only(args: argparse.Namespace) -> int:
    """The ``--loop-only`` measurement (module doc)."""
    sys.path.insert(0, str(REPO / "tests" / "harness"))
    from core_builders import build_load

    load = build_load(
        sessions=args.sessions, fps=args.fps, duration_s=args.frames_s,
        reply=lambda s, t: (0.004, "local", None, None),
    )  # fmt: skip
    scenario = load_scenario(
        REPO / "scenarios" / "baseline-quick.yaml",
        ["abort_on_fail={gates: ['errors.total < 100000000'], min_measured_s: 0}",
         f"workload.duration_s={args.frames_s}", "workload.warmup_s=0"],
    )  # fmt: skip
    runs = []
    for _ in range(args.repeats):
        for mode in MODES:
            run = asyncio.run(_loop_lag(mode, load, scenario, args.seconds, args.check_every))
            run["frames"] = len(load.frames)
            runs.append(run)
            print(json.dumps(run), flush=True)
    means = {
        mode: {
            key: round(float(np.mean([r[key] for r in runs if r["mode"] == mode])), 4)
            for key in ("wake_late_share_over_5ms", "wake_lag_p99_ms")
        }
        for mode in MODES
    }
    summary = {"loop_only": True, "frames": len(load.frames), "means": means,
               "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}  # fmt: skip
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"runs": runs, **summary}, fh, indent=2)
    return 0


def main() -> int:
    """Every mode, interleaved; one JSON line per run, then the means per mode."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--check-every", type=float, default=1.0)
    ap.add_argument("--late-ms", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument("--loop-only", action="store_true", help="see the module doc")
    ap.add_argument("--frames-s", type=float, default=60.0, help="--loop-only: load recorded")
    args = ap.parse_args()
    if args.loop_only:
        return loop_only(args)
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    server = ctx.Process(target=serve_echo_forever, args=(port_q, None))
    server.start()
    runs: list[dict[str, Any]] = []
    try:
        port = port_q.get(timeout=30)
        wait_port(port)
        trace = _trace()
        for _ in range(args.repeats):
            for mode in MODES:
                cfg = LoadConfig(
                    ws_url=f"ws://127.0.0.1:{port}/",
                    sessions=args.sessions,
                    fps=args.fps,
                    duration_s=args.seconds + 2.0,
                    warmup_s=2.0,
                    ramp_up_s=1.0,
                    late_threshold_ms=args.late_ms,
                    traces=lambda i: trace,
                )
                run = asyncio.run(_run(cfg, mode, args.check_every))
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        server.terminate()
        server.join(5)
        if server.is_alive():
            server.kill()
    means = {
        mode: {
            "late_share_mean": round(float(np.mean([r["late_share"] for r in rs])), 5),
            "send_lag_p99_ms_mean": round(float(np.mean([r["send_lag_p99_ms"] for r in rs])), 3),
        }
        for mode in MODES
        if (rs := [r for r in runs if r["mode"] == mode])
    }
    summary = {
        "offered_fps": args.sessions * args.fps,
        "check_every_s": args.check_every,
        "means": means,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"runs": runs, **summary}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
