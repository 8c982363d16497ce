"""``/api/v1/translate/stream``: landmarks in, one JSON reply per frame out.

Each session runs two tasks: the receiver validates and normalises every frame and advances the
state machine at once, starting the inference of a sign that just ended as a task; the sender
replies in frame order, awaiting that inference for the frame that ended the sign. So the
socket keeps being read while a window is classified, and replies still go out in order. A
frame that needs no inference, with nothing queued ahead of it and a connection that can be
written without waiting, is answered by the receiver itself (no queue, no task hop: most
frames); otherwise it goes through the queue as every frame once did (see TranslationSession).
Under the backend's server protocol such a frame is also received directly, from the protocol's
data_received, without the ASGI receive queue and the receiver task's wake-up.
Bad input gets an error reply for that frame and the session goes on; only a binary message
(1003), one over MAX_MESSAGE_BYTES (1009) or a deadline closes the session: no message for
WS_IDLE_TIMEOUT_S (1001), a client that reads nothing for WS_SEND_TIMEOUT_S (1008, connection
aborted) or misses a keep-alive pong (1011); the last two are enforced by the server protocol
(server_protocols.py), which reports them here as ``websocket.disconnect`` with a ``cause``.

The window of an ended sign (resampling + enrichment, ~0.4 ms) is built in the app's window
thread, not on the event loop: when many sessions end signs at the same instant, the loop keeps
answering the other frames while the windows are built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
import numpy as np
from fastapi import APIRouter, WebSocket

from ..ml.feature_engineering import build_window
from ..ml.features import LandmarkError, normalize_landmarks, normalize_points
from ..ml.pipeline import Classification, SentenceBuilder, SessionState, SignSegmenter
from ..services import AppServices

router = APIRouter()

# Upgrade-response header naming the session's sticky route (its rollout cohort).
ROUTE_HEADER = "x-signflow-route"

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

# The scope extension through which the server protocol (server_protocols.py) lets the receive
# path write a reply at once (see DirectSend); absent under another server: every reply then
# goes through the sender.
DIRECT_SEND_EXTENSION = "signflow.direct_send"  # = server_protocols.DIRECT_SEND_EXTENSION

Point = tuple[float, float, float]


# gc=False: a decoded frame holds no reference cycles; the collector need not track it.
class _Hands(msgspec.Struct, gc=False):
    left: list[Point] | None = None
    right: list[Point] | None = None


class _Frame(msgspec.Struct, gc=False):
    """What a well-formed frame decodes into (unknown keys such as ``truth`` are skipped)."""

    frame_idx: int
    hands: _Hands
    pose: list[Point]


# A typed decoder checks the structure and the number types in C while it parses (bools and
# strings are refused, ints accepted as floats, as normalize_landmarks does); measured against
# json.loads + walking the lists and orjson.loads + the same walk: benchmarks/results/
# frame_decode.json.
_decode_typed = msgspec.json.Decoder(_Frame).decode
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)

# One reply of a frame without a classification, encoded from a template: only frame_idx, state,
# the sentence buffer, is_sentence_complete and latency_ms vary. The key order is the dict's.
_PLAIN_REPLY = (
    '{"frame_idx":%d,"state":"%s","prediction":null,"confidence":null,"alternatives":[],'
    '"sentence_buffer":%s,"is_sentence_complete":%s,"latency_ms":%r,"served_by":null,'
    '"model_version":null}'
)


class FrameError(ValueError):
    """A frame message that cannot be used; ``code`` and ``message`` go into the error reply."""

    def __init__(self, code: str, message: str, frame_idx: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.frame_idx = code, message, frame_idx


def decode_frame(text: str) -> tuple[int, np.ndarray]:
    """Parse and validate one frame message -> (frame_idx, normalised landmarks float32[225]).

    Raises FrameError (``invalid_json`` or ``invalid_frame``, the message naming the field).
    Extra keys such as ``truth`` are ignored.

    A well-formed frame takes the fast path (typed decode + one vectorised conversion); anything
    else, valid or not, takes the stdlib parse and the field-by-field checks, so every error
    (and its message) is exactly what those give.
    """
    try:
        typed = _decode_typed(text)
    except _DECODE_ERRORS:
        pass
    else:
        idx = typed.frame_idx
        if idx >= 0:
            hands = typed.hands
            vector = normalize_points(hands.left, hands.right, typed.pose)
            if vector is not None:
                return idx, vector
    return _decode_checked(text)


def _decode_checked(text: str) -> tuple[int, np.ndarray]:
    """decode_frame's slow path: stdlib JSON, then field-by-field validation."""
    try:
        frame = json.loads(text)
    except ValueError as exc:
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise FrameError(
            "invalid_json", f"invalid JSON: {getattr(exc, 'msg', exc)}{where}"
        ) from None
    except RecursionError:  # e.g. 100,000 nested brackets, well under the size limit
        raise FrameError("invalid_json", "invalid JSON: nested too deeply") from None
    if not isinstance(frame, dict):
        raise FrameError("invalid_frame", "a frame must be a JSON object")
    idx = frame.get("frame_idx")
    if type(idx) is not int or idx < 0:
        raise FrameError("invalid_frame", "frame_idx: must be a non-negative integer")
    try:
        return idx, normalize_landmarks(frame)
    except LandmarkError as exc:
        raise FrameError("invalid_frame", str(exc), idx) from None


def _too_big(text: str, limit: int) -> bool:
    """More than ``limit`` bytes in UTF-8: len() counts characters; only a long text needs the
    (costlier) byte count."""
    return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)


@dataclass(frozen=True)
class _Pending:
    """A received frame waiting for its reply (in order)."""

    frame_idx: int | None
    received: float
    state: SessionState | None = None
    resting: bool = False
    inference: asyncio.Task[Classification] | None = None
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class _End:
    """The receiver stopped: close with ``code`` after the pending replies, or just stop."""

    code: int | None = None
    reason: str = ""


class _IdleDeadline:
    """WS_IDLE_TIMEOUT_S over a loop of receives: no message for ``idle_s`` while waiting in
    ``receive()`` cancels the receiving task, as ``asyncio.timeout`` around each receive did,
    with one timer per idle period instead of one per message (re-armed lazily: when it fires
    early it re-arms itself for the current wait's deadline).

    ``arm()`` before each receive, ``disarm()`` after it; after a CancelledError, ``expired()``
    says whether this deadline caused it (and then consumes the cancellation).
    """

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task  # the receiving task
        self._since = 0.0
        self._waiting = False
        self._fired = False
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self._since = self._loop.time()
        self._waiting = True
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._idle_s, self._check)

    def disarm(self) -> None:
        self._waiting = False

    def expired(self) -> bool:
        """True when this deadline cancelled the task (and no one else did too)."""
        return self._fired and self.task.uncancel() == 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if not self._waiting:
            return  # busy, not idle: the next arm() starts a new deadline
        due = self._since + self._idle_s
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        self._fired = True
        self.task.cancel()


class DirectSend(Protocol):
    """What the server protocol offers for answering from the receive path (the
    ``signflow.direct_send`` scope extension, server_protocols.py)."""

    def ready(self) -> bool:
        """True when a text message can be written now without waiting (not paused, not
        closing): a False answer has no side effect."""
        ...

    def send_text(self, text: str) -> None:
        """Write one text message now (only after ``ready()``)."""
        ...

    def set_receiver(self, receiver: Callable[[str], bool] | None) -> None:
        """From now on, pass each text message with nothing queued ahead of it for
        ``receive()`` to ``receiver`` as it arrives (True: taken; False: queue it for
        ``receive()``, in order); None: stop."""
        ...


class TranslationSession:
    """One WebSocket session: its state machine, sentence and in-order replies.

    A frame that needs no inference is answered from the receive path when nothing is queued
    ahead of it and the connection can be written without waiting (the server protocol's
    :class:`DirectSend`); otherwise it goes through the queue to the sender, exactly as every
    frame did before: so order holds (nothing overtakes a queued reply), back-pressure holds
    (a paused writer sends everything through the queue, MAX_PENDING_FRAMES deep, and the
    receiver stops reading when it is full) and a slow reader meets the same deadlines.

    Under that server protocol, a frame with nothing queued ahead of it is also *received*
    directly: the protocol calls :meth:`_receive_direct` as the message is parsed, instead of
    queueing it for the receive loop's ``await receive()`` (one task switch and the ASGI
    wrappers per frame). A frame that would have to wait (anything queued: the inference of an
    ended sign, a paused writer) is declined and takes the receive loop, as before.
    """

    def __init__(self, websocket: WebSocket, services: AppServices) -> None:
        self.ws = websocket
        self.svc = services
        s = services.settings
        self.id = next(services.session_ids)
        self.use_torchserve = services.router.assign_session()
        self.segmenter = SignSegmenter(services.segmenter_config)
        self.sentence = SentenceBuilder(
            s.confidence_threshold, s.sentence_pause_frames, s.max_sentence_signs
        )
        self._queue: asyncio.Queue[_Pending | _End] = asyncio.Queue(s.max_pending_frames)
        # Frames put in the queue whose reply the sender has not written yet: the receive path
        # answers a frame itself only when this is 0.
        self._queued = 0
        self._broken = False
        extensions = websocket.scope.get("extensions") or {}
        self._direct: DirectSend | None = extensions.get(DIRECT_SEND_EXTENSION)
        # The sentence buffer of the last plain reply and its JSON (it changes once per sign).
        self._buffer: list[str] = []
        self._buffer_json = "[]"
        self.frames = 0
        self.errors = 0
        self._max_message_bytes = s.max_message_bytes
        self._idle: _IdleDeadline  # set when the receive loop starts
        # An exception from a frame taken by _receive_direct, raised by the receive loop.
        self._direct_failure: Exception | None = None
        # The cohort's series, bound once: a labels() lookup per frame would cost on the hot path.
        self._frames_metric = services.metrics.frames.labels(self.route)
        self._latency_metric = services.metrics.frame_latency.labels(self.route)

    @property
    def route(self) -> str:
        """The path this session's windows take first."""
        return "torchserve" if self.use_torchserve else "local"

    async def run(self) -> None:
        """Serve the session until the client leaves or a protocol violation closes it."""
        m, log = self.svc.metrics, self.svc.log
        m.sessions_open.labels(self.route).inc()
        m.sessions.labels(self.route).inc()
        log.info("session_open", session=self.id, route=self.route)
        sender = asyncio.create_task(self._send_loop(), name=f"signflow-send-{self.id}")
        end = _End()
        try:
            end = await self._receive_loop()
        finally:
            try:
                await self._queue.put(end)
                await sender
            finally:
                if not sender.done():  # cancelled while flushing (server shutdown)
                    sender.cancel()
                m.sessions_open.labels(self.route).dec()
                log.info(
                    "session_closed",
                    session=self.id,
                    frames=self.frames,
                    errors=self.errors,
                    close_code=end.code,
                )

    async def _receive_loop(self) -> _End:
        limit = self.svc.settings.max_message_bytes
        idle_s = self.svc.settings.ws_idle_timeout_s
        receive = self.ws.receive
        queue = self._queue
        frames_metric = self._frames_metric
        perf_counter = time.perf_counter
        idle = self._idle = _IdleDeadline(idle_s)
        direct = self._direct
        if direct is not None:
            direct.set_receiver(self._receive_direct)
        try:
            while True:
                idle.arm()
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    failure = self._direct_failure
                    if failure is not None and idle.task.uncancel() == 0:
                        raise failure from None  # as if it had been raised here
                    if not idle.expired():
                        raise
                    self._protocol_error("idle_timeout")
                    return _End(1001, f"idle timeout: no message for {idle_s:g} s")
                finally:
                    idle.disarm()
                if message["type"] == "websocket.disconnect":
                    # The server protocol closed the connection itself (size limit, deadlines).
                    cause = message.get("cause")
                    if cause is None and message.get("code") == 1009:  # plain uvicorn's limit
                        cause = "message_too_big"
                    if cause is not None:
                        self._protocol_error(str(cause))
                    return _End()
                received = perf_counter()
                text = message.get("text")
                if text is None:
                    self._protocol_error("binary_message")
                    return _End(1003, "binary messages are not accepted: send JSON text frames")
                if _too_big(text, limit):
                    self._protocol_error("message_too_big")
                    return _End(1009, f"message over MAX_MESSAGE_BYTES={limit}")
                self.frames += 1
                frames_metric.inc()
                pending = self._process(text, received)
                if pending is not None:
                    self._queued += 1
                    await queue.put(pending)
        finally:
            if direct is not None:
                direct.set_receiver(None)
            idle.close()

    def _receive_direct(self, text: str) -> bool:
        """A text message straight from the server protocol (see the class doc): handled here,
        exactly as the receive loop would, when nothing is queued ahead of it; else False (the
        receive loop takes it). Runs inside the protocol's data_received: never waits."""
        if self._queued or self._direct_failure is not None:
            return False
        if _too_big(text, self._max_message_bytes):
            return False  # the receive loop closes the session (1009)
        received = time.perf_counter()
        self._idle.arm()  # a message: the idle deadline starts again
        self.frames += 1
        self._frames_metric.inc()
        try:
            pending = self._process(text, received)
        except Exception as exc:
            # Raised in the receive loop instead, as a frame received there would have: the
            # session ends and the server logs the exception.
            self._direct_failure = exc
            self._idle.task.cancel()
            return True
        if pending is not None:
            # Room: nothing was queued (so put_nowait cannot fail); the sender answers it.
            self._queued += 1
            self._queue.put_nowait(pending)
        return True

    def _process(self, text: str, received: float) -> _Pending | None:
        """Validate, normalise and push one frame; start the inference of an ended sign.

        Returns None when the frame was answered here, else the item the sender answers.
        """
        try:
            idx, vector = decode_frame(text)
        except FrameError as exc:
            return self._answer_error(exc.frame_idx, received, error=(exc.code, exc.message))
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            # normalize_landmarks should only raise LandmarkError; keep the session alive anyway.
            self.svc.log.warning("frame_rejected", session=self.id, error=type(exc).__name__)
            return self._answer_error(
                None, received, error=("invalid_frame", f"invalid frame: {exc}")
            )
        step = self.segmenter.push(vector)
        resting = step.state is SessionState.IDLE and not step.moving
        if step.sign is not None:
            task = asyncio.create_task(self._classify(step.sign))
            return _Pending(idx, received, step.state, resting, inference=task)
        if not self._can_answer_now():
            return _Pending(idx, received, step.state, resting)
        self._send_direct(self._plain_reply(idx, step.state, resting, received))
        return None

    def _answer_error(
        self, frame_idx: int | None, received: float, *, error: tuple[str, str]
    ) -> _Pending | None:
        if not self._can_answer_now():
            return _Pending(frame_idx, received, error=error)
        self._send_direct(self._error_reply(frame_idx, *error))
        return None

    def _can_answer_now(self) -> bool:
        """Nothing queued ahead, the client not gone, and a write that would not wait."""
        direct = self._direct
        return self._queued == 0 and not self._broken and direct is not None and direct.ready()

    def _send_direct(self, reply: str) -> None:
        try:
            self._direct.send_text(reply)  # type: ignore[union-attr]  # _can_answer_now() said so
        except Exception:
            # The client went away, as in the sender: later frames go to the queue and are
            # dropped there.
            self._broken = True

    async def _classify(self, sign: np.ndarray) -> Classification:
        """Build the window of ``sign`` [T, 225] off the event loop, then classify it."""
        loop = asyncio.get_running_loop()
        window = await loop.run_in_executor(self.svc.window_pool, build_window, sign)
        result: Classification = await self.svc.router.classify(
            window, use_torchserve=self.use_torchserve, session=self.id
        )
        return result

    async def _send_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                if item.code is not None and not self._broken:
                    with contextlib.suppress(Exception):  # the client may be gone already
                        await self.ws.close(code=item.code, reason=item.reason)
                return
            try:
                if self._broken:
                    if item.inference is not None:
                        item.inference.cancel()
                    continue
                reply = await self._reply(item)
                try:
                    await self.ws.send_text(reply)
                except Exception:
                    # The client went away; keep draining so the receiver never blocks on the
                    # queue.
                    self._broken = True
            finally:
                self._queued -= 1

    async def _reply(self, item: _Pending) -> str:
        if item.error is not None:
            return self._error_reply(item.frame_idx, *item.error)
        if item.inference is None:
            return self._plain_reply(item.frame_idx, item.state, item.resting, item.received)
        try:
            result = await item.inference
        except Exception as exc:
            self.svc.log.error(
                "inference_failed", session=self.id, error=type(exc).__name__, exc_info=True
            )
            return self._error_reply(
                item.frame_idx, "inference_failed", "the sign could not be classified"
            )
        buffer, complete = self.sentence.update(
            resting=item.resting, prediction=result.prediction, confidence=result.confidence
        )
        state = item.state.value if item.state is not None else None
        latency_s = time.perf_counter() - item.received
        self._latency_metric.observe(latency_s)
        return _dumps(
            {
                "frame_idx": item.frame_idx,
                "state": state,
                "prediction": result.prediction,
                "confidence": result.confidence,
                "alternatives": result.alternatives,
                "sentence_buffer": buffer,
                "is_sentence_complete": complete,
                "latency_ms": round(latency_s * 1000.0, 3),
                "served_by": result.served_by,
                "model_version": result.model_version,
            }
        )

    def _plain_reply(
        self, frame_idx: int | None, state: SessionState | None, resting: bool, received: float
    ) -> str:
        """The reply of a frame without a classification, encoded once from the template."""
        buffer, complete = self.sentence.update(resting=resting)
        if buffer != self._buffer:
            self._buffer, self._buffer_json = buffer, _dumps(buffer)
        latency_s = time.perf_counter() - received
        self._latency_metric.observe(latency_s)
        assert frame_idx is not None and state is not None  # a decoded frame has both
        return _PLAIN_REPLY % (
            frame_idx,
            state.value,
            self._buffer_json,
            "true" if complete else "false",
            round(latency_s * 1000.0, 3),
        )

    def _error_reply(self, frame_idx: int | None, code: str, message: str) -> str:
        self.errors += 1
        self.svc.metrics.errors.labels(self.route, code).inc()
        return _dumps({"frame_idx": frame_idx, "error": {"code": code, "message": message}})

    def _protocol_error(self, reason: str) -> None:
        self.errors += 1
        self.svc.metrics.errors.labels(self.route, reason).inc()
        self.svc.log.warning("session_protocol_error", session=self.id, reason=reason)


@router.websocket("/api/v1/translate/stream")
async def translate_stream(websocket: WebSocket) -> None:
    """Stream landmark frames in, get one JSON reply per frame (see docs/ARCHITECTURE.md)."""
    # The session's route is decided before the handshake completes, so the client learns its
    # cohort from the upgrade response (x-signflow-route: torchserve|local): a load harness
    # comparing cohorts cannot infer it from served_by, which hedging and fallback blur.
    session = TranslationSession(websocket, websocket.app.state.services)
    await websocket.accept(headers=[(ROUTE_HEADER.encode(), session.route.encode())])
    await session.run()
