"""The data plane of one Locust worker: the harness's own LoadGenerator in a plain process.

``python -m harness.load.distributed.engine --out DIR`` is started by the worker
(locustfile.py) when the master's plan arrives. It runs outside the Locust process on purpose:
Locust monkeypatches every module of its process with gevent, and the generator (aiohttp on
uvloop) must keep its measured per-frame cost and timer precision. Protocol, JSON lines:

- stdin: ``{"plan": WorkerPlan}`` -> the engine builds its traces and answers ``prepared``;
  ``{"start": t0_epoch}`` -> it converts the master's t0 (wall clock) ONCE to its own
  perf_counter and runs the plan on that clock; ``{"stop": true}`` or end of input (the worker
  died) -> the run is cancelled and what was measured is kept (as after Ctrl-C).
- stdout: ``{"ev": "prepared"}``, one ``{"ev": "tick", ...WorkerTick}`` per second, and at the
  end ``{"ev": "done", "dir": DIR, "interrupted": bool}`` with ``DIR/frames.bin`` (FRAME_DTYPE
  rows) and ``DIR/result.json`` (scalars, labels, CPU) written first. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness.hdr as hdr
from harness.clock import RunClock
from harness.load.distributed.messages import WorkerPlan, WorkerTick, result_to_wire
from harness.load.generator import LoadConfig, LoadGenerator, run_with_best_loop
from harness.load.recording import LoadResult
from harness.load.trace import trace_provider
from harness.scenario.models import TraceSpec

TICK_S = 1.0


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _traces(plan: WorkerPlan) -> Callable[[int], list[dict[str, Any]]]:
    """Local session i -> its trace: global session ``session_offset + i``'s, exactly as a
    one-process run picks it (harness.load.trace.trace_provider). A file's frames travel in the
    plan (a remote worker need not have the file)."""
    if "frames" in plan.trace:
        frames: list[dict[str, Any]] = plan.trace["frames"]
        return lambda _i: frames
    spec = TraceSpec.model_validate({"synthetic": plan.trace["synthetic"]})
    provider = trace_provider(spec)
    return lambda i: provider(plan.session_offset + i)


def _config(plan: WorkerPlan) -> LoadConfig:
    return LoadConfig(
        ws_url=plan.ws_url,
        sessions=plan.sessions,
        fps=plan.fps,
        duration_s=plan.duration_s,
        warmup_s=plan.warmup_s,
        ramp_up_s=plan.ramp_up_s,
        traces=_traces(plan),
        late_threshold_ms=plan.late_threshold_ms,
        reply_timeout_s=plan.reply_timeout_s,
        session_offset=plan.session_offset,
        total_sessions=plan.total_sessions,
        start_s=plan.start_s,
    )


async def _ticks(plan: WorkerPlan, gen: LoadGenerator, clock: RunClock) -> None:
    """One WorkerTick per second of run clock, until cancelled."""
    k = 1
    while True:
        await clock.sleep_until(k * TICK_S)
        now = clock.now()
        k = math.floor(now / TICK_S) + 1
        live = gen.live()
        hist = hdr.new_histogram(plan.reply_timeout_s)
        hdr.record_seconds(hist, gen.latencies_between(now - 1.5, now - 0.5))
        tick = WorkerTick(
            index=plan.index,
            t=now,
            answered=int(hist.get_total_count()),
            frames_per_s=live.frames_per_s,
            errors=live.errors,
            sessions_connected=live.sessions_connected,
            cpu_percent=live.generator_cpu_percent,
            hist=hist.encode().decode("ascii"),
        )
        _emit({"ev": "tick", **tick.to_dict()})


def _write(out: Path, result: LoadResult | None, interrupted: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"interrupted": interrupted, "result": None, "labels": []}
    if result is not None:
        scalars, labels, rows = result_to_wire(result)
        (out / "frames.bin").write_bytes(rows)
        doc.update(result=scalars, labels=labels)
    (out / "result.json").write_text(json.dumps(doc))


async def _main(out: Path) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    line = await reader.readline()
    if not line:
        return 1
    plan = WorkerPlan.from_dict(json.loads(line)["plan"])
    config = _config(plan)
    clock = RunClock()
    gen = LoadGenerator(config, clock)
    await gen.prepare()  # the traces built and serialised before t0, as in a native run
    _emit({"ev": "prepared"})
    line = await reader.readline()
    msg = json.loads(line) if line else {}
    if "start" not in msg:
        _write(out, None, True)
        _emit({"ev": "done", "dir": str(out), "interrupted": True})
        return 0
    # The one conversion of the master's t0: wall clock now vs perf_counter now.
    clock.start_at(time.perf_counter() - (time.time() - float(msg["start"])))
    run = asyncio.create_task(gen.run())
    ticker = asyncio.create_task(_ticks(plan, gen, clock))

    async def watch_input() -> None:
        # "stop", or end of input (the Locust worker is gone): cancel, keep what was measured.
        while True:
            got = await reader.readline()
            if not got or json.loads(got).get("stop"):
                run.cancel()
                return

    watcher = asyncio.create_task(watch_input())
    result: LoadResult | None
    interrupted = False
    try:
        result = await run
    except asyncio.CancelledError:
        interrupted = True
        result = gen.partial
    finally:
        ticker.cancel()
        watcher.cancel()
        await asyncio.gather(ticker, watcher, return_exceptions=True)
    _write(out, result, interrupted)
    _emit({"ev": "done", "dir": str(out), "interrupted": interrupted})
    return 0


def main() -> int:
    """Entry point (see module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m harness.load.distributed.engine")
    ap.add_argument("--out", type=Path, required=True, help="folder for frames.bin/result.json")
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return run_with_best_loop(_main(args.out))
    return 130


if __name__ == "__main__":
    sys.exit(main())
