"""Async client of TorchServe's inference API for the backend's window inference.

One ``predict(window)`` call sends the enriched window (float32 [64, 469]) as raw little-endian
bytes to ``POST {base_url}/predictions/{model_name}`` and returns the parsed answer, or raises
``TorchServeError`` with a short machine-readable ``reason`` so that the caller can fall back to
the local pipeline and count the failure.

Why aiohttp: ``benchmarks/client_candidates.py`` measured the candidates from one process at
concurrency 32 (figures in ``benchmarks/results/client_candidates.json``); httpx stays far below
the 2,000 req/s the hot path needs (encode/httpx #3215), aiohttp clears it.

Behaviour:

- a per-call deadline of ``timeout_ms`` that covers every attempt;
- ONE retry inside that deadline on connection errors and HTTP 503 (TorchServe answers 503 for
  "queue full" and "no worker"), and one after an "invalid key" answer when re-reading the key
  file yields a different key (TorchServe rotates keys);
- a Bearer token: ``token``, or the ``inference`` key of TorchServe's ``key_file.json``, re-read
  when the file's mtime/size change or after an "invalid key" answer;
- a connection pool of ``max_connections`` created lazily inside the running event loop;
- a circuit breaker: after ``breaker_failures`` consecutive failed calls it stays open for
  ``breaker_cooldown_s`` (calls fail at once with reason ``circuit_open``), then lets ONE probe
  through; success closes it, failure opens it again.

The token is never logged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np

__all__ = [
    "CircuitBreaker",
    "KeySource",
    "TorchServeClient",
    "TorchServeError",
    "TorchServeResult",
]

log = logging.getLogger(__name__)

Reason = Literal[
    "refused", "timeout", "http_5xx", "http_4xx", "circuit_open", "bad_response", "auth"
]
CircuitState = Literal["closed", "open", "half_open"]

# The window contract (docs/ARCHITECTURE.md): SEQ_LEN x FEATURE_DIM float32, little-endian.
WINDOW_SHAPE = (64, 469)
_WIRE_DTYPE = np.dtype("<f4")
# TorchServe answers a missing, wrong or expired key with 400 InvalidKeyException (0.12); other
# front-ends use 401/403. Matched on the body so that a plain 400 (bad window) stays "http_4xx".
_AUTH_MARKERS = ("invalidkey", "token authorization", "unauthorized")
# A short pause before retrying a 503 gives a full queue a chance to drain; connection errors
# are retried at once (a stale keep-alive connection is the usual cause).
_RETRY_503_PAUSE_S = (0.005, 0.025)


class TorchServeError(Exception):
    """A failed inference call; ``reason`` is a short label for metrics and fallback logic.

    Reasons: ``refused`` (could not connect, or the connection dropped before an answer),
    ``timeout`` (deadline passed), ``http_5xx``, ``http_4xx``, ``auth`` (key missing, wrong or
    expired), ``bad_response`` (answer not the expected JSON), ``circuit_open`` (not attempted).
    """

    def __init__(self, reason: Reason, message: str = "", *, status: int | None = None) -> None:
        self.reason: str = reason
        self.status = status
        super().__init__(f"{reason}: {message}" if message else reason)


@dataclass(frozen=True)
class TorchServeResult:
    """One parsed TorchServe answer."""

    prediction: str
    confidence: float
    alternatives: list[dict]
    model_version: str
    batch_size: int


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open probe.

    ``clock`` is injectable for tests; it defaults to ``time.monotonic``.
    """

    def __init__(self, failures: int, cooldown_s: float, clock: Any = time.monotonic) -> None:
        if failures < 1:
            raise ValueError(f"breaker_failures must be >= 1, got {failures}")
        if cooldown_s < 0:
            raise ValueError(f"breaker_cooldown_s must be >= 0, got {cooldown_s}")
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        """``closed``, ``open`` (cooling down) or ``half_open`` (a probe may go / is going)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self._cooldown_s:
            return "open"
        return "half_open"

    def try_acquire(self) -> bool:
        """Whether a call may go out now; in half-open state only one probe at a time may."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        """A call succeeded: close the circuit."""
        if self._opened_at is not None:
            log.info("torchserve circuit closed")
        self._consecutive_failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        """A call failed: open the circuit at the threshold, or re-open it after a probe."""
        self._consecutive_failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self._consecutive_failures >= self._threshold:
            if self._opened_at is None or was_probe:
                log.warning(
                    "torchserve circuit open for %.2fs after %d consecutive failures",
                    self._cooldown_s,
                    self._consecutive_failures,
                )
            self._opened_at = self._clock()

    def release(self) -> None:
        """The call ended without an outcome (cancelled): free the probe slot."""
        self._probe_in_flight = False


class KeySource:
    """The Bearer token: a fixed one, or the ``inference`` key of TorchServe's key file.

    The file is re-read when its mtime or size changes, or on ``refresh()`` (after an "invalid
    key" answer). A missing or half-written file keeps the last good key.
    """

    def __init__(self, key_file: Path | None, token: str | None) -> None:
        self._token = token or None
        self._key_file = Path(key_file) if key_file is not None else None
        self._stamp: tuple[int, int] | None = None
        self._key: str | None = None

    def current(self) -> str | None:
        """The token to send now (None: send no Authorization header)."""
        if self._token is not None or self._key_file is None:
            return self._token
        try:
            st = os.stat(self._key_file)
        except OSError:
            return self._key
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._load(stamp)
        return self._key

    def refresh(self) -> bool:
        """Re-read the key file now; True when the key changed."""
        if self._token is not None or self._key_file is None:
            return False
        before = self._key
        try:
            st = os.stat(self._key_file)
        except OSError:
            return False
        self._load((st.st_mtime_ns, st.st_size))
        return self._key != before

    def _load(self, stamp: tuple[int, int]) -> None:
        assert self._key_file is not None
        try:
            data = json.loads(self._key_file.read_text(encoding="utf-8"))
            key = data["inference"]["key"]
            if not isinstance(key, str) or not key:
                raise ValueError("inference.key is not a non-empty string")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Not remembered as read: TorchServe may still be writing it, try again next call.
            log.warning("torchserve key file %s unusable (%s)", self._key_file, type(exc).__name__)
            return
        if self._key is not None and key != self._key:
            log.info("torchserve inference key rotated (re-read %s)", self._key_file)
        self._key = key
        self._stamp = stamp


class TorchServeClient:
    """Async TorchServe inference client with deadline, one retry and a circuit breaker.

    Use one instance per process (it owns a connection pool); call ``aclose()`` at shutdown.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str = "signflow",
        timeout_ms: int = 2000,
        key_file: Path | None = None,
        token: str | None = None,
        max_connections: int = 64,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 2.0,
    ) -> None:
        # Several comma-separated URLs = replicas: requests go round-robin, and the one retry
        # a failed attempt gets goes to the next replica.
        base_urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        if not base_urls or not all(u.startswith(("http://", "https://")) for u in base_urls):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if not model_name or "/" in model_name:
            raise ValueError(f"model_name must be a non-empty name without '/', got {model_name!r}")
        self.base_urls = base_urls
        self.base_url = base_urls[0]
        self.model_name = model_name
        self.timeout_ms = timeout_ms
        self.max_connections = max_connections
        self._urls = [f"{u}/predictions/{model_name}" for u in base_urls]
        self._url = self._urls[0]
        self._next_url = itertools.cycle(self._urls)
        self._keys = KeySource(key_file, token)
        self._breaker = CircuitBreaker(breaker_failures, breaker_cooldown_s)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # no token in reprs either
        return f"TorchServeClient(url={self._url!r}, timeout_ms={self.timeout_ms})"

    @property
    def circuit_state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return self._breaker.state

    async def predict(self, window: np.ndarray) -> TorchServeResult:
        """Classify one window (float32 [64, 469]) on TorchServe.

        Raises ``ValueError`` for a window of the wrong shape (a caller bug, not a server
        failure) and ``TorchServeError`` for every failure of the call itself.
        """
        body = encode_window(window)
        if not self._breaker.try_acquire():
            raise TorchServeError("circuit_open", "circuit breaker open, TorchServe not called")
        outcome: bool | None = None
        try:
            result = await self._call_with_deadline(body)
            outcome = True
            return result
        except TorchServeError as exc:
            # A 4xx other than auth is about this request, not TorchServe's health.
            outcome = exc.reason == "http_4xx"
            raise
        finally:
            if outcome is True:
                self._breaker.record_success()
            elif outcome is False:
                self._breaker.record_failure()
            else:
                self._breaker.release()

    async def aclose(self) -> None:
        """Close the connection pool (a later ``predict`` opens a new one)."""
        session, self._session, self._session_loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> TorchServeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # Created here, not in __init__: aiohttp binds the pool to the running loop.
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # the deadline is ours
                raise_for_status=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
            self._session_loop = loop
        return self._session

    async def _call_with_deadline(self, body: bytes) -> TorchServeResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_ms / 1000.0
        try:
            async with asyncio.timeout_at(deadline):
                return await self._attempts(body, deadline)
        except TimeoutError:
            raise TorchServeError("timeout", f"no answer within {self.timeout_ms} ms") from None

    async def _attempts(self, body: bytes, deadline: float) -> TorchServeResult:
        loop = asyncio.get_running_loop()
        retried = False
        while True:
            try:
                return await self._attempt(body)
            except TorchServeError as exc:
                if retried or loop.time() >= deadline:
                    raise
                if exc.reason == "refused":
                    pass
                elif exc.reason == "http_5xx" and exc.status == 503:
                    pause = random.uniform(*_RETRY_503_PAUSE_S)
                    await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
                elif exc.reason == "auth" and self._keys.refresh():
                    pass
                else:
                    raise
                retried = True

    async def _attempt(self, body: bytes) -> TorchServeResult:
        session = self._get_session()
        headers = {"Content-Type": "application/octet-stream"}
        token = self._keys.current()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = next(self._next_url)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                status = resp.status
                payload = await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise TorchServeError("refused", f"cannot connect to {url}") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Dropped before a full answer (server died, stale keep-alive connection).
            raise TorchServeError("refused", f"connection lost: {type(exc).__name__}") from exc
        except aiohttp.ClientResponseError as exc:  # malformed HTTP from the server
            raise TorchServeError("bad_response", f"malformed HTTP answer: {exc}") from exc
        if status == 200:
            return parse_answer(payload)
        raise _status_error(status, payload)


def encode_window(window: np.ndarray) -> bytes:
    """The wire body: C-contiguous float32 little-endian bytes of a [64, 469] window."""
    if not isinstance(window, np.ndarray):
        raise ValueError(f"window must be a numpy array, got {type(window).__name__}")
    if window.shape != WINDOW_SHAPE:
        raise ValueError(f"window must have shape {WINDOW_SHAPE}, got {window.shape}")
    return np.ascontiguousarray(window, dtype=_WIRE_DTYPE).tobytes()


def parse_answer(payload: bytes) -> TorchServeResult:
    """Parse TorchServe's JSON answer; ``TorchServeError("bad_response")`` names what is wrong."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TorchServeError("bad_response", f"answer is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TorchServeError("bad_response", f"answer is a {type(data).__name__}, not an object")
    try:
        prediction = data["prediction"]
        confidence = data["confidence"]
        alternatives = data["alternatives"]
        model_version = data["model_version"]
        batch_size = data["batch_size"]
    except KeyError as exc:
        raise TorchServeError("bad_response", f"answer lacks field {exc.args[0]!r}") from None
    checks = (
        ("prediction", isinstance(prediction, str)),
        ("confidence", isinstance(confidence, int | float) and not isinstance(confidence, bool)),
        ("alternatives", isinstance(alternatives, list)),
        ("model_version", isinstance(model_version, str | int | float)),
        ("batch_size", isinstance(batch_size, int) and not isinstance(batch_size, bool)),
    )
    for field, ok in checks:
        if not ok:
            raise TorchServeError("bad_response", f"answer field {field!r} has the wrong type")
    return TorchServeResult(
        prediction=prediction,
        confidence=float(confidence),
        alternatives=alternatives,
        model_version=str(model_version),
        batch_size=batch_size,
    )


def _status_error(status: int, payload: bytes) -> TorchServeError:
    text = payload[:512].decode("utf-8", errors="replace")
    lowered = text.lower().replace(" ", "")
    if status in (401, 403) or (
        status == 400 and any(m.replace(" ", "") in lowered for m in _AUTH_MARKERS)
    ):
        return TorchServeError("auth", f"HTTP {status}: key refused", status=status)
    # Keep the server's message short; it never contains our token.
    message = f"HTTP {status}: {text[:200]}"
    if status >= 500:
        return TorchServeError("http_5xx", message, status=status)
    return TorchServeError("http_4xx", message, status=status)
