"""uvicorn's HTTP and WebSocket protocols with the deadlines and the close handshake we need.

uvicorn (0.54, ``websockets-sansio`` implementation) offers keep-alive pings
(``ws_ping_interval`` / ``ws_ping_timeout``) and a message size limit (``ws_max_size``), used
as they are. Three things it lacks are added here, each as a small override:

- **Request-head deadline**: a TCP connection that never completes its HTTP request head (the
  WebSocket upgrade) is held forever by uvicorn; here it is closed after ``handshake_s``.
- **Stuck-writer deadline**: a client that stops reading makes the kernel buffers fill, the
  transport pause writing and every ASGI ``send`` (even the close frame) wait forever. When
  writing stays paused for ``send_s``, the app is told (``websocket.disconnect`` 1008), a close
  frame 1008 is queued and, unless the client reads it within ``close_s``, the connection is
  aborted (reset).
- **Close handshake after a protocol failure**: when the protocol layer fails the connection
  (message over ``ws_max_size``: 1009; invalid UTF-8: 1007; protocol error: 1002) uvicorn writes
  the close frame and closes the socket at once. A client still sending (a fragmented 300 KB
  message) then gets a TCP reset, and its stack often drops the unread close frame: it saw 1006.
  Here the server half-closes instead (close frame, then FIN, as the websockets library itself
  does), keeps reading and discarding until the client closes, and drops the connection only
  after ``close_s``.

The overrides use uvicorn internals (``queue``, ``close_sent``, ``close_timer``, ``read_paused``,
``handle_parser_exception``) as of uvicorn 0.54 (pinned in requirements.lock);
tests/backend/test_backend_deadlines.py fails if a new uvicorn changes them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["Deadlines", "SignflowHttpProtocol", "SignflowWebSocketProtocol"]

# Close codes of the deadlines (RFC 6455 section 7.4.1). The app gets them in the
# ``websocket.disconnect`` event with a ``cause`` key (the server, not the client, closed) and
# counts them as signflow_errors_total{reason=cause}.
SEND_TIMEOUT_CODE = 1008  # policy violation: the client does not read its replies
PING_TIMEOUT_CODE = 1011  # uvicorn's own code for a missing pong
_FAILURE_CAUSES = {1007: "invalid_utf8", 1009: "message_too_big"}  # otherwise "protocol_error"


@dataclass(frozen=True)
class Deadlines:
    """Connection deadlines in seconds (see the module doc); all > 0."""

    handshake_s: float = 10.0
    send_s: float = 10.0
    close_s: float = 5.0

    def __post_init__(self) -> None:
        if min(self.handshake_s, self.send_s, self.close_s) <= 0:
            raise ValueError(f"deadlines must be > 0 s, got {self}")


class SignflowHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request head."""

    def __init__(self, *args: Any, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadlines = deadlines
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_head_timer()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._deadlines.handshake_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request head in time")
            self.transport.close()


class SignflowWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with a stuck-writer deadline and a graceful fail."""

    def __init__(self, *args: Any, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = deadlines.close_s  # uvicorn's wait for the client's close frame
        self._deadlines = deadlines
        self._write_timer: asyncio.TimerHandle | None = None
        self._failed = False

    # -- stuck writer ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self._deadlines.send_s, self._writer_stuck)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_write_timer()
        super().connection_lost(exc)

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _writer_stuck(self) -> None:
        self._write_timer = None
        if self.disconnected:
            return
        reason = f"send timeout: the client read nothing for {self._deadlines.send_s:g} s"
        self._tell_app(SEND_TIMEOUT_CODE, reason, "send_timeout")
        if not self.close_sent:
            # The close frame queues behind the unread replies: a client that resumes reading
            # soon still learns why; one that does not is aborted below.
            self.conn.fail(SEND_TIMEOUT_CODE, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
        self.loop.call_later(self._deadlines.close_s, self._abort)

    def _abort(self) -> None:
        """Drop the connection (RST) unless it is gone already; the app's send then fails."""
        if not self.disconnected:
            self.transport.abort()

    # -- keep-alive ----------------------------------------------------------------------------

    def keepalive_timeout(self) -> None:
        if not (self.close_sent or self.transport.is_closing()):
            self._tell_app(PING_TIMEOUT_CODE, "keepalive ping timeout", "ping_timeout")
        super().keepalive_timeout()

    # -- protocol failure: close handshake ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._failed:
            # The websockets protocol discards everything after a failure; reading on keeps the
            # kernel from resetting the connection under the close frame.
            self.conn.receive_data(data)
            return
        super().data_received(data)

    def handle_parser_exception(self) -> None:
        close = self.conn.close_sent
        assert close is not None  # fail() sent a close frame: we are past the opening handshake
        self._failed = True
        cause = _FAILURE_CAUSES.get(close.code, "protocol_error")
        self._tell_app(close.code, close.reason, cause)
        # The close frame, then (the protocol's SEND_EOF marker, b"") a half-close.
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # The client's FIN closes the transport (eof_received returns None); this is the limit.
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def _tell_app(self, code: int, reason: str, cause: str) -> None:
        """Queue the disconnect for the app: the server closed with ``code`` for ``cause``."""
        # ``cause`` is ours, beside ASGI's keys (uvicorn's event type does not list it).
        event: Any = {
            "type": "websocket.disconnect",
            "code": code,
            "reason": reason,
            "cause": cause,
        }
        self.queue.put_nowait(event)
