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

One more is an extension for speed, not a fix: **direct send and receive** (:class:`DirectSend`,
the ``signflow.direct_send`` scope extension). An app may write a text message without the
ASGI send's await when the write would not wait, and take text messages as they are parsed
instead of through the ASGI queue and a task switch (per message: a queue put and get, a task
wake-up, the middleware's receive wrappers, a pause and resume of reading). The ASGI path stays
for everything else, and for any message the app declines.

The overrides use uvicorn internals (``queue``, ``close_sent``, ``close_timer``, ``read_paused``,
``frames``, ``curr_msg_data_type``, ``send_receive_event_to_app``,
``handle_parser_exception``) as of uvicorn 0.54 (pinned in requirements.lock);
tests/backend/test_backend_deadlines.py fails if a new uvicorn changes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["Deadlines", "DirectSend", "SignflowHttpProtocol", "SignflowWebSocketProtocol"]

# Scope extension naming this connection's DirectSend (the app's translate.py reads it).
DIRECT_SEND_EXTENSION = "signflow.direct_send"

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
        self._receiver: Callable[[str], bool] | None = None

    # -- direct send and receive ---------------------------------------------------------------

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the upgrade was refused
        if scope is not None:
            scope.setdefault("extensions", {})[DIRECT_SEND_EXTENSION] = DirectSend(self)

    def send_receive_event_to_app(self) -> None:
        """Hand a complete message to the app's receiver (DirectSend.set_receiver) when one is
        set, the message is text and nothing is queued ahead of it; else queue it as uvicorn
        does (the app's ``receive()`` gets it, reading pauses until then)."""
        receiver = self._receiver
        if (
            receiver is None
            or self.curr_msg_data_type != "text"
            or self.close_sent
            or not self.queue.empty()
        ):
            super().send_receive_event_to_app()
            return
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            super().send_receive_event_to_app()  # uvicorn's path: close 1007
            return
        self.frames = []
        if receiver(text):
            return
        # Declined: the app's receive() takes it, in order, as any message.
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

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


class DirectSend:
    """Write a text message from the app without the ASGI send's await, when it would not wait;
    take text messages as they are parsed, without the ASGI receive's queue and task switch.

    uvicorn's ``send`` first awaits the transport being writable; when it is, the rest is
    synchronous (encode the frame, ``transport.write``). ``ready()`` is that test (plus: the
    handshake done, no close sent, not disconnected), without side effects, so an app can
    answer from its receive path and fall back to the ordinary (awaited) send otherwise.
    ``send_text`` does what uvicorn's ``send`` does for a ``websocket.send`` with text.

    ``set_receiver(f)``: from then on each text message that has nothing queued ahead of it
    for the app's ``receive()`` is passed to ``f(text)`` from the protocol's ``data_received``
    instead; ``f`` returns True when it took the message, False to have it queued for
    ``receive()`` as usual (then later messages queue behind it: order holds). Everything
    else (binary messages, disconnects, messages after a close) always goes through
    ``receive()``. ``set_receiver(None)`` stops it.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: SignflowWebSocketProtocol) -> None:
        self._protocol = protocol

    def ready(self) -> bool:
        """True when a send now would not wait and would be written."""
        p = self._protocol
        return (
            p.writable.is_set()
            and p.handshake_complete
            and p.initial_response is None
            and not (p.close_sent or p.disconnected)
        )

    def send_text(self, text: str) -> None:
        """Write one text message (only after ``ready()``); raises if the connection failed."""
        p = self._protocol
        p.conn.send_text(text.encode())
        p.transport.write(b"".join(p.conn.data_to_send()))

    def set_receiver(self, receiver: Callable[[str], bool] | None) -> None:
        """Take text messages in ``receiver`` as they arrive (see the class doc); None: stop."""
        self._protocol._receiver = receiver
