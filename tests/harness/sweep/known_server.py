"""A WebSocket server of known capacity, for the sweep tests (real sockets on loopback).

Every frame is answered. Every ``every``-th frame of a connection (``frame_idx % every ==
every - 1``) ends a sign: its reply (``served_by: local``, a prediction) goes through ONE queue
per service time, served in arrival order, ``service_ms`` each; other frames are answered at
once. Both come from the URL (``/stream?service_ms=23.5&every=1``), so one process serves
several "configurations", each service time with its own single queue.

Capacity in closed form: a session at ``fps`` frames/s sends ``fps / every`` sign-ending
frames per second, the queue serves ``1000 / service_ms`` per second, so the queue is stable
(latency bounded by ``sessions * service_ms``) exactly while
``sessions < 1000 * every / (fps * service_ms)``; one session more and its backlog (and the
latency) grows without bound. The queue keeps its own clock (``free_at``): scheduling jitter
delays a reply but never lowers the capacity. With ``fps`` in the URL a frame's arrival is taken
as its nominal time (the connection's schedule offset + ``frame_idx / fps``), so a server that
the shared machine stalls for a moment reads a backlog late without it becoming a burst in the
queue: the queue sees exactly the offered load, and the capacity stays the closed form.

``python known_server.py`` binds 127.0.0.1 on a free port and prints the port.
"""

from __future__ import annotations

import asyncio
import json
import math
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

EVERY = 1  # default: every frame ends a sign (fewest frames per inference)


def capacity(fps: float, service_ms: float, every: int = EVERY) -> int:
    """Most sessions the queue holds (the largest n with n * rate * service < 1)."""
    limit = 1000.0 * every / (fps * service_ms)
    return math.ceil(limit) - 1


def http(connection, request):
    if request.path.startswith(("/ready", "/health", "/metrics")):
        body = b"# no metrics\n" if request.path.startswith("/metrics") else b'{"ready": true}'
        return Response(HTTPStatus.OK, "OK", Headers({"Content-Length": str(len(body))}), body)
    return None


_free_at: dict[float, float] = {}  # service_ms -> when its queue is next free (loop time)


def _reply(idx: int, inference: bool) -> str:
    return json.dumps({
        "frame_idx": idx, "state": "idle", "prediction": "hello" if inference else None,
        "confidence": 0.9, "alternatives": [], "sentence_buffer": [],
        "is_sentence_complete": False, "latency_ms": 1.0,
        "served_by": "local" if inference else None,
        "model_version": "1.0" if inference else None,
    })  # fmt: skip


async def handler(ws) -> None:
    query = parse_qs(urlsplit(ws.request.path).query)
    service_s = float(query.get("service_ms", ["10"])[0]) / 1000.0
    every = int(query.get("every", [str(EVERY)])[0])
    fps = float(query.get("fps", ["0"])[0])
    loop = asyncio.get_running_loop()
    t0: float | None = None  # nominal time of frame 0 on this connection (with fps)
    tasks = set()

    async def send_at(when: float, text: str) -> None:
        await asyncio.sleep(max(when - loop.time(), 0.0))
        await ws.send(text)

    async for message in ws:
        idx = int(json.loads(message).get("frame_idx", 0))
        if idx % every != every - 1:
            await ws.send(_reply(idx, False))
            continue
        key = service_s
        arrival = loop.time()
        if fps > 0:
            # The earliest (arrival - idx / fps) seen is the schedule's offset: a frame read
            # late (the server stalled) never moves it, one read on time corrects it.
            offset = arrival - idx / fps
            t0 = offset if t0 is None else min(t0, offset)
            arrival = t0 + idx / fps
        done = max(arrival, _free_at.get(key, 0.0)) + service_s
        _free_at[key] = done
        task = asyncio.create_task(send_at(done, _reply(idx, True)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, process_request=http) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
