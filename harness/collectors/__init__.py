"""Collectors sampled every second on the RunClock: Prometheus endpoints, processes, GPU."""

from harness.collectors.base import Collector, CollectorSet
from harness.collectors.gpu import GpuCollector
from harness.collectors.process import ProcessCollector
from harness.collectors.prometheus import PrometheusCollector, parse_metrics

__all__ = [
    "Collector",
    "CollectorSet",
    "GpuCollector",
    "ProcessCollector",
    "PrometheusCollector",
    "parse_metrics",
]
