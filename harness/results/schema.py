"""The results document (docs/RESULTS.md), schema ``signflow-harness/results`` version 1.

This module is the typed source of truth for the key names; writers and readers import from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

SCHEMA = "signflow-harness/results"
SCHEMA_VERSION = 1

Verdict = Literal["passed", "failed", "invalid", "error"]

TOP_KEYS = (
    "schema", "schema_version", "run_id", "name", "started_at", "finished_at", "scenario",
    "scenario_yaml", "valid", "invalid_reasons", "verdict", "summary", "series", "histograms",
    "events", "faults", "gates", "comparison", "provenance",
)  # fmt: skip

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "count")

SUMMARY_TOP_KEYS = (
    "duration_s", "warmup_s", "measured_s", "sessions", "fps", "frame", "inference",
    "non_inference", "throughput", "frames", "errors", "accuracy", "accuracy_detail", "served_by",
    "model_versions", "gpu", "cpu", "torchserve", "generator",
)  # fmt: skip

SERIES_KEYS = (
    "t", "warmup", "frame_p50_ms", "frame_p95_ms", "frame_p99_ms", "inference_p50_ms",
    "inference_p99_ms", "frames_per_s", "inferences_per_s", "errors", "served_local",
    "served_torchserve", "model_versions", "cpu_percent", "rss_mb", "gpu_util", "gpu_mem_mb",
    "ts_queue_ms", "ts_handler_ms", "ts_end_to_end_ms", "ts_batch_size_mean",
)  # fmt: skip

# The key paths the issue requires to exist in every results document.
REQUIRED_KEY_PATHS = (
    *(f"summary.frame.latency_ms.{k}" for k in ("p50", "p95", "p99", "p999")),
    *(f"summary.inference.latency_ms.{k}" for k in ("p50", "p95", "p99")),
    "summary.throughput.frames_per_s",
    "summary.throughput.inferences_per_s",
    "summary.errors.total",
    "summary.accuracy",
    "summary.served_by.local",
    "summary.served_by.torchserve",
    "gates",
    "verdict",
    "valid",
)

# Gate metrics offered as suggestions for typos (any dotted path into summary is accepted).
GATE_METRIC_EXAMPLES = (
    *(f"frame.latency_ms.{k}" for k in LATENCY_KEYS),
    *(f"frame.latency_uncorrected_ms.{k}" for k in LATENCY_KEYS),
    *(f"inference.latency_ms.{k}" for k in LATENCY_KEYS),
    *(f"non_inference.latency_ms.{k}" for k in LATENCY_KEYS),
    "throughput.frames_per_s", "throughput.inferences_per_s",
    "frames.scheduled", "frames.sent", "frames.answered", "frames.late", "frames.errored",
    "frames.lost", "errors.total", "errors.error_replies", "errors.disconnects",
    "errors.send_failures", "accuracy", "served_by.local", "served_by.torchserve",
    "gpu.util_mean", "gpu.util_p95", "gpu.memory_used_mb_max",
    "cpu.backend.mean_percent", "cpu.torchserve.mean_percent", "cpu.harness.mean_percent",
    "torchserve.batch_size_mean", "torchserve.queue_ms_mean", "torchserve.handler_ms_mean",
    "torchserve.model_ms_mean", "torchserve.end_to_end_ms_mean",
    "generator.late_share", "generator.cpu_percent_mean", "generator.unsent",
    "frame.latency_over_range.count",
    "faults.outage.time_to_first_fallback_s", "faults.outage.time_to_recover_s",
    "faults.outage.time_to_recover_after_ready_s", "faults.outage.start_torchserve_s",
    "faults.outage.errors_during_failover", "faults.outage.local_share_during_outage",
    "faults.reload.time_to_first_new_s", "faults.reload.mixed_window_len_s",
    "faults.reload.errors", "faults.reload.p99_around_switch_ms",
)  # fmt: skip


def get_path(doc: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key path."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def missing_keys(doc: Mapping[str, Any]) -> list[str]:
    """Top-level keys and required key paths absent from ``doc`` (empty when complete)."""
    out = [k for k in TOP_KEYS if k not in doc]
    out += [p for p in REQUIRED_KEY_PATHS if not get_path(doc, p)[0]]
    return out


def check_document(doc: Mapping[str, Any]) -> None:
    """Raise ValueError naming what is wrong with a results document (used by readers)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not a harness results document (schema={doc.get('schema')!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"results schema_version {doc.get('schema_version')!r} is not supported "
            f"(this harness reads {SCHEMA_VERSION})"
        )
    missing = missing_keys(doc)
    if missing:
        raise ValueError(f"results document lacks: {', '.join(missing)}")
