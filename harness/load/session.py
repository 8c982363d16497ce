"""One load session: a WebSocket connection streaming its trace on a fixed schedule.

Open loop: frame k is due at ``start + k / fps`` whatever the server does; the process's one
send scheduler (harness.load.scheduler) sends it then and never waits for replies, and a
separate receiver matches each reply to its frame by ``frame_idx``.
Per-frame data lives in numpy arrays preallocated from the known frame count (no Python object
per frame). The client is aiohttp's (measured cheaper per frame than ``websockets``, see
benchmarks/ws_client_candidates.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import msgspec
import numpy as np

from harness.load.trace import PreparedTrace

NONE_CODE = -1
# Userspace send buffer per session: large, so a server that stops reading for a while does not
# hold the sender back (open loop); bounded, so a dead server cannot eat all memory. A frame that
# would not fit is not sent (counted in ``unsent``): the sender never waits for the server.
SEND_BUFFER_BYTES = 1 << 20
# The deadline of one send made while data is still buffered (the only case in which aiohttp can
# wait): with the buffer check a send does not wait at all; this bounds it should the client
# library ever block anyway (then the frame counts as unsent too).
SEND_DEADLINE_S = 0.5
# How long the end-of-run close handshake may take before the connection is aborted.
CLOSE_TIMEOUT_S = 1.0
# Session.send_due's answer when its next frame needs a send that may wait.
WAIT = -1.0


class Session:
    """State and tasks of one session; the generator owns the label table behind ``intern``."""

    def __init__(
        self,
        index: int,
        start_t: float,
        n_frames: int,
        fps: float,
        trace: PreparedTrace,
        intern: Callable[[str], int],
        now: Callable[[], float],
    ) -> None:
        self.index = index
        self.start_t = start_t
        self.n = n_frames
        self.fps = fps
        self.trace = trace
        self._intern = intern
        self._now = now
        self.t_scheduled = start_t + np.arange(n_frames, dtype=np.float64) / fps
        self.t_sent = np.full(n_frames, np.nan)
        self.t_reply = np.full(n_frames, np.nan)
        self.served_by = np.full(n_frames, NONE_CODE, dtype=np.int16)
        self.model_version = np.full(n_frames, NONE_CODE, dtype=np.int16)
        self.prediction = np.full(n_frames, NONE_CODE, dtype=np.int16)
        self.error_code = np.full(n_frames, NONE_CODE, dtype=np.int16)
        self.truth = self._truth_codes()
        self.sent = 0
        self.answered = 0
        self.unmatched_replies = 0
        self.disconnected = False
        self.connect_failed = False
        self.send_failures = 0
        # Frames not sent because the server had not read what was already sent (the send
        # buffer was full, or a send hit SEND_DEADLINE_S), and when that first happened.
        self.unsent = 0
        self.first_unsent_t: float | None = None
        self.last_reply_t: float | None = None
        self.closing = False
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        # Lifetime on the run clock (s): connect asked/done, close asked/done; the rollout
        # cohort the backend assigned (its x-signflow-route upgrade header), None if unknown.
        self.connect_started: float | None = None
        self.connected_at: float | None = None
        self.close_started: float | None = None
        self.closed_at: float | None = None
        self.cohort: str | None = None
        self.ended = False  # closed by the harness after its planned length
        self.done_sending = asyncio.Event()
        self.all_answered = asyncio.Event()
        # Sending state (begin_sending): the next frame to send, the buffer probe, the period.
        self._next = 0
        self._buffered: Callable[[], int] = lambda: 0
        self._period = 1.0 / fps

    def _truth_codes(self) -> np.ndarray:
        n_trace = len(self.trace)
        first = np.asarray(self.trace.truth_first, dtype=np.int16)
        loop = np.asarray(self.trace.truth_loop, dtype=np.int16)
        reps = max(math.ceil(self.n / n_trace) - 1, 0)
        codes = np.concatenate([first, *([loop] * reps)]) if reps else first
        return codes[: self.n].copy()

    async def connect(self, http: aiohttp.ClientSession, url: str, timeout_s: float) -> bool:
        """Open the WebSocket; on failure the session's frames all count as lost."""
        self.connect_started = self._now()
        try:
            self.ws = await http.ws_connect(
                url,
                compress=0,  # per-message deflate would cost the generator more than the frame
                max_msg_size=1 << 22,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                heartbeat=None,
            )
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.connect_failed = True
            self.done_sending.set()
            self.all_answered.set()
            return False
        self.connected_at = self._now()
        self.cohort = _route_header(self.ws)
        _raise_send_buffer(self.ws)
        return True

    def cohort_or_evidence(self, code_of: Callable[[str], int | None]) -> str | None:
        """The session's cohort: the backend's route header, else what its replies show.

        Without the header (an older backend), a session with any reply served by TorchServe
        is in the TorchServe cohort (an old-pipeline session never reaches TorchServe); one with
        only local inference replies is counted "local", which a TorchServe-cohort session whose
        every window fell back would also show: hence the header.
        """
        if self.cohort is not None:
            return self.cohort
        ts, local = code_of("torchserve"), code_of("local")
        served = self.served_by[: self.sent]
        if ts is not None and np.any(served == ts):
            return "torchserve"
        if local is not None and np.any(served == local):
            return "local"
        return None

    # --- sending: the process's SendScheduler (harness.load.scheduler) calls these ---------
    def begin_sending(self) -> float | None:
        """Ready the session for the scheduler; its first frame's due time (None: none)."""
        ws = self.ws
        if ws is None or self.n == 0 or self.disconnected:
            self.finish_sending()
            return None
        self._next = 0
        self._buffered = _buffer_size_fn(ws)
        self._period = 1.0 / self.fps
        return self.start_t

    async def send_due(self, t: float) -> float | None:
        """Send every frame due by ``t`` (run clock) that can go without waiting.

        Returns the next frame's due time; None when the session is done sending
        (``done_sending`` set); :data:`WAIT` when the next due frame needs a send that may wait
        (data still buffered): the scheduler hands it to :meth:`send_waiting` in a task of its
        own, so one slow connection never holds the others. Never waits itself: a send on an
        empty buffer of a frame that fits cannot wait (see SEND_BUFFER_BYTES).
        """
        ws = self.ws
        assert ws is not None
        now = self._now
        prefixes = self.trace.prefixes
        t_sent = self.t_sent
        k = self._next
        due = self.start_t + k * self._period
        while due <= t:
            if self.disconnected:
                break
            text = prefixes[k % len(prefixes)] + str(k) + "}"
            backlog = self._buffered()
            if backlog + len(text) > SEND_BUFFER_BYTES:
                self._skip(now())  # the server stopped reading: keep the schedule
            elif backlog:
                self._next = k
                return WAIT
            else:
                t_sent[k] = now()
                try:
                    await ws.send_str(text)
                except (ConnectionError, aiohttp.ClientError, RuntimeError):
                    t_sent[k] = np.nan
                    self.send_failures += 1
                    self._mark_disconnected()
                    break
                self.sent += 1
            k += 1
            if k >= self.n:
                break
            due = self.start_t + k * self._period
        self._next = k
        if k >= self.n or self.disconnected:
            self.finish_sending()
            return None
        return due

    async def send_waiting(self) -> float | None:
        """Send the next frame while data is still buffered (the only case in which aiohttp
        can wait), bounded by SEND_DEADLINE_S; then as :meth:`send_due`: the next due time or
        None when done."""
        ws = self.ws
        assert ws is not None
        k = self._next
        text = self.trace.prefixes[k % len(self.trace.prefixes)] + str(k) + "}"
        self.t_sent[k] = self._now()
        try:
            async with asyncio.timeout(SEND_DEADLINE_S):
                await ws.send_str(text)
        except TimeoutError:
            self.t_sent[k] = np.nan
            self._skip(self._now())
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            self.t_sent[k] = np.nan
            self.send_failures += 1
            self._mark_disconnected()
        else:
            self.sent += 1
        self._next = k + 1
        if self._next >= self.n or self.disconnected:
            self.finish_sending()
            return None
        return self.start_t + self._next * self._period

    def finish_sending(self) -> None:
        """No more frames will be sent (all done, disconnected or the run cut)."""
        self.done_sending.set()
        if self.answered >= self.sent:
            self.all_answered.set()

    def _skip(self, t: float) -> None:
        self.unsent += 1
        if self.first_unsent_t is None:
            self.first_unsent_t = t

    async def receive_loop(self) -> None:
        """Match each reply to its frame by ``frame_idx``; record time, tags and errors."""
        ws = self.ws
        if ws is None:
            return
        now = self._now
        decode = _decode_reply
        intern = self._intern
        t_reply = self.t_reply
        n = self.n
        try:
            async for msg in ws:
                t = now()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    if msg.type is aiohttp.WSMsgType.ERROR:
                        break
                    continue
                try:
                    reply = decode(msg.data)
                except msgspec.DecodeError:  # not JSON, or not an object
                    self.unmatched_replies += 1
                    continue
                idx = reply.frame_idx
                if type(idx) is not int or not 0 <= idx < n or t_reply[idx] == t_reply[idx]:
                    self.unmatched_replies += 1  # missing, unknown, out of range or duplicate
                    continue
                t_reply[idx] = t
                self.last_reply_t = t
                served = reply.served_by
                if served is not None:
                    self.served_by[idx] = intern(str(served))
                    version = reply.model_version
                    if version is not None:
                        self.model_version[idx] = intern(str(version))
                    pred = reply.prediction
                    if pred is not None:
                        self.prediction[idx] = intern(str(pred))
                err = reply.error
                if err:
                    code = err.get("code") if isinstance(err, dict) else None
                    self.error_code[idx] = intern(str(code or "error"))
                self.answered += 1
                if self.answered >= self.sent and self.done_sending.is_set():
                    self.all_answered.set()
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        if not self.closing:
            self._mark_disconnected()

    def _mark_disconnected(self) -> None:
        if not self.disconnected and not self.closing:
            self.disconnected = True
        # Nothing more will come: let the drain stop waiting for this session.
        self.all_answered.set()

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close the connection (the generator's end of run, not a disconnect).

        Bounded: a server that stopped reading never answers the close handshake, so after
        ``timeout_s`` the connection is aborted (buffered data dropped).
        """
        self.closing = True
        ws = self.ws
        if ws is None or ws.closed:
            return
        self.close_started = self._now()
        with contextlib.suppress(TimeoutError, ConnectionError, aiohttp.ClientError):
            await asyncio.wait_for(ws.close(), timeout_s)
        transport = _transport(ws)
        if transport is not None and not transport.is_closing():
            transport.abort()
        self.closed_at = self._now()


ROUTE_HEADER = "x-signflow-route"


class _Reply(msgspec.Struct):
    """The fields of a backend reply the generator records (any JSON type: checked on use);
    the others are skipped while parsing."""

    frame_idx: Any = None
    served_by: Any = None
    model_version: Any = None
    prediction: Any = None
    error: Any = None


# ~4x cheaper per reply than json.loads into a dict (it runs for every frame of the run).
_decode_reply = msgspec.json.Decoder(_Reply).decode


def _route_header(ws: aiohttp.ClientWebSocketResponse) -> str | None:
    """The backend's x-signflow-route upgrade header (its sticky route), None when absent."""
    response = getattr(ws, "_response", None)  # aiohttp keeps the upgrade response here
    headers = getattr(response, "headers", None)
    value = headers.get(ROUTE_HEADER) if headers is not None else None
    return value if value in ("torchserve", "local") else None


def _transport(ws: aiohttp.ClientWebSocketResponse) -> asyncio.WriteTransport | None:
    """The connection's transport (asyncio's or uvloop's), None once aiohttp dropped it.

    aiohttp keeps it on a private writer, so it is read by name and typed here; the callers
    still check each optional method before using it."""
    writer = getattr(ws, "_writer", None)
    return cast("asyncio.WriteTransport | None", getattr(writer, "transport", None))


def _raise_send_buffer(ws: aiohttp.ClientWebSocketResponse) -> None:
    # aiohttp waits for drain once its transport pauses (64 KiB by default); raising the
    # transport's high-water mark keeps sends from blocking while a server stalls briefly.
    transport = _transport(ws)
    if transport is not None and hasattr(transport, "set_write_buffer_limits"):
        transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)


def _buffer_size_fn(ws: aiohttp.ClientWebSocketResponse) -> Callable[[], int]:
    """Bytes waiting in the connection's userspace send buffer (0 when it cannot be read)."""
    transport = _transport(ws)
    size = getattr(transport, "get_write_buffer_size", None)
    return size if callable(size) else (lambda: 0)
