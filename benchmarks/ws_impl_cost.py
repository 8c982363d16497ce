"""Server CPU per message of uvicorn's WebSocket implementations, with the backend's traffic.

    .venv/bin/python benchmarks/ws_impl_cost.py [--sessions 32] [--duration 10] [--rounds 1]
        [--json out.json]

Each implementation uvicorn offers (``--ws websockets``, ``websockets-sansio``, ``wsproto``)
serves the same trivial ASGI app: one ~200-byte JSON reply per text message, no decode, no
model, so what differs is the WebSocket layer (framing, parsing, the ASGI receive/send hops).
The load is benchmarks/backend_sessions.py's: N sessions x 30 fps of the synthetic frames
(~1.8 KB each), open loop. The implementations run in rotation (A B C, then C B A per round)
so load drift on a shared machine biases them alike; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH)]

IMPLS = ("websockets-sansio", "websockets", "wsproto")
_REPLY = (
    '{"frame_idx":0,"state":"idle","prediction":null,"confidence":null,"alternatives":[],'
    '"sentence_buffer":[],"is_sentence_complete":false,"latency_ms":0.0,"served_by":null,'
    '"model_version":null}'
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One fixed reply per text message (uvicorn imports ``ws_impl_cost:app``)."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": _REPLY})


def _one(impl: str, sessions: int, duration: float) -> dict[str, Any]:
    from backend_sessions import _run

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "ws_impl_cost:app", "--app-dir", str(BENCH),
         "--fd", str(sock.fileno()), "--ws", impl, "--log-level", "warning",
         "--no-access-log"],
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(2.0)  # uvicorn imported and listening on the inherited socket
        url = f"ws://127.0.0.1:{port}/"
        result: dict[str, Any] = asyncio.run(_run(url, sessions, 30.0, duration, 2.0, proc.pid))
    finally:
        proc.terminate()
        proc.wait(10)
        sock.close()
    return {
        "impl": impl,
        "cpu_us_per_message": result["backend_cpu_us_per_frame"],
        "client_p99_ms": result["non_inference_ms"]["p99"],
        "late_send_share": result["late_send_share"],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the rotation; print (and optionally write) the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPLS}
    for _ in range(args.rounds):
        for impl in (*IMPLS, *reversed(IMPLS)):
            r = _one(impl, args.sessions, args.duration)
            runs[impl].append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    medians = {
        impl: statistics.median(r["cpu_us_per_message"] for r in rs) for impl, rs in runs.items()
    }
    ref = medians[IMPLS[0]]
    summary = {
        "benchmark": "ws_impl_cost",
        "command": " ".join(
            ["benchmarks/ws_impl_cost.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "sessions": args.sessions,
        "fps": 30,
        "duration_s": args.duration,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "median_cpu_us_per_message": medians,
        f"ratio_over_{IMPLS[0]}": {impl: round(m / ref, 3) for impl, m in medians.items()},
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
