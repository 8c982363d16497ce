"""A tiny real backend speaking the translate WebSocket protocol, for runner tests.

`python fake_backend.py [HOST]` binds HOST (default 127.0.0.1) on a free port, prints the port,
and answers each frame after ``DELAY_S`` with served_by "local" every 5th frame; GET /ready and
/metrics answer 200.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

DELAY_S = 0.003


def http(connection, request):
    if request.path in ("/ready", "/health", "/metrics"):
        body = b"# no metrics\n" if request.path == "/metrics" else b'{"ready": true}'
        return Response(HTTPStatus.OK, "OK", Headers({"Content-Length": str(len(body))}), body)
    return None


async def handler(ws) -> None:
    async def reply(idx: int) -> None:
        await asyncio.sleep(DELAY_S)
        inference = idx % 5 == 0
        await ws.send(json.dumps({
            "frame_idx": idx, "state": "idle", "prediction": "hello" if inference else None,
            "confidence": 0.9, "alternatives": [], "sentence_buffer": [],
            "is_sentence_complete": False, "latency_ms": 1.0,
            "served_by": "local" if inference else None,
            "model_version": "1.0" if inference else None,
        }))  # fmt: skip

    tasks = set()
    async for message in ws:
        task = asyncio.create_task(reply(int(json.loads(message).get("frame_idx", 0))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main(host: str) -> None:
    async with serve(handler, host, 0, process_request=http) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    import sys

    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"))
