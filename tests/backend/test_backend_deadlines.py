"""Session deadlines and close codes against a real backend and real sockets (issue 11, 8-9).

The backend runs with short deadlines so that each one fires within a second or two; a healthy
session streaming alongside must be answered in full while its neighbours are closed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from backend_server import BackendHandle, run_backend
from backend_streaming import dumps_frames, metric, run_session, scrape, trace
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.uri import parse_uri

pytestmark = pytest.mark.slow

DEADLINES = {
    "HANDSHAKE_TIMEOUT_S": "1",
    "WS_IDLE_TIMEOUT_S": "1.5",
    "WS_SEND_TIMEOUT_S": "1",
    "WS_PING_INTERVAL_S": "0.5",
    "WS_PING_TIMEOUT_S": "0.5",
    "WS_CLOSE_TIMEOUT_S": "2",
}


@pytest.fixture(scope="module")
def backend(model_dir) -> Iterator[BackendHandle]:
    env = {"USE_TORCHSERVE": "false", "MODEL_DIR": str(model_dir), **DEADLINES}
    with run_backend(env) as handle:
        yield handle


@pytest.fixture(scope="module")
def backend_slow_pings(model_dir) -> Iterator[BackendHandle]:
    """Pings too rare to fire: a client that never reads meets only the send deadline."""
    env = {"USE_TORCHSERVE": "false", "MODEL_DIR": str(model_dir), **DEADLINES}
    env |= {"WS_PING_INTERVAL_S": "60", "WS_IDLE_TIMEOUT_S": "60"}
    with run_backend(env) as handle:
        yield handle


def _errors(backend: BackendHandle, reason: str) -> float:
    return metric(scrape(backend.base_url), "signflow_errors_total", reason=reason)


def _wait_for(predicate, timeout_s: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took (fail after ``timeout_s``)."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout_s, f"{what}: not after {timeout_s} s"
        time.sleep(0.05)
    return time.monotonic() - t0


class RawClient:
    """A WebSocket client over a plain blocking socket (websockets' sans-I/O protocol): it
    reads only when told to, so it can complete the handshake and then never read again."""

    def __init__(self, ws_url: str, *, rcvbuf: int | None = None) -> None:
        host, port = urlsplit(ws_url).hostname, urlsplit(ws_url).port
        self.sock = socket.socket()
        if rcvbuf is not None:  # before connect: the TCP window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect((host, port))
        self.proto = ClientProtocol(parse_uri(ws_url))
        self.proto.send_request(self.proto.connect())
        self._flush()
        while not (events := self.proto.events_received()):
            self.proto.receive_data(self.sock.recv(4096))
        assert isinstance(events[0], Response) and events[0].status_code == 101, events

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.proto.data_to_send()))

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    def close(self) -> None:
        self.sock.close()


def _peer_closed(sock: socket.socket, timeout_s: float) -> bool:
    """True once the server closed or reset ``sock`` (reads and drops what is buffered)."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_connection_without_a_request_head_is_closed(backend: BackendHandle) -> None:
    """Silent TCP connections and half-sent upgrade requests are dropped after 1 s."""
    port = urlsplit(backend.ws_url).port
    silent = socket.create_connection(("127.0.0.1", port))
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"GET /api/v1/translate/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    t0 = time.monotonic()
    try:
        assert _peer_closed(silent, 5) and _peer_closed(partial, 5)
        assert 0.8 < time.monotonic() - t0 < 4
    finally:
        silent.close()
        partial.close()


async def test_idle_session_is_closed_with_1001(backend: BackendHandle) -> None:
    """Handshake-only and gone-quiet sessions both get close 1001 after WS_IDLE_TIMEOUT_S."""
    before = _errors(backend, "idle_timeout")
    frame = dumps_frames(trace(seed=3, signs=1))[0]

    async def quiet(send_first: bool) -> tuple[int | None, str, float]:
        async with connect(backend.ws_url) as ws:  # answers pings: only idleness can close it
            t0 = time.monotonic()
            if send_first:
                await ws.send(frame)
                assert json.loads(await ws.recv())["frame_idx"] == 0
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            rcvd = closed.value.rcvd
            assert rcvd is not None
            return rcvd.code, rcvd.reason, time.monotonic() - t0

    results = await asyncio.gather(quiet(False), quiet(True))
    for code, reason, took in results:
        assert code == 1001 and "idle timeout" in reason
        assert 1.4 < took < 5, took  # 1.5 s idle deadline (> the 0.5 s ping interval)
    assert _errors(backend, "idle_timeout") == before + 2


async def test_client_that_never_reads_is_dropped(backend_slow_pings: BackendHandle) -> None:
    """A client that sends but never reads fills the buffers; WS_SEND_TIMEOUT_S frees it."""
    backend = backend_slow_pings
    before = _errors(backend, "send_timeout")
    neighbour = trace(seed=5, signs=2)
    healthy = asyncio.create_task(run_session(backend.ws_url, dumps_frames(neighbour), pace_s=0.01))
    raw = await asyncio.to_thread(RawClient, backend.ws_url, rcvbuf=4096)
    # Every message gets an error reply of ~120 bytes; send until the server stops reading us.
    raw.sock.settimeout(0.5)
    sent = 0
    try:
        while True:
            await asyncio.to_thread(raw.send_text, "not json " + "x" * 200)
            sent += 1
    except (TimeoutError, ConnectionResetError, BrokenPipeError):
        pass
    try:
        took = await asyncio.to_thread(
            _wait_for, lambda: _errors(backend, "send_timeout") > before, 10, "send timeout"
        )
        assert took < 5
        # The connection was aborted (reset), not left to flush forever.
        assert await asyncio.to_thread(_peer_closed, raw.sock, 5)
    finally:
        raw.close()
    replies = await healthy
    assert len(replies) == len(neighbour) and not [r for r in replies if "error" in r]
    assert sent > 100, sent  # the buffers really filled up (about 1 MB on loopback)


async def test_client_that_never_answers_pings_is_closed(backend: BackendHandle) -> None:
    """No pong within WS_PING_TIMEOUT_S (a dead peer) closes the session (1011)."""
    before = _errors(backend, "ping_timeout")
    raw = await asyncio.to_thread(RawClient, backend.ws_url)
    try:
        took = await asyncio.to_thread(
            _wait_for, lambda: _errors(backend, "ping_timeout") > before, 10, "ping timeout"
        )
        assert took < 3  # 0.5 s interval + 0.5 s timeout, before the 1.5 s idle deadline
    finally:
        raw.close()


async def _send_fragmented(url: str, size: int, fragment: int) -> int | None:
    """Send one text message of ``size`` bytes as ``fragment``-byte frames; the close code."""
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.send("x" * fragment for _ in range(size // fragment))
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def test_fragmented_oversize_message_closes_1009_for_every_client(
    backend: BackendHandle,
) -> None:
    """20 clients each send 300 KB (limit 256 KiB) as 1 KB fragments at once: all get 1009.

    Before the close handshake fix the server reset the connection under the close frame and
    most of them saw 1006.
    """
    before = _errors(backend, "message_too_big")
    for _ in range(2):
        codes = await asyncio.gather(
            *(_send_fragmented(backend.ws_url, 300 * 1024, 1024) for _ in range(20))
        )
        assert Counter(codes) == Counter({1009: 20})
    # One big fragment and one unfragmented message cross the limit differently; same answer.
    assert await _send_fragmented(backend.ws_url, 600 * 1024, 300 * 1024) == 1009
    assert await _send_fragmented(backend.ws_url, 300 * 1024, 300 * 1024) == 1009
    assert _errors(backend, "message_too_big") == before + 42
