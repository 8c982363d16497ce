"""The parts of the hedged fallback that are not I/O: when to hedge, and how often it may.

A hedge ("The Tail at Scale", Dean & Barroso, CACM 2013; gRPC's hedging policy) starts a second
attempt at the same work when the first has not answered after a delay, and keeps whichever
answer comes first. Here the first attempt is TorchServe and the second is the local engine
(the router runs both, see ``routing.py``); this module decides:

- :class:`LatencyTracker`: TorchServe's rolling p99 (successful calls only), in seconds;
- :class:`HedgePolicy`: the hedge delay, a fixed one or ``multiplier x p99`` clamped to
  ``[floor, ceiling]`` (the ceiling until enough calls were seen: a fresh TorchServe is slow),
  both raised above what a healthy batched answer can take (:func:`healthy_batch_bound_s`) once
  TorchServe's ``maxBatchDelay`` is known, so that a TorchServe that is slow by configuration
  is never taken for a dead one;
- :class:`HedgeBudget`: a token bucket in the manner of gRPC's retry throttling, so that a
  slow-but-alive TorchServe cannot double the backend's CPU: every window sent to TorchServe
  adds ``ratio`` tokens (up to ``burst``), every hedge spends one, and a hedge without a whole
  token left is throttled (the window waits for TorchServe, bounded by its deadline).

Everything here runs on the event loop thread; nothing is locked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .breaker import Call

__all__ = [
    "CallVerdict",
    "HedgeBudget",
    "HedgeConfig",
    "HedgePolicy",
    "LatencyTracker",
    "healthy_batch_bound_s",
]


@dataclass
class CallVerdict:
    """Shared by the router and one TorchServe call: once the router has judged the call
    (``judged``: it lost its hedge; ``TorchServeClient.record_hedge_loss``), the call's own
    outcome, when it ends later, is not recorded by the circuit breaker again. One window is one
    piece of evidence: three windows that lose their hedges together and then time out together
    must not count six times, nor open the circuit two seconds after the users were served.
    ``call``: the breaker's ticket of the call (its epoch), set when TorchServe was called; a
    hedge lost is counted in the epoch the call was sent in, like the call's own outcome.
    """

    judged: bool = False
    call: Call | None = None


@dataclass(frozen=True)
class HedgeConfig:
    """Hedge settings (see the README's settings table for the env var of each).

    ``delay_s`` None = adaptive: ``multiplier`` x rolling p99, clamped to
    ``[floor_s, ceiling_s]``; ``budget_ratio`` tokens earned per window sent to TorchServe
    (0.1: at most about one hedge per ten windows over time), ``budget_burst`` = bucket size.
    ``enabled`` False turns hedging and shadow probes off (the pre-hedging behaviour).
    ``batch_service_s``: the time a healthy TorchServe worker takes to serve one batch (decode,
    forward, answer), the ``S`` of :func:`healthy_batch_bound_s`.
    """

    enabled: bool = True
    delay_s: float | None = None
    multiplier: float = 2.0
    floor_s: float = 0.08
    ceiling_s: float = 0.2
    budget_ratio: float = 0.1
    budget_burst: float = 10.0
    window: int = 256
    min_samples: int = 20
    batch_service_s: float = 0.015

    def __post_init__(self) -> None:
        if self.delay_s is not None and not self.delay_s > 0:
            raise ValueError(f"hedge delay_s must be > 0, got {self.delay_s}")
        if not self.multiplier > 0:
            raise ValueError(f"hedge multiplier must be > 0, got {self.multiplier}")
        if not 0 < self.floor_s <= self.ceiling_s:
            raise ValueError(
                f"hedge floor/ceiling must satisfy 0 < floor <= ceiling, got "
                f"{self.floor_s} / {self.ceiling_s}"
            )
        if self.budget_ratio < 0 or self.budget_burst < 1:
            raise ValueError("hedge budget_ratio must be >= 0 and budget_burst >= 1")
        if self.window < 1 or self.min_samples < 1:
            raise ValueError("hedge window and min_samples must be >= 1")
        if self.batch_service_s < 0:
            raise ValueError(f"hedge batch_service_s must be >= 0, got {self.batch_service_s}")


def healthy_batch_bound_s(max_batch_delay_s: float, batch_service_s: float) -> float:
    """The longest a HEALTHY TorchServe takes to answer one window, in seconds.

    ``D + 2 x S`` with ``D`` = the served model's ``maxBatchDelay`` and ``S`` = the time a
    worker takes to serve one batch. Source: TorchServe's batching (docs/batch_inference_with_ts
    .md; measured in the shared notes "Batching and the handler contract"): a worker takes one
    job, then polls up to ``batchSize - 1`` more for at most ``maxBatchDelay``, the clock
    starting when it takes the first job. The worst healthy case is a window that arrives just
    after a worker took a batch: it waits for that batch to be served (S), for its own batch to
    be collected (up to D) and served (S). A fuller queue fills batches at once and waits less.
    ``batchSize`` does not enter the bound (no batch waits longer than D, whatever its size; S is
    the service time of a full one), nor does ``responseTimeout`` (TorchServe's bound before it
    kills a stuck worker: a failure, not a healthy answer). With the design's D = 50 ms and the
    default S = 15 ms (a batch of 16 windows: forward 7-10 ms plus decoding, shared notes) the
    bound is 80 ms, the default hedge floor.
    """
    if max_batch_delay_s < 0 or batch_service_s < 0:
        raise ValueError(
            f"batch delay and service time must be >= 0, got {max_batch_delay_s}, {batch_service_s}"
        )
    return max_batch_delay_s + 2.0 * batch_service_s


class LatencyTracker:
    """The last ``window`` latencies (s) of successful TorchServe calls and their p99."""

    def __init__(self, window: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._p99: float | None = None

    def __len__(self) -> int:
        return len(self._samples)

    def observe(self, seconds: float) -> None:
        """Record one successful call's latency in seconds."""
        self._samples.append(seconds)
        self._p99 = None  # recomputed lazily: one sort per hedge decision, not per sample

    def p99(self) -> float | None:
        """The p99 (s) of the samples held, None when there are none."""
        if self._p99 is None and self._samples:
            self._p99 = float(np.percentile(np.fromiter(self._samples, float), 99))
        return self._p99


class HedgePolicy:
    """The hedge delay now: fixed, or adaptive to TorchServe's rolling p99.

    Adaptive: ``clamp(multiplier x p99, floor, ceiling)`` (``ceiling`` until ``min_samples``
    answers were seen), where, once the served model's batch delay is known
    (:meth:`set_batch_delay`, read from TorchServe's management API) and ``H`` =
    :func:`healthy_batch_bound_s`:

    - ``floor = max(floor_s, H)``: a healthy batched answer is never hedged;
    - ``ceiling = max(ceiling_s, multiplier x H, floor)``: the ceiling never cuts the adaptive
      delay below what the adaptive rule gives a TorchServe whose p99 is the healthy bound
      itself, so the tail of a healthy TorchServe with a long batch delay is not hedged either.

    A fixed delay is kept as configured (the operator's choice, and the batch delay can change
    at any reload); :meth:`fixed_below_floor` says when it is below ``H`` so the caller can warn.
    """

    def __init__(self, config: HedgeConfig, tracker: LatencyTracker | None = None) -> None:
        self.config = config
        self.tracker = tracker or LatencyTracker(config.window)
        self._healthy_s: float | None = None

    @property
    def healthy_s(self) -> float | None:
        """The healthy batched answer bound ``H`` (s), None while the batch delay is unknown."""
        return self._healthy_s

    def set_batch_delay(self, max_batch_delay_s: float | None) -> None:
        """The served model's ``maxBatchDelay`` in seconds (None: unknown, no batch floor)."""
        self._healthy_s = (
            None
            if max_batch_delay_s is None
            else healthy_batch_bound_s(max_batch_delay_s, self.config.batch_service_s)
        )

    def floor_s(self) -> float:
        """Lower bound of the adaptive delay (s): the configured floor, raised to ``H``."""
        return max(self.config.floor_s, self._healthy_s or 0.0)

    def ceiling_s(self) -> float:
        """Upper bound of the adaptive delay (s): the configured one, raised to mult x ``H``
        (and never below the floor, whatever the multiplier)."""
        c = self.config
        return max(c.ceiling_s, c.multiplier * (self._healthy_s or 0.0), self.floor_s())

    def fixed_below_floor(self) -> bool:
        """True when a fixed delay is set below the healthy batched answer bound ``H``."""
        fixed = self.config.delay_s
        return fixed is not None and self._healthy_s is not None and fixed < self._healthy_s

    def delay_s(self) -> float:
        """Seconds to wait for TorchServe before hedging (also the bar a probe must beat)."""
        c = self.config
        if c.delay_s is not None:
            return c.delay_s
        p99 = self.tracker.p99()
        ceiling = self.ceiling_s()
        if p99 is None or len(self.tracker) < c.min_samples:
            return ceiling
        return min(ceiling, max(self.floor_s(), c.multiplier * p99))


class HedgeBudget:
    """Token bucket of hedges: ``deposit()`` per window sent, ``try_spend()`` per hedge."""

    def __init__(self, ratio: float, burst: float) -> None:
        self.ratio = ratio
        self.burst = burst
        self._tokens = burst  # full at start: the first stall of a run may hedge at once

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now."""
        return self._tokens

    def deposit(self) -> None:
        """One window was sent to TorchServe: earn ``ratio`` tokens (capped at ``burst``)."""
        self._tokens = min(self.burst, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        """Take one token for a hedge; False (nothing taken) when less than one is left."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
