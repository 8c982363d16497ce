"""Reply latency of a real backend under N concurrent sessions streaming at camera rate.

    .venv/bin/python benchmarks/backend_sessions.py [--sessions 32] [--fps 30] [--duration 20]
        [--env USE_TORCHSERVE=false ...] [--url ws://host:port/api/v1/translate/stream]
        [--aligned] [--compress] [--json out.json]

Starts the backend as a uvicorn subprocess (tests/backend_server.py) unless --url is given,
then opens the sessions, each sending synthetic frames open-loop at --fps (frame i is scheduled
at t0 + i/fps; a late send is counted, never skipped). Latency is measured from the SCHEDULED
send time to the reply (coordinated omission corrected) and, separately, from the actual send.
Frames whose reply carries a prediction (sign-ending frames) are reported apart from the
others. Target on a 2-core machine: p99 of the other frames < 10 ms at 32 sessions x 30 fps.

``--aligned`` is the sign-ending storm (issue 11, item 10): every session streams the SAME
trace from the SAME instant, so all sessions end their signs on the same frame. To compare the
backend of another revision, run it from an exported tree with ``--env PYTHONPATH=<tree>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from backend_server import run_backend  # noqa: E402

from backend_patch.app.ml import synthetic  # noqa: E402


def _messages(seed: int, count: int, skip: int = 0) -> list[str]:
    """``count`` frame messages from a seeded synthetic stream (its first ``skip`` frames
    left out), frame_idx = 0..count-1."""
    frames: list[dict] = []
    while len(frames) < count + skip:
        frames.extend(synthetic.generate_stream(num_signs=10, seed=seed + len(frames)))
    out = []
    for i, frame in enumerate(frames[skip : skip + count]):
        frame = dict(frame)
        frame["frame_idx"] = i
        out.append(json.dumps(frame))
    return out


async def _session(
    http: aiohttp.ClientSession,
    url: str,
    messages: list[str],
    fps: float,
    t0: float,
    rec: dict,
    compress: int = 0,
) -> None:
    n = len(messages)
    sched = t0 + np.arange(n) / fps
    sent = np.full(n, np.nan)
    reply = np.full(n, np.nan)
    server_ms = np.full(n, np.nan)
    ends = np.zeros(n, dtype=bool)
    errors = 0
    # autoping: answer the server's keep-alive pings (they never reach receive()).
    # compress=15 offers permessage-deflate, as browsers do (aiohttp offers nothing by default).
    async with http.ws_connect(url, max_msg_size=0, autoping=True, compress=compress) as ws:

        async def send() -> None:
            for i, message in enumerate(messages):
                delay = sched[i] - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[i] = time.perf_counter()
                await ws.send_str(message)

        sender = asyncio.create_task(send())
        for i in range(n):
            msg = await ws.receive(timeout=30)
            now = time.perf_counter()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"session closed early: {msg.type} {msg.data}")
            data = json.loads(msg.data)
            if "error" in data:
                errors += 1
                continue
            reply[i] = now
            server_ms[i] = data["latency_ms"]
            ends[i] = data["prediction"] is not None
        await sender
    rec.setdefault("sched", []).append(sched)
    rec.setdefault("sent", []).append(sent)
    rec.setdefault("reply", []).append(reply)
    rec.setdefault("server", []).append(server_ms)
    rec.setdefault("ends", []).append(ends)
    rec["errors"] = rec.get("errors", 0) + errors


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` so far (processes gone since count 0)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _pcts(values: np.ndarray) -> dict[str, float | int | None]:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"count": 0, "p50": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": len(values),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(values.max()), 3),
    }


async def _run(
    url: str,
    sessions: int,
    fps: float,
    duration: float,
    warmup: float,
    pid: int | None,
    aligned: bool = False,
    probes: int = 0,
    compress: int = 0,
) -> dict:
    count = int((duration + warmup) * fps)
    if aligned:
        traces = [_messages(1000, count)] * sessions
    else:
        traces = [_messages(1000 + k, count) for k in range(sessions)]
    # Probe sessions: the same signs, half a sign later, so they never end a sign in a storm:
    # their latency is what the storm costs everybody else (an event loop that keeps up or not).
    probe_traces = [_messages(1000, count, skip=25) for _ in range(probes)]
    probe_rec: dict = {}
    rec: dict = {}
    # CPU of the backend over the run: saturation explains a growing backlog.
    # With BACKEND_WORKERS > 1 the pid is the supervisor's: its worker processes count too.
    proc = psutil.Process(pid) if pid else None
    tree = [proc, *proc.children(recursive=True)] if proc is not None else []
    cpu0, wall0 = _cpu_seconds(tree), time.perf_counter()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        # Stagger the sessions over one frame period, as independent cameras would be (or not
        # at all: the storm).
        t0 = time.perf_counter() + 0.5
        stagger = 0.0 if aligned else 1.0 / (fps * sessions)
        await asyncio.gather(
            *(
                _session(http, url, traces[k], fps, t0 + k * stagger, rec, compress)
                for k in range(sessions)
            ),
            *(
                _session(http, url, t, fps, t0 + 0.5 / fps, probe_rec, compress)
                for t in probe_traces
            ),
        )
    backend_cpu = (
        round(100 * (_cpu_seconds(tree) - cpu0) / (time.perf_counter() - wall0), 1)
        if proc is not None
        else None
    )
    sched, sent, reply = (np.concatenate(rec[k]) for k in ("sched", "sent", "reply"))
    server, ends = np.concatenate(rec["server"]), np.concatenate(rec["ends"])
    measured = sched >= sched.min() + warmup
    corrected = (reply - sched) * 1000
    uncorrected = (reply - sent) * 1000
    late = (sent - sched) * 1000 > 5
    body = measured & ~ends
    end = measured & ends
    probe: dict = {}
    if probes:
        p_sched, p_reply = (np.concatenate(probe_rec[k]) for k in ("sched", "reply"))
        p_ends = np.concatenate(probe_rec["ends"])
        p_body = (p_sched >= sched.min() + warmup) & ~p_ends
        probe = {"probe_non_inference_ms": _pcts(((p_reply - p_sched) * 1000)[p_body])}
    return {
        "sessions": sessions,
        "aligned": aligned,
        "probes": probes,
        **probe,
        "fps": fps,
        "duration_s": duration,
        "warmup_s": warmup,
        "frames": int(measured.sum()),
        "backend_cpu_percent": backend_cpu,
        # CPU time of the backend per frame received (us): cpu% over the load / frame rate.
        "backend_cpu_us_per_frame": (
            round(backend_cpu * 1e4 / ((sessions + probes) * fps), 1)
            if backend_cpu is not None
            else None
        ),
        "error_replies": rec.get("errors", 0),
        "late_send_share": round(float(late[measured].mean()), 4),
        "non_inference_ms": _pcts(corrected[body]),
        "non_inference_uncorrected_ms": _pcts(uncorrected[body]),
        "sign_end_ms": _pcts(corrected[end]),
        "server_non_inference_ms": _pcts(server[body]),
        "server_sign_end_ms": _pcts(server[end]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the backend")
    p.add_argument("--url", help="an already-running backend's WebSocket URL")
    p.add_argument("--pid", type=int, help="with --url: the backend's pid, to sample its CPU")
    p.add_argument("--aligned", action="store_true", help="same trace, same start: a sign storm")
    p.add_argument(
        "--probes", type=int, default=0, help="extra sessions whose signs end between storms"
    )
    p.add_argument(
        "--compress",
        action="store_true",
        help="offer permessage-deflate as browsers do (the backend accepts it by default)",
    )
    p.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args(argv)
    env = dict(e.split("=", 1) for e in args.env)
    with ExitStack() as stack:
        url = args.url
        pid = args.pid
        if url is None:
            handle = stack.enter_context(run_backend(env))
            url, pid = handle.ws_url, handle.pid
        load_before = os.getloadavg()[0]
        summary = asyncio.run(
            _run(
                url,
                args.sessions,
                args.fps,
                args.duration,
                args.warmup,
                pid,
                args.aligned,
                args.probes,
                15 if args.compress else 0,
            )
        )
        summary["conditions"] = {
            "backend_env": env,
            "backend_pid": pid,
            "cpu_count": os.cpu_count(),
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "client": "aiohttp, same machine",
            "permessage_deflate_offered": args.compress,
        }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
