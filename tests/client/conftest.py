"""A real loopback HTTP server that plays TorchServe's inference API, scripted per test.

Each request to ``POST /predictions/{model}`` takes the next action from ``server.script``
(``"ok"`` once the script is empty):

- ``"ok"``: 200 with a TorchServe-like JSON answer;
- ``"503"``, ``"500"``, ``"502"``, ``"504"``, ``"507"``, ``"501"``: that status with
  TorchServe's error JSON (500/507 say "Worker died.", as during an unregister);
- ``"400"``: a plain bad request (not an auth failure);
- ``"garbage"``: 200 with a body that is not JSON; ``"missing"``: 200 JSON lacking fields;
- ``("delay", seconds)``: wait, then answer ``"ok"``;
- ``"close"``: drop the connection without answering.

``"ok"`` answers after ``server.answer_delay_s`` (0 by default): a TorchServe whose every answer
waits out its batch delay, as at low load with a long ``max_batch_delay``.

With ``server.valid_keys`` set, a request without ``Authorization: Bearer <one of them>`` gets
TorchServe's 400 ``InvalidKeyException`` before any scripted action is consumed.

``GET /models/{model}`` plays the management API's describe-model answer for the default
version (``model_version``, ``batch_size``, ``max_batch_delay_ms``), checked against
``server.management_keys`` when set; ``server.describes`` counts the calls.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

Action = str | tuple[str, float]

INVALID_KEY_BODY = {
    "code": 400,
    "type": "InvalidKeyException",
    "message": "Token Authorization failed. Token either incorrect, expired, or not provided "
    "correctly",
}


@dataclass
class Recorded:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    action: Action | None


@dataclass
class StubTorchServe:
    """State of the scripted server; tests set ``script``/``valid_keys`` and read ``requests``."""

    base_url: str = ""
    model_version: str = "1.0"
    script: list[Action] = field(default_factory=list)
    valid_keys: set[str] | None = None
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    answer_delay_s: float = 0.0
    batch_size: int = 8
    max_batch_delay_ms: int = 50
    management_keys: set[str] | None = None
    describes: int = 0
    answered: int = 0

    def answer(self, batch_size: int = 1) -> dict:
        """The JSON the stub returns for ``"ok"``."""
        return {
            "prediction": "hello",
            "confidence": 0.875,
            "alternatives": [
                {"label": "hello", "confidence": 0.875},
                {"label": "thanks", "confidence": 0.125},
            ],
            "model_version": self.model_version,
            "batch_size": batch_size,
        }


def _make_app(state: StubTorchServe) -> web.Application:
    async def predict(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        if state.valid_keys is not None:
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in state.valid_keys:
                state.requests.append(Recorded(request.path, headers, body, "invalid_key"))
                return web.json_response(INVALID_KEY_BODY, status=400)
        action = state.script.pop(0) if state.script else "ok"
        state.requests.append(Recorded(request.path, headers, body, action))
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            if isinstance(action, tuple):
                await asyncio.sleep(action[1])
                action = "ok"
            elif action == "ok" and state.answer_delay_s > 0:
                await asyncio.sleep(state.answer_delay_s)
            if action == "ok":
                state.answered += 1
                return web.json_response(state.answer())
            if action in ("500", "507"):
                return web.json_response(
                    {"code": int(action), "type": "InternalServerException",
                     "message": "Worker died."},
                    status=int(action),
                )  # fmt: skip
            if action in ("503", "501", "502", "504"):
                return web.json_response(
                    {"code": int(action), "type": "ServiceUnavailableException", "message": "x"},
                    status=int(action),
                )
            if action == "400":
                return web.json_response(
                    {"code": 400, "type": "BadRequestException", "message": "wrong byte length"},
                    status=400,
                )
            if action == "garbage":
                return web.Response(body=b"<html>not json</html>", content_type="text/html")
            if action == "missing":
                return web.json_response({"prediction": "hello"})
            if action == "close":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # aiohttp stops the handler quietly
            raise AssertionError(f"unknown action {action!r}")
        finally:
            state.in_flight -= 1

    async def describe(request: web.Request) -> web.StreamResponse:
        state.describes += 1
        if state.management_keys is not None:
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in state.management_keys:
                return web.json_response(INVALID_KEY_BODY, status=400)
        return web.json_response(
            [
                {
                    "modelName": request.match_info["model"],
                    "modelVersion": state.model_version,
                    "modelUrl": f"signflow-{state.model_version}.mar",
                    "runtime": "python",
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "batchSize": state.batch_size,
                    "maxBatchDelay": state.max_batch_delay_ms,
                    "loadedAtStartup": True,
                    "workers": [{"id": "9000", "status": "READY", "pid": 1, "gpu": False}],
                    "responseTimeout": 120,
                }
            ]
        )

    app = web.Application()
    app.router.add_post("/predictions/{model}", predict)
    app.router.add_get("/models/{model}", describe)
    return app


@pytest.fixture
async def stub_ts() -> AsyncIterator[StubTorchServe]:
    """A started scripted server on 127.0.0.1 with a free port; stopped after the test."""
    state = StubTorchServe()
    runner = web.AppRunner(
        _make_app(state), handle_signals=False, access_log=None, shutdown_timeout=0.2
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connections are refused (RST).

    The socket stays bound for the whole test so no other process can take the port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _write_key_file(path: Path, inference_key: str) -> None:
    path.write_text(
        json.dumps(
            {
                "management": {"key": "mgmt-key", "expiration time": "2026-01-01T00:00:00Z"},
                "inference": {"key": inference_key, "expiration time": "2026-01-01T00:00:00Z"},
                "API": {"key": "api-key"},
            },
            indent=2,
        ),
        encoding="utf-8",
    )


@pytest.fixture
def write_key_file() -> Callable[[Path, str], None]:
    """A function writing a key file in TorchServe 0.12's format (inference key given)."""
    return _write_key_file
