"""Async client of TorchServe's inference API for the backend's window inference.

One ``predict(window)`` call sends the enriched window (float32 [64, 469]) as raw little-endian
bytes to ``POST {base_url}/predictions/{model_name}`` and returns the parsed answer, or raises
``TorchServeError`` with a short machine-readable ``reason`` so that the caller can fall back to
the local pipeline and count the failure.

Why aiohttp: ``benchmarks/client_candidates.py`` measured the candidates from one process at
concurrency 32 (figures in ``benchmarks/results/client_candidates.json``); httpx stays far below
the 2,000 req/s the hot path needs (encode/httpx #3215), aiohttp clears it.

Behaviour:

- a per-call deadline of ``timeout_ms`` that covers every attempt, and a much shorter
  ``connect_timeout_ms`` for opening a connection (a killed container blackholes SYNs: without
  it every new connection would wait out the whole deadline);
- ONE retry inside that deadline on connection errors, connect timeouts and the 5xx answers of
  a TorchServe that is reloading or overloaded (503 "queue full"/"no worker", 500/507
  "Worker died.", 502/504 of a proxy): the retry lands on the new default version or the next
  replica; and one after an "invalid key" answer once a fresh key is at hand (re-read or renewed);
- a Bearer token: ``token``, or the ``inference`` key of TorchServe's ``key_file.json`` (see
  :class:`KeySource`), renewed through TorchServe's token API before it expires;
- ``describe_model()``: what the default version runs with (``maxBatchDelay``, ``batchSize``),
  read from the management API with the file's ``management`` key (renewed likewise);
- a connection pool of ``max_connections`` created lazily inside the running event loop;
- a circuit breaker (:class:`CircuitBreaker`): ``breaker_failures`` consecutive failures open
  it: failed calls at once, hedges the local engine won (``record_hedge_loss``) once their
  streak spans ``breaker_window_s`` (answers slower than the caller's bar do not end a streak);
  open, it stays so for ``breaker_cooldown_s`` (calls fail at once with reason
  ``circuit_open``), then turns half-open. With
  ``shadow_probes`` (the default) user calls stay refused while half-open and the caller sends
  copies of real windows through ``probe()``; ``probe_successes`` consecutive probes answered
  within the caller's bar close the circuit, a failed probe opens it again. Without
  ``shadow_probes`` the first user call after the cool-down is the probe (the old behaviour).
  Every outcome counts in the circuit epoch its call was sent in (``breaker.py``): a call sent
  before the circuit's last change neither re-opens, prolongs nor closes it.

The breaker lives in ``breaker.py``, the key file and Bearer tokens in ``keys.py``.

The token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np

from .breaker import Call, CircuitBreaker, CircuitState
from .hedging import CallVerdict
from .keys import KeySource, parse_instant

__all__ = [
    "Call",
    "CallVerdict",
    "CircuitBreaker",
    "CircuitState",
    "KeySource",
    "ServedModel",
    "TorchServeClient",
    "TorchServeError",
    "TorchServeResult",
    "parse_instant",
]

log = logging.getLogger(__name__)

Reason = Literal[
    "refused",
    "connect_timeout",
    "timeout",
    "http_5xx",
    "http_4xx",
    "circuit_open",
    "bad_response",
    "auth",
]
ProbeOutcome = Literal["fast", "slow", "failed", "skipped"]

# The window contract (docs/ARCHITECTURE.md): SEQ_LEN x FEATURE_DIM float32, little-endian.
WINDOW_SHAPE = (64, 469)
_WIRE_DTYPE = np.dtype("<f4")
# TorchServe answers a missing, wrong or expired key with 400 InvalidKeyException (0.12); other
# front-ends use 401/403. Matched on the body so that a plain 400 (bad window) stays "http_4xx".
_AUTH_MARKERS = ("invalidkey", "token authorization", "unauthorized")
# A short pause before retrying a 503 gives a full queue a chance to drain; connection errors
# are retried at once (a stale keep-alive connection is the usual cause).
_RETRY_503_PAUSE_S = (0.005, 0.025)
# 5xx answers worth one retry: 503 (queue full, no worker), 500/507 ("Worker died." while a
# version is unregistered or a worker crashes: the retry goes to the new default or a restarted
# worker), 502/504 (a proxy in front of a restarting TorchServe). 501/505 would fail again.
_RETRYABLE_5XX = frozenset({500, 502, 503, 504, 507})
# Bound of one management call (describe): off the user's path, so generous.
_MANAGEMENT_TIMEOUT_S = 5.0


class TorchServeError(Exception):
    """A failed inference call; ``reason`` is a short label for metrics and fallback logic.

    Reasons: ``refused`` (could not connect, or the connection dropped before an answer),
    ``connect_timeout`` (no connection within the connect timeout: a blackholed host),
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
    alternatives: list[dict[str, Any]]
    model_version: str
    batch_size: int


@dataclass(frozen=True)
class ServedModel:
    """What TorchServe's management API says the default version runs with.

    ``max_batch_delay_s``: ``maxBatchDelay`` in seconds; ``response_timeout_s``: TorchServe's
    ``responseTimeout`` (None when it does not report it); ``ready_workers`` of ``workers``.
    """

    version: str
    batch_size: int
    max_batch_delay_s: float
    response_timeout_s: float | None
    workers: int
    ready_workers: int


class TorchServeClient:
    """Async TorchServe inference client with deadlines, one retry and a circuit breaker.

    Use one instance per process (it owns a connection pool); call ``aclose()`` at shutdown.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str = "signflow",
        timeout_ms: int = 2000,
        connect_timeout_ms: int = 150,
        key_file: Path | None = None,
        token: str | None = None,
        management_url: str | None = None,
        key_renew_before_s: float = 20.0,
        max_connections: int = 64,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 2.0,
        breaker_window_s: float = 0.25,
        shadow_probes: bool = True,
        probe_successes: int = 2,
    ) -> None:
        # Several comma-separated URLs = replicas: requests go round-robin, and the one retry
        # a failed attempt gets goes to the next replica.
        base_urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        if not base_urls or not all(u.startswith(("http://", "https://")) for u in base_urls):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms}")
        if connect_timeout_ms <= 0:
            raise ValueError(f"connect_timeout_ms must be > 0, got {connect_timeout_ms}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if not model_name or "/" in model_name:
            raise ValueError(f"model_name must be a non-empty name without '/', got {model_name!r}")
        if management_url is not None and not management_url.startswith(("http://", "https://")):
            raise ValueError(
                f"management_url must start with http:// or https://, got {management_url!r}"
            )
        self.base_urls = base_urls
        self.base_url = base_urls[0]
        self.model_name = model_name
        self.timeout_ms = timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.max_connections = max_connections
        self.shadow_probes = shadow_probes
        self._urls = [f"{u}/predictions/{model_name}" for u in base_urls]
        self._url = self._urls[0]
        self._next_url = itertools.cycle(self._urls)
        self.management_url = management_url.rstrip("/") if management_url else None
        self._keys = KeySource(
            key_file, token, management_url=management_url, renew_before_s=key_renew_before_s
        )
        # The management API has its own key in the same file, expiring and renewed likewise.
        self._management_keys = KeySource(
            key_file,
            None,
            management_url=management_url,
            renew_before_s=key_renew_before_s,
            kind="management",
        )
        if probe_successes < 1:
            raise ValueError(f"probe_successes must be >= 1, got {probe_successes}")
        # Without shadow probes a user call is the probe: one success closes, as before.
        self._breaker = CircuitBreaker(
            breaker_failures,
            breaker_cooldown_s,
            probe_successes=probe_successes if shadow_probes else 1,
            window_s=breaker_window_s,
        )
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._renewal: asyncio.Task[bool] | None = None
        self._reach_check: asyncio.Task[None] | None = None

    def __repr__(self) -> str:  # no token in reprs either
        return f"TorchServeClient(url={self._url!r}, timeout_ms={self.timeout_ms})"

    @property
    def circuit_state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return self._breaker.state

    @property
    def keys(self) -> KeySource:
        """Where the Bearer token comes from (renewals are counted there)."""
        return self._keys

    async def predict(
        self,
        window: np.ndarray,
        *,
        fast_s: float | None = None,
        verdict: CallVerdict | None = None,
    ) -> TorchServeResult:
        """Classify one window (float32 [64, 469]) on TorchServe.

        Raises ``ValueError`` for a window of the wrong shape (a caller bug, not a server
        failure) and ``TorchServeError`` for every failure of the call itself; ``circuit_open``
        without calling TorchServe while the breaker is not closed (with ``shadow_probes``; else
        the first call after the cool-down is let through as the probe).

        ``fast_s``: the caller's bar (its hedge delay). An answer later than that proves
        TorchServe alive but not fit to serve users, so it does not end the circuit breaker's
        failure streak (a TorchServe slower than the hedge delay keeps losing hedges and is
        taken out); None: every answer counts as a success. ``verdict``: see :class:`CallVerdict`.
        """
        body = encode_window(window)
        if self.shadow_probes:
            call = self._breaker.now() if self._breaker.state == "closed" else None
        else:
            call = self._breaker.admit()
        if call is None:
            raise TorchServeError("circuit_open", "circuit breaker open, TorchServe not called")
        if verdict is not None:
            verdict.call = call
        return await self._call_recorded(body, call, fast_s, verdict)

    async def probe(self, window: np.ndarray, fast_s: float) -> ProbeOutcome:
        """Send a copy of a real window as the half-open probe; never raises for TorchServe.

        ``fast`` (answered within ``fast_s`` seconds: counts toward closing the circuit),
        ``slow`` (answered later: stays half-open), ``failed`` (error or deadline: the circuit
        opens again) or ``skipped`` (not half-open, or another probe is in flight).
        """
        body = encode_window(window)
        call = self._breaker.admit_probe()
        if call is None:
            return "skipped"
        started = time.perf_counter()
        outcome: ProbeOutcome | None = None
        try:
            await self._call_with_deadline(body)
            outcome = "fast" if time.perf_counter() - started <= fast_s else "slow"
        except TorchServeError:
            outcome = "failed"
        finally:
            if outcome in ("fast", "slow"):
                self._breaker.record_success(call, slow=outcome == "slow")
            elif outcome == "failed":
                self._breaker.record_failure(call)
            else:
                self._breaker.release(call)
        return outcome

    def record_hedge_loss(self, verdict: CallVerdict | None = None) -> None:
        """The local engine answered a hedged window first: an inconclusive failure.

        A hedge loss alone does not say whether TorchServe is slow or gone, so the breaker needs
        a streak of them over its window to open. To tell a blackholed TorchServe (a killed
        container: SYNs dropped, pooled connections silent) from a slow one without that wait,
        a TCP connect to each replica is tried in the background (one check at a time, bounded
        by the connect timeout); one that fails is a conclusive failure, and the circuit opens
        at the failure count as before. A paused or overloaded TorchServe still accepts
        connections (the kernel does) and is judged by the streak's span. ``verdict``: the lost
        call's, marked judged (its later outcome is not counted again); the loss counts in the
        epoch its call was sent in (no verdict: the current one), so a hedge lost by a call sent
        before the circuit's last change neither opens nor prolongs anything.
        """
        if verdict is not None:
            verdict.judged = True
        call = verdict.call if verdict is not None and verdict.call is not None else None
        if call is None:
            call = self._breaker.now()
        self._breaker.record_failure(call, conclusive=False)
        if (
            self._breaker.state == "closed"
            and self._breaker.epoch == call.epoch
            and (self._reach_check is None or self._reach_check.done())
        ):
            self._reach_check = asyncio.get_running_loop().create_task(self._check_reachable(call))

    async def describe_model(self) -> ServedModel:
        """What TorchServe runs for the default version (``GET {management}/models/{name}``).

        Raises ``ValueError`` without a management URL and ``TorchServeError`` when the call
        fails (reasons as for ``predict``; ``bad_response`` for an answer without the fields).
        Authorized with the key file's ``management`` key, renewed like the inference key (before
        it expires, and once after an "invalid key" answer). Never on a user's path.
        """
        if self.management_url is None:
            raise ValueError("describe_model needs a management_url (TORCHSERVE_MANAGEMENT_URL)")
        session = self._get_session()
        keys = self._management_keys
        url = f"{self.management_url}/models/{self.model_name}"
        for attempt in range(2):
            if keys.needs_renewal():
                await keys.renew(session)
            key = keys.current()
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                async with asyncio.timeout(_MANAGEMENT_TIMEOUT_S):
                    async with session.get(url, headers=headers) as resp:
                        status = resp.status
                        payload = await resp.read()
            except TimeoutError:
                raise TorchServeError("timeout", f"no answer from {url}") from None
            except aiohttp.ClientConnectorError as exc:
                raise TorchServeError("refused", f"cannot connect to {url}") from exc
            except aiohttp.ClientError as exc:
                raise TorchServeError("refused", f"{url}: {type(exc).__name__}") from exc
            if status == 200:
                return parse_description(payload)
            error = _status_error(status, payload)
            if (
                error.reason == "auth"
                and attempt == 0
                and (keys.refresh() or await keys.renew(session, force=True))
            ):
                continue
            raise error
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the connection pool (a later ``predict`` opens a new one)."""
        for task in (self._renewal, self._reach_check):
            if task is not None and not task.done():
                task.cancel()
        self._renewal = self._reach_check = None
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
                # The overall deadline is ours; only opening a connection has its own, short
                # bound (a blackholed host never answers the SYN).
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout_ms / 1000.0
                ),
                raise_for_status=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
            self._session_loop = loop
        return self._session

    async def _call_recorded(
        self, body: bytes, call: Call, fast_s: float | None, verdict: CallVerdict | None
    ) -> TorchServeResult:
        outcome: bool | None = None
        started = time.perf_counter()
        try:
            result = await self._call_with_deadline(body)
            outcome = True
            return result
        except TorchServeError as exc:
            # A 4xx other than auth is about this request, not TorchServe's health.
            outcome = exc.reason == "http_4xx"
            raise
        finally:
            # Counted in the epoch the call was sent in (breaker.py): a call that outlived the
            # circuit state it was sent in is no evidence about the present one.
            if verdict is not None and verdict.judged:
                self._breaker.release(call)  # counted when its hedge was lost
            elif outcome is True:
                slow = fast_s is not None and time.perf_counter() - started > fast_s
                self._breaker.record_success(call, slow=slow)
            elif outcome is False:
                self._breaker.record_failure(call)
            else:
                self._breaker.release(call)

    async def _call_with_deadline(self, body: bytes) -> TorchServeResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_ms / 1000.0
        try:
            async with asyncio.timeout_at(deadline):
                return await self._attempts(body, deadline)
        except TimeoutError:
            raise TorchServeError("timeout", f"no answer within {self.timeout_ms} ms") from None

    async def _check_reachable(self, call: Call) -> None:
        """Connect to every replica (TCP only); one that fails is a conclusive failure of
        ``call`` (the hedge lost that started the check), counted in its epoch."""
        results = await asyncio.gather(*(self._connects(u) for u in self.base_urls))
        if not all(results) and self._breaker.epoch == call.epoch:
            log.warning("torchserve unreachable after a lost hedge (no TCP connection)")
            self._breaker.record_failure(call)

    async def _connects(self, base_url: str) -> bool:
        parts = urllib.parse.urlsplit(base_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.connect_timeout_ms / 1000.0):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _renew_in_background(self) -> None:
        """Start a key renewal off the critical path unless one is running."""
        if self._renewal is not None and not self._renewal.done():
            return
        self._renewal = asyncio.get_running_loop().create_task(
            self._keys.renew(self._get_session())
        )

    async def _attempts(self, body: bytes, deadline: float) -> TorchServeResult:
        loop = asyncio.get_running_loop()
        retried = False
        while True:
            try:
                return await self._attempt(body)
            except TorchServeError as exc:
                if retried or loop.time() >= deadline:
                    raise
                if exc.reason in ("refused", "connect_timeout"):
                    pass
                elif exc.reason == "http_5xx" and exc.status == 503:
                    pause = random.uniform(*_RETRY_503_PAUSE_S)
                    await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
                elif exc.reason == "http_5xx" and exc.status in _RETRYABLE_5XX:
                    pass  # "Worker died.": the new default version or a fresh worker takes it
                elif exc.reason == "auth" and (
                    self._keys.refresh() or await self._keys.renew(self._get_session(), force=True)
                ):
                    pass  # a key from the file or a renewal: worth one more try
                else:
                    raise
                retried = True

    async def _attempt(self, body: bytes) -> TorchServeResult:
        session = self._get_session()
        headers = {"Content-Type": "application/octet-stream"}
        token = self._keys.current()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self._keys.needs_renewal():
            self._renew_in_background()
        url = next(self._next_url)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                status = resp.status
                payload = await resp.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise TorchServeError("connect_timeout", f"no connection to {url}") from exc
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


def parse_description(payload: bytes) -> ServedModel:
    """Parse a describe-model answer (a JSON list, the default version first).

    ``TorchServeError("bad_response")`` names what is missing or of the wrong type.
    """
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TorchServeError("bad_response", f"description is not JSON: {exc}") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise TorchServeError("bad_response", "description is not a non-empty list of objects")
    d = data[0]
    for field in ("batchSize", "maxBatchDelay"):
        value = d.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TorchServeError(
                "bad_response", f"description field {field!r} is not a non-negative integer"
            )
    timeout = d.get("responseTimeout")
    listed = d.get("workers")
    workers: list[Any] = listed if isinstance(listed, list) else []
    return ServedModel(
        version=str(d.get("modelVersion", "")),
        batch_size=d["batchSize"],
        max_batch_delay_s=d["maxBatchDelay"] / 1000.0,
        response_timeout_s=float(timeout) if isinstance(timeout, int | float) else None,
        workers=len(workers),
        ready_workers=sum(1 for w in workers if isinstance(w, dict) and w.get("status") == "READY"),
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
