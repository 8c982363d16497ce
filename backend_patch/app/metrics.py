"""Prometheus metrics of one backend app, in a registry owned by that app (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "BackendMetrics"]

# Inference latency spans sub-millisecond local forwards to TorchServe's 50 ms batch delay and
# multi-second timeouts during an outage.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip


class BackendMetrics:
    """The signflow_* metrics of one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = Counter("signflow_frames", "Frames received (valid or not).", registry=r)
        self.inferences = Counter(
            "signflow_inferences", "Windows classified, by path.", ["served_by"], registry=r
        )
        self.inference_latency = Histogram(
            "signflow_inference_latency_seconds",
            "Time to classify one window (a failed TorchServe try counts toward the fallback).",
            ["served_by"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions_open = Gauge("signflow_sessions_open", "Open WebSocket sessions.", registry=r)
        self.sessions = Counter(
            "signflow_sessions", "Sessions opened, by the route chosen.", ["route"], registry=r
        )
        self.errors = Counter(
            "signflow_errors", "Error replies and protocol closes, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.torchserve_errors = Counter(
            "signflow_torchserve_errors",
            "Failed TorchServe calls, by reason.",
            ["reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "signflow_fallback",
            "Windows of TorchServe sessions served locally; signflow_torchserve_errors says why "
            "(hedge_lost: TorchServe slower than the hedge delay).",
            registry=r,
        )
        # The hedged fallback (routing.py, hedging.py).
        self.hedges = Counter(
            "signflow_hedges",
            "Windows hedged: TorchServe had not answered within the hedge delay, the local "
            "engine was started too.",
            registry=r,
        )
        self.hedge_wins = Counter(
            "signflow_hedge_wins", "Hedged windows, by the side that answered first.", ["winner"],
            registry=r,
        )  # fmt: skip
        self.hedges_throttled = Counter(
            "signflow_hedges_throttled",
            "Hedges not started because the hedge budget was spent (the window waited for "
            "TorchServe).",
            registry=r,
        )
        self.hedge_delay = Gauge(
            "signflow_hedge_delay_seconds", "The hedge delay in force now.", registry=r
        )
        self.hedge_floor = Gauge(
            "signflow_hedge_floor_seconds",
            "Lower bound of the adaptive hedge delay now: the configured floor, raised to what a "
            "healthy batched TorchServe answer can take (its maxBatchDelay + 2 batch services).",
            registry=r,
        )
        self.circuit_open = Gauge(
            "signflow_torchserve_circuit_open",
            "1 while the circuit breaker is open or half-open (windows served locally), else 0.",
            registry=r,
        )
        self.probes = Counter(
            "signflow_torchserve_probes",
            "Shadow probes of a half-open circuit, by outcome (fast closes, failed re-opens).",
            ["outcome"],
            registry=r,
        )
        self.rollout_percent = Gauge(
            "signflow_rollout_percent", "Share of new sessions sent to TorchServe.", registry=r
        )
        # Show the labelled series at zero from the start, so rates work before the first event.
        for served_by in ("local", "torchserve"):
            self.inferences.labels(served_by)
            self.inference_latency.labels(served_by)
            self.sessions.labels(served_by)
            self.hedge_wins.labels(served_by)
        for outcome in ("fast", "slow", "failed"):
            self.probes.labels(outcome)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
