"""A trivial WebSocket echo server for the generator benchmarks: one small JSON reply per frame.

It answers each frame at once with ``{"frame_idx": N, ...}`` (no inference), so the benchmark
measures the generator, not a model. Runs in its own process, optionally pinned to one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any


def _frame_idx(msg: str | bytes) -> int:
    # The generator appends frame_idx as the last key: slice it out instead of parsing ~3 KB.
    if isinstance(msg, bytes):
        msg = msg.decode()
    tail = msg.rfind('"frame_idx":')
    if tail >= 0 and msg.endswith("}"):
        try:
            return int(msg[tail + 12 : -1])
        except ValueError:
            pass
    return int(json.loads(msg)["frame_idx"])


_REPLY_TAIL = '"state":"IDLE","prediction":null,"served_by":null,"model_version":null}'


async def _serve(port_q: Any) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        try:
            async for msg in ws:
                idx = _frame_idx(msg)
                await ws.send(f'{{"frame_idx":{idx},{_REPLY_TAIL}')
        except Exception:  # a client going away mid-frame is normal at the end of a run
            return

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=2**22) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        port_q.put(port)
        await asyncio.Future()


def serve_echo_forever(port_q: Any, core: int | None = None) -> None:
    """Serve until killed; put the bound port on ``port_q``. Pinned to ``core`` when given."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    import uvloop

    uvloop.run(_serve(port_q))


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until 127.0.0.1:port accepts connections."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
