"""A WebSocket server with known behaviour, run as its own process by the load tests.

Usage: python ws_test_server.py [--delay-ms D] [--stall-at-frame K --stall-ms S]
       [--error-every N] [--close-after N] [--tag-inference-every N]
Prints the bound port on the first stdout line, then serves on 127.0.0.1 until terminated.
Each frame gets one reply ``D`` ms after it arrived. ``--stall-at-frame K``: the first time a
frame with frame_idx K arrives, the whole server blocks for S ms (like a GC pause), once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.server import serve


def main() -> None:
    """Parse flags and serve until killed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--stall-at-frame", type=int, default=-1)
    ap.add_argument("--stall-ms", type=float, default=0.0)
    ap.add_argument("--error-every", type=int, default=0)
    ap.add_argument("--close-after", type=int, default=0)
    ap.add_argument("--tag-inference-every", type=int, default=0)
    ap.add_argument("--log", default="", help="append 'conn frame_idx recv_t send_t' per reply")
    args = ap.parse_args()
    asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    # perf_counter is CLOCK_MONOTONIC, shared by every process: tests compare it with theirs.
    log = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115
    stalled = False
    conn_counter = 0

    async def handler(ws: Any) -> None:
        nonlocal stalled, conn_counter
        conn_counter += 1
        conn_id = conn_counter
        loop = asyncio.get_running_loop()
        received = 0
        async for msg in ws:
            t_recv = time.perf_counter()
            frame = json.loads(msg)
            idx = frame.get("frame_idx")
            received += 1
            if args.close_after and conn_id == 1 and received > args.close_after:
                await ws.close(code=1011, reason="test: closing one session")
                return
            reply: dict[str, Any] = {"frame_idx": idx, "served_by": None, "prediction": None}
            if args.error_every and idx % args.error_every == args.error_every - 1:
                reply = {"frame_idx": idx, "error": {"code": "bad_frame", "message": "test"}}
            elif args.tag_inference_every and idx % args.tag_inference_every == 0:
                reply.update(
                    served_by="torchserve", model_version="1.0", prediction=frame.get("sign")
                )
            if idx == args.stall_at_frame and not stalled:
                stalled = True
                time.sleep(args.stall_ms / 1000.0)  # blocks the whole server, on purpose
            text = json.dumps(reply)
            if args.delay_ms > 0:
                when = loop.time() + args.delay_ms / 1000.0
                loop.call_at(when, _send_soon, ws, text, log, (conn_id, idx, t_recv))
            else:
                _log(log, (conn_id, idx, t_recv))
                await ws.send(text)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await asyncio.Future()


def _log(log: Any, frame: tuple[int, int, float]) -> None:
    if log is not None:
        conn_id, idx, t_recv = frame
        log.write(f"{conn_id} {idx} {t_recv!r} {time.perf_counter()!r}\n")


def _send_soon(ws: Any, text: str, log: Any, frame: tuple[int, int, float]) -> None:
    _log(log, frame)
    task = asyncio.ensure_future(ws.send(text))
    # A session closed by the client before its last delayed reply is normal.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


if __name__ == "__main__":
    main()
