"""Measure the candidate WebSocket clients and event loops for the load generator's hot path.

Each candidate runs the generator's real pattern (per-session timer loop sending pre-serialised
frames at a fixed rate, one receiver per session parsing the JSON reply) against an echo server
in another process, for a fixed offered rate. It prints the client's CPU cost per frame (us),
so the cheapest can be chosen. Run: ``.venv/bin/python benchmarks/ws_client_candidates.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import time
from collections.abc import Awaitable, Callable

import psutil

from benchmarks.echo_server import serve_echo_forever, wait_port

SendFn = Callable[[str], Awaitable[None]]


async def _websockets_asyncio(url: str) -> tuple[SendFn, Callable[[], object], object]:
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, max_size=2**22, write_limit=2**20)
    return ws.send, lambda: ws, ws


async def _websockets_legacy(url: str) -> tuple[SendFn, Callable[[], object], object]:
    from websockets.legacy.client import connect

    ws = await connect(url, compression=None, max_size=2**22)
    return ws.send, lambda: ws, ws


async def _aiohttp(url: str) -> tuple[SendFn, Callable[[], object], object]:
    import aiohttp

    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url, compress=0, max_msg_size=2**22)

    async def gen():
        async for msg in ws:
            yield msg.data

    ws._signflow_session = session  # type: ignore[attr-defined]
    return ws.send_str, gen, ws


CANDIDATES = {
    "websockets.asyncio": _websockets_asyncio,
    "websockets.legacy": _websockets_legacy,
    "aiohttp": _aiohttp,
}


async def _run_candidate(
    name: str, url: str, sessions: int, fps: float, seconds: float, scheduler: str = "per-session"
) -> dict:
    frame = {
        "hands": {
            "left": [[0.1234, 0.5678, -0.0123]] * 21,
            "right": [[0.4321, 0.8765, -0.0321]] * 21,
        },
        "pose": [[0.5, 0.25, -0.125, 0.99]] * 33,
    }
    prefix = json.dumps(frame, separators=(",", ":"))[:-1] + ',"frame_idx":'
    conns = [await CANDIDATES[name](url) for _ in range(sessions)]
    replies = 0
    late = 0
    stop_at = time.perf_counter() + seconds + 0.5

    async def receiver(it: Callable[[], object]) -> None:
        nonlocal replies
        async for data in it():  # type: ignore[attr-defined]
            json.loads(data)["frame_idx"]
            replies += 1

    async def sender(i: int, send: SendFn) -> None:
        nonlocal late
        start = t0 + i / sessions / fps
        k = 0
        while True:
            t = start + k / fps
            if t > t0 + seconds:
                return
            d = t - time.perf_counter()
            if d > 0:
                await asyncio.sleep(d)
            elif d < -0.005:
                late += 1
            await send(prefix + str(k) + "}")
            k += 1

    async def one_scheduler() -> None:
        # All sessions' frames in one global order (frame n: session n % S at t0 + n/(S*fps)),
        # sleeping only when the next frame is more than a timer tick away.
        nonlocal late
        sends = [c[0] for c in conns]
        counters = [0] * sessions
        step = 1.0 / (sessions * fps)
        total = int(sessions * fps * seconds)
        now = time.perf_counter
        for n in range(total):
            t = t0 + n * step
            d = t - now()
            if d > 0.001:
                await asyncio.sleep(d)
            elif d < -0.005:
                late += 1
            i = n % sessions
            k = counters[i]
            counters[i] = k + 1
            await sends[i](prefix + str(k) + "}")

    recv_tasks = [asyncio.create_task(receiver(c[1])) for c in conns]
    proc = psutil.Process()
    cpu0 = proc.cpu_times()
    t0 = time.perf_counter() + 0.2
    if scheduler == "one":
        await one_scheduler()
    else:
        await asyncio.gather(*(sender(i, c[0]) for i, c in enumerate(conns)))
    while time.perf_counter() < stop_at:
        await asyncio.sleep(0.05)
    cpu1 = proc.cpu_times()
    wall = time.perf_counter() - t0
    for t in recv_tasks:
        t.cancel()

    async def close(c: tuple) -> None:
        await c[2].close()
        sess = getattr(c[2], "_signflow_session", None)
        if sess is not None:
            await sess.close()

    await asyncio.gather(*(close(c) for c in conns), return_exceptions=True)
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    sent = int(sessions * fps * seconds)
    return {
        "candidate": name,
        "scheduler": scheduler,
        "frames": sent,
        "replies": replies,
        "late_share": late / max(sent, 1),
        "cpu_percent": 100 * cpu / wall,
        "cpu_us_per_frame": 1e6 * cpu / max(replies, 1),
    }


def main() -> None:
    """Run every candidate (with the default loop and with uvloop) and print one JSON line each."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--seconds", type=float, default=6)
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    server = ctx.Process(
        target=serve_echo_forever, args=(port_q, cores[-1] if len(cores) > 1 else None)
    )
    server.start()
    try:
        port = port_q.get(timeout=20)
        wait_port(port)
        os.sched_setaffinity(0, {cores[0]})
        url = f"ws://127.0.0.1:{port}/"
        runs = [(lp, name, "per-session") for lp in ("asyncio", "uvloop") for name in CANDIDATES]
        runs.append(("uvloop", "aiohttp", "one"))
        for loop_name, name, scheduler in runs:
            coro = _run_candidate(name, url, args.sessions, args.fps, args.seconds, scheduler)
            if loop_name == "uvloop":
                import uvloop

                res = uvloop.run(coro)
            else:
                res = asyncio.run(coro)
            res["loop"] = loop_name
            print(json.dumps(res), flush=True)
        # Reply parsing: json (stdlib) vs orjson when installed.
        reply = json.dumps(
            {
                "frame_idx": 123456,
                "state": "IDLE",
                "prediction": None,
                "confidence": 0.0,
                "alternatives": [],
                "sentence_buffer": "",
                "is_sentence_complete": False,
                "latency_ms": 0.4,
                "served_by": None,
                "model_version": None,
            }
        )
        n = 200_000
        t = time.perf_counter()
        for _ in range(n):
            json.loads(reply)
        print(json.dumps({"parse": "json", "us": 1e6 * (time.perf_counter() - t) / n}))
        try:
            import orjson

            t = time.perf_counter()
            for _ in range(n):
                orjson.loads(reply)
            print(json.dumps({"parse": "orjson", "us": 1e6 * (time.perf_counter() - t) / n}))
        except ImportError:
            print(json.dumps({"parse": "orjson", "us": None, "note": "not installed"}))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
