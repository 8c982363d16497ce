"""Which path classifies a session's windows: the USE_TORCHSERVE flag, rollout, hedge, fallback.

The state machine always stays in the backend; only the window inference is routed. A session
is assigned to TorchServe or to the local engine once, at connect (sticky), so that
TORCHSERVE_ROLLOUT_PERCENT sends that share of sessions. For a TorchServe session's window:

- circuit closed: send it to TorchServe. If no answer came within the hedge delay
  (``hedging.HedgePolicy``) and the hedge budget has a token, classify it locally too and
  reply with whichever answer comes first. A local loser is cancelled; a TorchServe loser is
  left to finish in the background (bounded by its deadline): TorchServe computes it anyway,
  and its real latency feeds the rolling p99, which would otherwise only ever see answers that
  beat the hedge delay and could never learn that TorchServe got slower. Without a token the
  hedge is throttled and the window waits for TorchServe (its deadline, TORCHSERVE_TIMEOUT_MS,
  stays the bound of last resort). Any TorchServe failure falls back to the local engine.
- circuit open or half-open: classify locally at once. While half-open, a COPY of the window
  goes to TorchServe as a shadow probe (one at a time, off the user's path); probes answered
  within the hedge delay close the circuit. No user window is ever the probe.

The hedge delay's floor comes from what TorchServe runs (:meth:`InferenceRouter.
watch_served_model`): its ``maxBatchDelay``, read through the management API at start, when
answers come from a new model version (a reload), when the circuit closes again (a restart) and
every minute, so a TorchServe that is slow by configuration is not taken for a dead one.

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
from .hedging import CallVerdict, HedgeBudget, HedgeConfig, HedgePolicy
from .pipeline import Classification, InferenceEngine

__all__ = ["InferenceRouter", "RemoteClassifier"]


# How often the served model's batching is read again without another trigger (a change
# through the management API that keeps the version), and again after a failed read.
DESCRIBE_EVERY_S = 60.0
DESCRIBE_RETRY_S = 5.0


class RemoteClassifier(Protocol):
    """What the router needs of TorchServeClient."""

    timeout_ms: int
    management_url: str | None

    async def predict(
        self, window: np.ndarray, *, fast_s: float | None = None, verdict: CallVerdict | None = None
    ) -> Any: ...

    async def probe(self, window: np.ndarray, fast_s: float) -> str: ...

    async def describe_model(self) -> Any: ...

    def record_hedge_loss(self, verdict: CallVerdict | None = None) -> None: ...

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
        # TorchServe calls that lost their hedge, left to finish (see the module doc).
        self._losers: set[asyncio.Future[Any]] = set()
        # What TorchServe runs (ServedModel), read through the management API.
        self.served_model: Any = None
        self._describe: asyncio.Task[None] | None = None
        self._described_at: float | None = None
        self._describe_ok = False
        self._answer_version: str | None = None  # of the latest TorchServe answer
        self._described_version: str | None = None  # _answer_version when last read
        self._last_circuit = "closed"
        self.metrics.hedge_delay.set(self.policy.delay_s())
        self.metrics.hedge_floor.set(self.policy.floor_s())

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
            return await self._local(window, started, "local")
        state = client.circuit_state
        self.metrics.circuit_open.set(state != "closed")
        self._watch(client, state)
        if self.hedge.enabled and state != "closed":
            # Open or half-open: the user is served locally at once; TorchServe, when it may be
            # tried again, gets a copy of this window as a shadow probe.
            if state == "half_open" and not self._probes:
                self._start_probe(client, window)
            return await self._fallback(window, started, session, "circuit_open")

        delay = self.policy.delay_s()
        fast_s = delay if self.hedge.enabled else None
        verdict = CallVerdict()
        remote = asyncio.ensure_future(client.predict(window, fast_s=fast_s, verdict=verdict))
        self.budget.deposit()
        try:
            return await self._race(client, remote, window, started, session, delay, verdict)
        finally:
            if not remote.done() and remote not in self._losers:
                remote.cancel()

    def watch_served_model(self) -> None:
        """Read what TorchServe runs now (in the background; the app calls it at start).

        Later reads follow by themselves (:meth:`classify`): after a window answered by a new
        model version, after the circuit closed again, and every ``DESCRIBE_EVERY_S`` while it
        is closed (``DESCRIBE_RETRY_S`` while no read has succeeded yet). Nothing happens
        without a client or without its management URL.
        """
        client = self.client
        if client is not None and client.management_url is not None:
            self._start_describe(client, "start")

    async def aclose(self) -> None:
        """Cancel shadow probes, hedge losers and model reads in flight (at shutdown, before
        the client is closed)."""
        tasks: set[asyncio.Future[Any]] = set(self._probes) | self._losers
        if self._describe is not None:
            tasks.add(self._describe)
        self._probes, self._losers, self._describe = set(), set(), None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _race(
        self,
        client: RemoteClassifier,
        remote: asyncio.Future[Any],
        window: np.ndarray,
        started: float,
        session: int,
        delay: float,
        verdict: CallVerdict,
    ) -> Classification:
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
                failure = remote.exception()
                assert failure is not None
                self._count_fallback(session, _reason(failure), failure)
                result = await local
                self._observe("local", started, "torchserve")
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
            self._let_finish(remote, started)
            client.record_hedge_loss(verdict)
            self.metrics.hedge_wins.labels("local").inc()
            self._count_fallback(session, "hedge_lost", None)
            result = local.result()
            self._observe("local", started, "torchserve")
            return result
        finally:
            if not local.done():
                local.cancel()

    def _served_remote(self, answer: Any, started: float) -> Classification:
        self._observe_remote_latency(time.perf_counter() - started)
        self._answer_version = str(answer.model_version)
        self._observe("torchserve", started, "torchserve")
        return Classification(
            prediction=str(answer.prediction),
            confidence=float(answer.confidence),
            alternatives=list(answer.alternatives),
            served_by="torchserve",
            model_version=str(answer.model_version),
        )

    async def _local(self, window: np.ndarray, started: float, route: str) -> Classification:
        result = await self.engine.infer(window)
        self._observe("local", started, route)
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
        return await self._local(window, started, "torchserve")

    def _count_fallback(self, session: int, reason: str, exc: BaseException | None) -> None:
        self.metrics.torchserve_errors.labels(reason).inc()
        self.metrics.fallbacks.labels("torchserve").inc()
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

    def _observe_remote_latency(self, seconds: float) -> None:
        self.policy.tracker.observe(seconds)
        self.metrics.hedge_delay.set(self.policy.delay_s())

    def _let_finish(self, remote: asyncio.Future[Any], started: float) -> None:
        """Keep a TorchServe call that lost its hedge; its real latency feeds the p99."""
        self._losers.add(remote)

        def done(fut: asyncio.Future[Any]) -> None:
            self._losers.discard(fut)
            if fut.cancelled() or fut.exception() is not None:
                return  # the client counted the failure toward the breaker already
            self._observe_remote_latency(time.perf_counter() - started)

        remote.add_done_callback(done)

    # ----- what TorchServe runs -------------------------------------------------------------

    def _watch(self, client: RemoteClassifier, state: str) -> None:
        """Start a read of the served model when something may have changed it (cheap)."""
        if client.management_url is None:
            return
        closed_again = state == "closed" and self._last_circuit != "closed"
        self._last_circuit = state
        version = self._answer_version
        served = self.served_model
        if closed_again:
            self._start_describe(client, "circuit closed")
        elif (
            version is not None
            and version != self._described_version
            and (served is None or version != served.version)
        ):
            self._start_describe(client, f"answers from version {version}")
        elif state == "closed":
            every = DESCRIBE_EVERY_S if self._describe_ok else DESCRIBE_RETRY_S
            if self._described_at is None or time.monotonic() - self._described_at >= every:
                self._start_describe(client, "periodic")

    def _start_describe(self, client: RemoteClassifier, why: str) -> None:
        if self._describe is not None and not self._describe.done():
            return
        self._described_at = time.monotonic()
        self._described_version = self._answer_version

        async def run() -> None:
            try:
                served = await client.describe_model()
            except Exception as exc:  # a read that fails keeps the last known batching
                self._describe_ok = False
                self._log.warning(
                    "torchserve_describe_failed",
                    why=why,
                    reason=str(getattr(exc, "reason", type(exc).__name__)),
                )
                return
            self._describe_ok = True
            self._apply_served(client, served, why)

        self._describe = asyncio.get_running_loop().create_task(run())

    def _apply_served(self, client: RemoteClassifier, served: Any, why: str) -> None:
        """Use what TorchServe runs: the hedge floor follows its batch delay (hedging.py)."""
        before = self.served_model
        self.served_model = served
        self.policy.set_batch_delay(served.max_batch_delay_s)
        self.metrics.hedge_floor.set(self.policy.floor_s())
        self.metrics.hedge_delay.set(self.policy.delay_s())
        same = before is not None and (
            before.version,
            before.batch_size,
            before.max_batch_delay_s,
        ) == (served.version, served.batch_size, served.max_batch_delay_s)
        if same:
            return
        healthy = self.policy.healthy_s or 0.0
        self._log.info(
            "torchserve_batching",
            why=why,
            model_version=served.version,
            batch_size=served.batch_size,
            max_batch_delay_ms=round(served.max_batch_delay_s * 1000),
            response_timeout_s=served.response_timeout_s,
            healthy_answer_ms=round(healthy * 1000),
            hedge_floor_ms=round(self.policy.floor_s() * 1000),
            hedge_ceiling_ms=round(self.policy.ceiling_s() * 1000),
        )
        if self.hedge.enabled and self.policy.fixed_below_floor():
            fixed = self.hedge.delay_s or 0.0
            self._log.warning(
                "hedge_delay_below_batch_floor",
                setting="TORCHSERVE_HEDGE_DELAY_MS",
                hedge_delay_ms=round(fixed * 1000),
                healthy_answer_ms=round(healthy * 1000),
                message=(
                    f"TORCHSERVE_HEDGE_DELAY_MS={round(fixed * 1000)} is below what a healthy "
                    f"batched answer can take ({round(healthy * 1000)} ms with maxBatchDelay "
                    f"{round(served.max_batch_delay_s * 1000)} ms): healthy windows will be "
                    "hedged and TorchServe taken out as slow; unset it (adaptive) or raise it"
                ),
            )
        # The deadline covers one retry (a "Worker died." answer during a reload goes back in
        # the queue), so it must leave room for two healthy answers.
        if client.timeout_ms / 1000.0 < 2 * healthy:
            self._log.warning(
                "torchserve_deadline_below_batch_floor",
                setting="TORCHSERVE_TIMEOUT_MS",
                timeout_ms=client.timeout_ms,
                healthy_answer_ms=round(healthy * 1000),
                message=(
                    f"TORCHSERVE_TIMEOUT_MS={client.timeout_ms} leaves no room for a retry of a "
                    f"healthy batched answer ({round(healthy * 1000)} ms each): raise it above "
                    f"{round(2 * healthy * 1000)}"
                ),
            )

    def _observe(self, served_by: str, started: float, route: str) -> None:
        # ``route``: the session's cohort (its sticky rollout route), ``served_by``: who answered
        # this window; a TorchServe-cohort window answered locally is a fallback or a lost hedge.
        self.metrics.inferences.labels(route, served_by).inc()
        self.metrics.inference_latency.labels(route, served_by).observe(
            time.perf_counter() - started
        )


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", "unexpected"))
