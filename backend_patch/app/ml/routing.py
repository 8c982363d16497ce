"""Which path classifies a session's windows: the USE_TORCHSERVE flag, rollout, hedge, fallback.

The state machine always stays in the backend; only the window inference is routed. A session
is assigned to TorchServe or to the local engine once, at connect (sticky), so that
TORCHSERVE_ROLLOUT_PERCENT sends that share of sessions. For a TorchServe session's window:

- circuit closed: send it to TorchServe. If no answer came within the hedge delay
  (``hedging.HedgePolicy``) and the hedge budget has a token, classify it locally too and
  reply with whichever answer comes first; the loser is cancelled. Without a token the hedge
  is throttled and the window waits for TorchServe (its deadline, TORCHSERVE_TIMEOUT_MS, stays
  the bound of last resort). Any TorchServe failure falls back to the local engine.
- circuit open or half-open: classify locally at once. While half-open, a COPY of the window
  goes to TorchServe as a shadow probe (one at a time, off the user's path); probes answered
  within the hedge delay close the circuit. No user window is ever the probe.

Counting (``metrics.py``): every window of a TorchServe session that the local engine served is
one ``signflow_fallback_total`` and one ``signflow_torchserve_errors_total{reason}`` naming why:
the client's failure reason, ``circuit_open``, or ``hedge_lost`` (TorchServe was slower than the
hedge delay and the local answer came first). Its reply says ``served_by: "local"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import numpy as np

from ..metrics import BackendMetrics
from .hedging import HedgeBudget, HedgeConfig, HedgePolicy
from .pipeline import Classification, InferenceEngine

__all__ = ["InferenceRouter", "RemoteClassifier"]


class RemoteClassifier(Protocol):
    """What the router needs of TorchServeClient."""

    async def predict(self, window: np.ndarray) -> Any: ...

    async def probe(self, window: np.ndarray, fast_s: float) -> str: ...

    def record_hedge_loss(self) -> None: ...

    @property
    def circuit_state(self) -> str: ...


class InferenceRouter:
    """Routes each window of a session to TorchServe or the local engine, hedged, with fallback."""

    def __init__(
        self,
        engine: InferenceEngine,
        metrics: BackendMetrics,
        logger: Any,
        *,
        client: RemoteClassifier | None = None,
        rollout_percent: int = 100,
        hedge: HedgeConfig | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.client = client
        self._log = logger
        self._sessions_assigned = 0
        self.rollout_percent = rollout_percent
        self.hedge = hedge or HedgeConfig()
        self.policy = HedgePolicy(self.hedge)
        self.budget = HedgeBudget(self.hedge.budget_ratio, self.hedge.budget_burst)
        self._probes: set[asyncio.Task[None]] = set()
        self.metrics.hedge_delay.set(self.policy.delay_s())

    @property
    def rollout_percent(self) -> int:
        """Share (0-100) of NEW sessions sent to TorchServe when the flag is on."""
        return self._rollout

    @rollout_percent.setter
    def rollout_percent(self, percent: int) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"rollout percent must be an integer in 0..100, got {percent!r}")
        self._rollout = percent
        self.metrics.rollout_percent.set(percent)

    def assign_session(self) -> bool:
        """Decide once, at connect, whether a new session goes to TorchServe.

        Deterministic and exactly proportional over any run of sessions: session n goes to
        TorchServe when floor((n+1)p/100) > floor(np/100), so 10 % of 20 sessions is exactly 2.
        """
        n = self._sessions_assigned
        self._sessions_assigned += 1
        if self.client is None:
            return False
        p = self._rollout
        return (n + 1) * p // 100 > n * p // 100

    async def classify(self, window: np.ndarray, *, use_torchserve: bool, session: int) -> Any:
        """Classify one window [64, 469]; TorchServe first when asked, hedged, local on failure."""
        started = time.perf_counter()
        client = self.client
        if not use_torchserve or client is None:
            return await self._local(window, started)
        state = client.circuit_state
        self.metrics.circuit_open.set(state != "closed")
        if self.hedge.enabled and state != "closed":
            # Open or half-open: the user is served locally at once; TorchServe, when it may be
            # tried again, gets a copy of this window as a shadow probe.
            if state == "half_open" and not self._probes:
                self._start_probe(client, window)
            return await self._fallback(window, started, session, "circuit_open")

        remote = asyncio.ensure_future(client.predict(window))
        self.budget.deposit()
        try:
            return await self._race(client, remote, window, started, session)
        finally:
            if not remote.done():
                remote.cancel()

    async def aclose(self) -> None:
        """Cancel shadow probes in flight (at shutdown, before the client is closed)."""
        probes, self._probes = self._probes, set()
        for task in probes:
            task.cancel()
        for task in probes:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _race(
        self,
        client: RemoteClassifier,
        remote: asyncio.Future[Any],
        window: np.ndarray,
        started: float,
        session: int,
    ) -> Classification:
        delay = self.policy.delay_s()
        hedged = False
        if self.hedge.enabled:
            done, _ = await asyncio.wait({remote}, timeout=delay)
            if not done:
                if self.budget.try_spend():
                    hedged = True
                else:
                    self.metrics.hedges_throttled.inc()
        if not hedged:
            try:
                answer = await remote
            except Exception as exc:  # any failure at all must fall back, not fail the user
                return await self._fallback(window, started, session, _reason(exc), exc)
            return self._served_remote(answer, started)

        self.metrics.hedges.inc()
        local = asyncio.ensure_future(self.engine.infer(window))
        try:
            done, _ = await asyncio.wait({remote, local}, return_when=asyncio.FIRST_COMPLETED)
            if remote in done and remote.exception() is None:
                self.metrics.hedge_wins.labels("torchserve").inc()
                return self._served_remote(remote.result(), started)
            if remote in done:
                # TorchServe failed while the local engine was running: a plain fallback.
                exc = remote.exception()
                assert exc is not None
                self._count_fallback(session, _reason(exc), exc)
                result = await local
                self._observe("local", started)
                return result
            if local.exception() is not None:
                # The local engine failed (a bug, not a race): TorchServe may still answer.
                try:
                    answer = await remote
                except Exception as exc:
                    self._count_fallback(session, _reason(exc), exc)
                    raise local.exception() from exc  # type: ignore[misc]
                self.metrics.hedge_wins.labels("torchserve").inc()
                return self._served_remote(answer, started)
            # The local engine answered first: TorchServe was slower than the hedge delay.
            remote.cancel()
            client.record_hedge_loss()
            self.metrics.hedge_wins.labels("local").inc()
            self._count_fallback(session, "hedge_lost", None)
            result = local.result()
            self._observe("local", started)
            return result
        finally:
            if not local.done():
                local.cancel()

    def _served_remote(self, answer: Any, started: float) -> Classification:
        elapsed = time.perf_counter() - started
        self.policy.tracker.observe(elapsed)
        self.metrics.hedge_delay.set(self.policy.delay_s())
        self._observe("torchserve", started)
        return Classification(
            prediction=str(answer.prediction),
            confidence=float(answer.confidence),
            alternatives=list(answer.alternatives),
            served_by="torchserve",
            model_version=str(answer.model_version),
        )

    async def _local(self, window: np.ndarray, started: float) -> Classification:
        result = await self.engine.infer(window)
        self._observe("local", started)
        return result

    async def _fallback(
        self,
        window: np.ndarray,
        started: float,
        session: int,
        reason: str,
        exc: BaseException | None = None,
    ) -> Classification:
        self._count_fallback(session, reason, exc)
        return await self._local(window, started)

    def _count_fallback(self, session: int, reason: str, exc: BaseException | None) -> None:
        self.metrics.torchserve_errors.labels(reason).inc()
        self.metrics.fallbacks.inc()
        if reason == "circuit_open":
            return  # one line per window of an outage would flood the log; the counter has it
        self._log.warning(
            "torchserve_fallback",
            session=session,
            reason=reason,
            error=type(exc).__name__ if exc is not None else None,
            circuit=self.client.circuit_state if self.client is not None else None,
        )

    def _start_probe(self, client: RemoteClassifier, window: np.ndarray) -> None:
        # A copy: the probe must not share a buffer with the user's window.
        copy = np.array(window, dtype=np.float32, copy=True)
        fast_s = self.policy.delay_s()

        async def run() -> None:
            outcome = await client.probe(copy, fast_s)
            if outcome != "skipped":
                self.metrics.probes.labels(outcome).inc()
                self._log.info("torchserve_probe", outcome=outcome, circuit=client.circuit_state)

        task = asyncio.get_running_loop().create_task(run())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    def _observe(self, served_by: str, started: float) -> None:
        self.metrics.inferences.labels(served_by).inc()
        self.metrics.inference_latency.labels(served_by).observe(time.perf_counter() - started)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", "unexpected"))
