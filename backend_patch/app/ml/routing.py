"""Which path classifies a session's windows: the USE_TORCHSERVE flag, rollout and fallback.

The state machine always stays in the backend; only the window inference is routed. A session
is assigned to TorchServe or to the local engine once, at connect (sticky), so that
TORCHSERVE_ROLLOUT_PERCENT sends that share of sessions. Any TorchServe failure falls back to
the local engine for the same window, so the user still gets a normal prediction.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from ..metrics import BackendMetrics
from .pipeline import Classification, InferenceEngine

__all__ = ["InferenceRouter", "RemoteClassifier"]


class RemoteClassifier(Protocol):
    """What the router needs of TorchServeClient."""

    async def predict(self, window: np.ndarray) -> Any: ...

    @property
    def circuit_state(self) -> str: ...


class InferenceRouter:
    """Routes each window of a session to TorchServe or the local engine, with fallback."""

    def __init__(
        self,
        engine: InferenceEngine,
        metrics: BackendMetrics,
        logger: Any,
        *,
        client: RemoteClassifier | None = None,
        rollout_percent: int = 100,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.client = client
        self._log = logger
        self._sessions_assigned = 0
        self.rollout_percent = rollout_percent

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
        """Classify one window [64, 469]; TorchServe first when asked, local on any failure."""
        started = time.perf_counter()
        if use_torchserve and self.client is not None:
            try:
                answer = await self.client.predict(window)
            except Exception as exc:  # any failure at all must fall back, not fail the user
                reason = str(getattr(exc, "reason", "unexpected"))
                self.metrics.torchserve_errors.labels(reason).inc()
                self.metrics.fallbacks.inc()
                self._log.warning(
                    "torchserve_fallback",
                    session=session,
                    reason=reason,
                    error=type(exc).__name__,
                    circuit=self.client.circuit_state,
                )
            else:
                result = Classification(
                    prediction=str(answer.prediction),
                    confidence=float(answer.confidence),
                    alternatives=list(answer.alternatives),
                    served_by="torchserve",
                    model_version=str(answer.model_version),
                )
                self._observe("torchserve", started)
                return result
        result = await self.engine.infer(window)
        self._observe("local", started)
        return result

    def _observe(self, served_by: str, started: float) -> None:
        self.metrics.inferences.labels(served_by).inc()
        self.metrics.inference_latency.labels(served_by).observe(time.perf_counter() - started)
