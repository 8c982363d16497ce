"""The server protocol's direct receive (server_protocols.DirectSend.set_receiver), against a real
uvicorn server with the backend's protocols and real sockets.

The app here is a few lines of ASGI that records which path each message took: the receiver
(called from the protocol's data_received) or the ASGI ``receive()``. What must hold: every
message exactly once, in order, through one path or the other; a message the receiver declines,
and every message queued behind it, goes through ``receive()``; binary messages and messages
after ``set_receiver(None)`` always do. The last test runs the real backend app the same way:
an unexpected error in a frame taken directly still ends only that session, raised where the
receive loop would have raised it (~3 s with the model load).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from backend_patch.__main__ import uvicorn_config
from backend_patch.app.config import load_settings
from backend_patch.app.server_protocols import DIRECT_SEND_EXTENSION


async def _recording_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Takes messages directly until told otherwise; ``report`` sends back what it saw."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    direct = scope["extensions"][DIRECT_SEND_EXTENSION]
    seen: list[list[str]] = []

    def receiver(text: str) -> bool:
        if text.startswith("decline") or text in ("stop", "report"):
            return False  # the control messages too: the app answers them from receive()
        seen.append(["direct", text])
        return True

    direct.set_receiver(receiver)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        seen.append(["receive", text if text is not None else "<binary>"])
        if text == "stop":
            direct.set_receiver(None)
        elif text == "report":
            await send({"type": "websocket.send", "text": json.dumps(seen)})


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A uvicorn server with the backend's protocols (uvicorn_config) in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(_recording_app, load_settings(log_level="warning"))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            threading.Event().wait(0.02)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class _Client:
    """websockets' sans-I/O client over a blocking socket: a batch of messages goes out in one
    write, so the server parses them in one data_received."""

    def __init__(self, url: str) -> None:
        self.sock = socket.create_connection((parse_uri(url).host, parse_uri(url).port), timeout=5)
        self.proto = ClientProtocol(parse_uri(url))
        self.proto.send_request(self.proto.connect())
        self.sock.sendall(b"".join(self.proto.data_to_send()))
        while not (events := self.proto.events_received()):
            self.proto.receive_data(self.sock.recv(65536))
        assert isinstance(events[0], Response) and events[0].status_code == 101

    def send_batch(self, *messages: str | bytes) -> None:
        for m in messages:
            if isinstance(m, bytes):
                self.proto.send_binary(m)
            else:
                self.proto.send_text(m.encode())
        self.sock.sendall(b"".join(self.proto.data_to_send()))

    def report(self) -> list[list[str]]:
        self.send_batch("report")
        while True:
            for event in self.proto.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    seen: list[list[str]] = json.loads(bytes(event.data))
                    return seen
            self.proto.receive_data(self.sock.recv(65536))

    def close(self) -> None:
        self.sock.close()


def _paths(url: str, *batches: tuple[str | bytes, ...]) -> list[list[str]]:
    client = _Client(url)
    try:
        for batch in batches:
            client.send_batch(*batch)
        return client.report()
    finally:
        client.close()


def test_messages_go_to_the_receiver_in_order(server_url: str) -> None:
    assert _paths(server_url, ("a", "b"), ("c",)) == [
        ["direct", "a"],
        ["direct", "b"],
        ["direct", "c"],
        ["receive", "report"],
    ]


def test_a_declined_message_and_those_behind_it_take_receive(server_url: str) -> None:
    """One batch: a, decline-b, c, d. a goes direct; b is declined and queued; c and d find b
    queued ahead of them and queue behind it, in order."""
    seen = _paths(server_url, ("a", "decline-b", "c", "d", "stop"))
    assert seen[:5] == [
        ["direct", "a"],
        ["receive", "decline-b"],
        ["receive", "c"],
        ["receive", "d"],
        ["receive", "stop"],
    ]


def test_binary_and_messages_after_set_receiver_none_take_receive(server_url: str) -> None:
    seen = _paths(server_url, ("a", b"\x00\x01"), ("stop",), ("b",))
    assert seen == [
        ["direct", "a"],
        ["receive", "<binary>"],
        ["receive", "stop"],
        ["receive", "b"],
        ["receive", "report"],
    ]


def test_every_message_exactly_once_in_order(server_url: str) -> None:
    """Many batches mixing direct and declined messages: the app sees each once, in order."""
    messages = [f"decline-{i}" if i % 7 == 3 else f"m{i}" for i in range(200)]
    batches = [tuple(messages[i : i + 9]) for i in range(0, len(messages), 9)]
    seen = _paths(server_url, *batches)
    assert [text for _, text in seen[:-1]] == messages
    assert all(path == "receive" for path, text in seen if text.startswith("decline"))
    assert {path for path, _ in seen} == {"direct", "receive"}


@pytest.fixture
def backend_in_thread(model_dir, monkeypatch) -> Iterator[str]:
    """The real backend app (flag off) under uvicorn with its protocols, in a thread, with a
    decode that raises an unexpected error (RuntimeError, not a FrameError) on a marked frame."""
    from backend_patch.app.api import translate
    from backend_patch.app.main import create_app

    real_decode = translate.decode_frame

    def decode(text: str) -> Any:
        if '"boom"' in text:
            raise RuntimeError("boom")
        return real_decode(text)

    monkeypatch.setattr(translate, "decode_frame", decode)
    settings = load_settings(use_torchserve=False, model_dir=model_dir, log_level="warning")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the backend did not start"
            threading.Event().wait(0.05)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/api/v1/translate/stream"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_an_unexpected_error_in_a_direct_frame_ends_that_session_only(
    backend_in_thread: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The frame is taken directly (nothing queued ahead); its error is raised in the session's
    receive loop as before, so the ASGI server logs it and drops that connection, while a
    neighbour session goes on being answered."""
    from backend_streaming import dumps_frames, trace
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    frames = dumps_frames(trace(seed=3, signs=1))
    with connect(backend_in_thread) as bad, connect(backend_in_thread) as good:
        bad.send(frames[0])
        assert json.loads(bad.recv(5))["frame_idx"] == 0
        bad.send(frames[1].replace('"frame_idx"', '"marker": "boom", "frame_idx"'))
        with pytest.raises(ConnectionClosed):
            bad.recv(5)
        for i, frame in enumerate(frames[:20]):
            good.send(frame)
            assert json.loads(good.recv(5))["frame_idx"] == i
    logged = [r for r in caplog.records if r.exc_info and "boom" in str(r.exc_info[1])]
    assert logged and logged[0].getMessage().startswith("Exception in ASGI application")
