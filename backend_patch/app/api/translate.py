"""``/api/v1/translate/stream``: landmarks in, one JSON reply per frame out.

Each session runs two tasks: the receiver validates and normalises every frame and advances the
state machine at once, starting the inference of a sign that just ended as a task; the sender
replies in frame order, awaiting that inference for the frame that ended the sign. So the
socket keeps being read while a window is classified, and replies still go out in order.
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
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket

from ..ml.feature_engineering import build_window
from ..ml.features import LandmarkError, normalize_landmarks
from ..ml.pipeline import Classification, SentenceBuilder, SessionState, SignSegmenter
from ..services import AppServices

router = APIRouter()

# Upgrade-response header naming the session's sticky route (its rollout cohort).
ROUTE_HEADER = "x-signflow-route"

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class FrameError(ValueError):
    """A frame message that cannot be used; ``code`` and ``message`` go into the error reply."""

    def __init__(self, code: str, message: str, frame_idx: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.frame_idx = code, message, frame_idx


def decode_frame(text: str) -> tuple[int, np.ndarray]:
    """Parse and validate one frame message -> (frame_idx, normalised landmarks float32[225]).

    Raises FrameError (``invalid_json`` or ``invalid_frame``, the message naming the field).
    Extra keys such as ``truth`` are ignored.
    """
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


class TranslationSession:
    """One WebSocket session: its state machine, sentence and in-order replies."""

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
        self._broken = False
        self.frames = 0
        self.errors = 0
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
        m.sessions_open.inc()
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
                m.sessions_open.dec()
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
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    message = await self.ws.receive()
            except TimeoutError:
                self._protocol_error("idle_timeout")
                return _End(1001, f"idle timeout: no message for {idle_s:g} s")
            if message["type"] == "websocket.disconnect":
                # The server protocol closed the connection itself (size limit, deadlines).
                cause = message.get("cause")
                if cause is None and message.get("code") == 1009:  # plain uvicorn's size limit
                    cause = "message_too_big"
                if cause is not None:
                    self._protocol_error(str(cause))
                return _End()
            received = time.perf_counter()
            text = message.get("text")
            if text is None:
                self._protocol_error("binary_message")
                return _End(1003, "binary messages are not accepted: send JSON text frames")
            # len() counts characters; only a long one needs the (costlier) byte count.
            if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
                self._protocol_error("message_too_big")
                return _End(1009, f"message over MAX_MESSAGE_BYTES={limit}")
            self.frames += 1
            self._frames_metric.inc()
            await self._queue.put(self._process(text, received))

    def _process(self, text: str, received: float) -> _Pending:
        """Validate, normalise and push one frame; start the inference of an ended sign."""
        try:
            idx, vector = decode_frame(text)
        except FrameError as exc:
            return _Pending(exc.frame_idx, received, error=(exc.code, exc.message))
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            # normalize_landmarks should only raise LandmarkError; keep the session alive anyway.
            self.svc.log.warning("frame_rejected", session=self.id, error=type(exc).__name__)
            return _Pending(None, received, error=("invalid_frame", f"invalid frame: {exc}"))
        step = self.segmenter.push(vector)
        task = None
        if step.sign is not None:
            task = asyncio.create_task(self._classify(step.sign))
        resting = step.state is SessionState.IDLE and not step.moving
        return _Pending(idx, received, step.state, resting, inference=task)

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
            if self._broken:
                if item.inference is not None:
                    item.inference.cancel()
                continue
            reply = await self._reply(item)
            try:
                await self.ws.send_text(_dumps(reply))
            except Exception:
                # The client went away; keep draining so the receiver never blocks on the queue.
                self._broken = True

    async def _reply(self, item: _Pending) -> dict[str, Any]:
        if item.error is not None:
            return self._error_reply(item.frame_idx, *item.error)
        result: Classification | None = None
        if item.inference is not None:
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
            resting=item.resting,
            prediction=result.prediction if result else None,
            confidence=result.confidence if result else 0.0,
        )
        state = item.state.value if item.state is not None else None
        latency_s = time.perf_counter() - item.received
        self._latency_metric.observe(latency_s)
        return {
            "frame_idx": item.frame_idx,
            "state": state,
            "prediction": result.prediction if result else None,
            "confidence": result.confidence if result else None,
            "alternatives": result.alternatives if result else [],
            "sentence_buffer": buffer,
            "is_sentence_complete": complete,
            "latency_ms": round(latency_s * 1000.0, 3),
            "served_by": result.served_by if result else None,
            "model_version": result.model_version if result else None,
        }

    def _error_reply(self, frame_idx: int | None, code: str, message: str) -> dict[str, Any]:
        self.errors += 1
        self.svc.metrics.errors.labels(self.route, code).inc()
        return {"frame_idx": frame_idx, "error": {"code": code, "message": message}}

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
