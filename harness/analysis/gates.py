"""Gate expressions (docs/RESULTS.md): parse up front, check the metric against the catalogue,
evaluate against a summary.

Grammar::

    METRIC OP NUMBER                    OP in < <= > >= == !=
    METRIC between LO HI
    METRIC OP baseline * FACTOR | baseline + ABS | baseline - ABS | baseline

METRIC is a dotted path into ``summary``, or ``faults.<kind>.<field>[.<sub>]`` meaning the max
over the faults of that kind (``faults.outage.recovery_latency_ms.p99``). Every metric must be in
``METRICS`` (``check_metric`` says what is wrong and suggests the nearest name): ``harness
validate`` refuses a typo before anything starts. A null metric fails with a reason, it never
passes silently.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_METRIC = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_RE_BETWEEN = re.compile(rf"^\s*(?P<m>{_METRIC})\s+between\s+(?P<lo>{_NUM})\s+(?P<hi>{_NUM})\s*$")
_RE_REL = re.compile(
    rf"^\s*(?P<m>{_METRIC})\s*(?P<op><=|>=|==|!=|<|>)\s*baseline"
    rf"(?:\s*(?P<rop>[*+-])\s*(?P<v>{_NUM}))?\s*$"
)
_RE_ABS = re.compile(rf"^\s*(?P<m>{_METRIC})\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<v>{_NUM})\s*$")


class GateSyntaxError(ValueError):
    """A gate expression that does not follow the grammar."""


@dataclass(frozen=True)
class Gate:
    """A parsed gate expression."""

    expr: str
    metric: str
    op: str
    threshold: float | None
    threshold_hi: float | None = None
    relative: bool = False
    rel_op: str | None = None  # "*", "+", "-" or None (plain ``baseline``)
    rel_value: float | None = None


def parse_gate(expr: str) -> Gate:
    """Parse one gate expression; GateSyntaxError explains the grammar on failure."""
    if not isinstance(expr, str):
        raise GateSyntaxError(f"gate must be a string, got {type(expr).__name__}")
    m = _RE_BETWEEN.match(expr)
    if m:
        lo, hi = float(m["lo"]), float(m["hi"])
        if lo > hi:
            raise GateSyntaxError(f"{expr!r}: 'between LO HI' needs LO <= HI")
        return Gate(expr, m["m"], "between", lo, hi)
    m = _RE_REL.match(expr)
    if m:
        rv = float(m["v"]) if m["v"] is not None else None
        return Gate(expr, m["m"], m["op"], None, None, True, m["rop"], rv)
    m = _RE_ABS.match(expr)
    if m:
        return Gate(expr, m["m"], m["op"], float(m["v"]))
    raise GateSyntaxError(
        f"{expr!r} is not a gate: use 'METRIC OP NUMBER' (OP one of < <= > >= == !=), "
        "'METRIC between LO HI' or 'METRIC OP baseline * FACTOR' / 'baseline + ABS'"
    )


# --------------------------------------------------------------------------- metric catalogue

ANY = "*"  # a path segment whose names come from the data (error codes, model versions)


@dataclass(frozen=True)
class Metric:
    """One gateable metric: a dotted ``pattern`` (``*`` = any name), its unit, what it means.

    ``needs``: timeline actions the run must have for the metric to exist (an outage gate on a
    run with no kill could never be measured). ``absent_is_zero``: a count keyed by data-named
    keys (error codes, versions) is 0 when the key is absent, not unmeasured; ``optional``: the
    key is absent when the run had nothing to measure (accuracy of local answers with none).
    A trailing ``*`` takes the rest of the path as one key (model versions contain dots).
    """

    pattern: str
    unit: str
    about: str
    needs: tuple[str, ...] = ()
    absent_is_zero: bool = False
    optional: bool = False


LATENCY_STATS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "count")
WINDOW_STATS = ("p50", "p95", "p99", "p999", "max", "count")
_KILL, _START, _RELOAD = (
    ("kill_torchserve",),
    ("kill_torchserve", "start_torchserve"),
    ("reload_model",),
)


def _latency(prefix: str, about: str, stats: Iterable[str] = LATENCY_STATS, **kw: Any) -> list:
    return [
        Metric(f"{prefix}.{k}", "count" if k == "count" else "ms", f"{about}: {k}", **kw)
        for k in stats
    ]


METRICS: tuple[Metric, ...] = (
    Metric("duration_s", "s", "load duration (warm-up included)"),
    Metric("warmup_s", "s", "warm-up"),
    Metric("measured_s", "s", "measured window"),
    Metric("sessions", "count", "sessions"),
    Metric("fps", "1/s", "frames per second per session"),
    *_latency("frame.latency_ms", "frame latency, scheduled send to reply"),
    *_latency("frame.latency_uncorrected_ms", "frame latency from the actual send"),
    Metric("frame.latency_over_range.count", "count", "replies slower than the latency limit"),
    Metric("frame.latency_over_range.max_ms", "ms", "the slowest of those"),
    Metric("frame.latency_over_range.limit_ms", "ms", "the run's latency limit"),
    *_latency("inference.latency_ms", "latency of replies with served_by set"),
    *_latency("non_inference.latency_ms", "latency of replies without inference"),
    Metric("stall.max_ms", "ms", "longest wait of any session for a reply"),
    Metric("stall.p50_ms", "ms", "median over sessions of their longest wait"),
    Metric("stall.p95_ms", "ms", "p95 over sessions of their longest wait"),
    Metric("throughput.frames_per_s", "1/s", "answered non-error frames per second"),
    Metric("throughput.inferences_per_s", "1/s", "inference replies per second"),
    *(
        Metric(f"frames.{k}", "count", f"frames {k}")
        for k in ("scheduled", "sent", "answered", "late", "errored", "lost")
    ),
    Metric("errors.total", "count", "error replies + lost frames + disconnects"),
    Metric("errors.error_replies", "count", "error replies"),
    Metric("errors.disconnects", "count", "session disconnects"),
    Metric("errors.send_failures", "count", "frames that could not be sent"),
    Metric(f"errors.by_code.{ANY}", "count", "error replies of one code", absent_is_zero=True),
    Metric("accuracy", "share", "correct / classified signs with ground truth"),
    Metric("accuracy_detail.correct", "count", "correctly classified signs"),
    Metric("accuracy_detail.total", "count", "classified signs with ground truth"),
    Metric(
        "accuracy_detail.by_served_by.local", "share", "accuracy of local answers", optional=True
    ),
    Metric(
        "accuracy_detail.by_served_by.torchserve",
        "share",
        "accuracy of TorchServe answers",
        optional=True,
    ),
    Metric("served_by.local", "share", "share of inferences served locally"),
    Metric("served_by.torchserve", "share", "share of inferences served by TorchServe"),
    Metric("served_by.counts.local", "count", "inferences served locally", absent_is_zero=True),
    Metric(
        "served_by.counts.torchserve",
        "count",
        "inferences served by TorchServe",
        absent_is_zero=True,
    ),
    Metric(f"model_versions.{ANY}", "count", "answers of one model version", absent_is_zero=True),
    Metric("gpu.util_mean", "%", "GPU utilisation, mean"),
    Metric("gpu.util_p95", "%", "GPU utilisation, p95"),
    Metric("gpu.memory_used_mb_max", "MB", "GPU memory used, max"),
    *(
        Metric(f"cpu.{c}.{k}", u, f"{c} process {k}")
        for c in ("backend", "torchserve", "harness")
        for k, u in (("mean_percent", "%"), ("max_percent", "%"), ("rss_mb_max", "MB"))
    ),
    Metric("torchserve.batch_size_mean", "count", "TorchServe batch size, mean"),
    Metric("torchserve.queue_ms_mean", "ms", "TorchServe queue time, mean"),
    Metric("torchserve.handler_ms_mean", "ms", "TorchServe handler time per request, mean"),
    Metric("torchserve.model_ms_mean", "ms", "forward pass of the request's batch, mean"),
    Metric("torchserve.end_to_end_ms_mean", "ms", "arrival at TorchServe to answer, mean"),
    Metric("torchserve.requests", "count", "TorchServe requests"),
    Metric("torchserve.replicas", "count", "TorchServe replicas"),
    Metric(
        f"torchserve.requests_by_replica.{ANY}",
        "count",
        "requests of one replica",
        absent_is_zero=True,
    ),
    Metric(
        f"torchserve.batch_size_hist.{ANY}", "count", "batches of one size", absent_is_zero=True
    ),
    Metric("generator.late_share", "share", "frames sent later than late_threshold_ms"),
    Metric("generator.late_threshold_ms", "ms", "the generator's lateness threshold"),
    Metric("generator.cpu_percent_mean", "%", "the generator's CPU, mean"),
    Metric("generator.cpu_saturated", "bool", "the generator's CPU saturated"),
    Metric("generator.unsent", "count", "frames not sent: the server had stopped reading"),
    Metric("generator.server_silent_from_s", "s", "when the server stopped answering"),
    Metric(
        "faults.outage.time_to_first_fallback_s",
        "s",
        "wait of the first window answered locally after the kill (from max(kill, its send))",
        _KILL,
    ),
    Metric("faults.outage.first_fallback_after_kill_s", "s", "kill to first local answer", _KILL),
    Metric("faults.outage.errors_during_failover", "count", "kill to TorchServe again", _KILL),
    *_latency("faults.outage.outage_latency_ms", "outage window", WINDOW_STATS, needs=_KILL),
    Metric("faults.outage.outage_max_stall_ms", "ms", "longest stall in the outage", _KILL),
    Metric("faults.outage.local_share_during_outage", "share", "local share in outage", _KILL),
    Metric("faults.outage.time_to_recover_s", "s", "restart to first TorchServe answer", _START),
    Metric(
        "faults.outage.time_to_recover_after_ready_s",
        "s",
        "READY to first TorchServe answer (negative: answered before READY was seen)",
        _START,
    ),
    Metric("faults.outage.restart_duration_s", "s", "how long start_torchserve took", _START),
    *_latency("faults.outage.recovery_latency_ms", "recovery window", WINDOW_STATS, needs=_START),
    Metric("faults.outage.recovery_max_stall_ms", "ms", "longest stall in recovery", _START),
    Metric("faults.outage.recovery_errors", "count", "errors in the recovery window", _START),
    Metric("faults.reload.time_to_first_new_s", "s", "reload to first new answer", _RELOAD),
    Metric("faults.reload.mixed_window_len_s", "s", "both versions answering", _RELOAD),
    Metric("faults.reload.errors", "count", "errors in the reload window", _RELOAD),
    Metric("faults.reload.fallbacks", "count", "local answers the reload caused", _RELOAD),
    Metric("faults.reload.local_replies", "count", "local answers in its window", _RELOAD),
    Metric("faults.reload.local_share_before", "share", "local share before it", _RELOAD),
    Metric("faults.reload.p99_around_switch_ms", "ms", "p99 within 2 s of the switch", _RELOAD),
    Metric("faults.reload.max_stall_ms", "ms", "longest stall in the reload window", _RELOAD),
    Metric("faults.reload.reload_s", "s", "how long reload_model took", _RELOAD),
)


# Names that gates used before a rename: refused, with the new name as the suggestion.
RENAMED = {
    "faults.outage.start_torchserve_s": "faults.outage.restart_duration_s",
    "torchserve.inference_ms_mean": "torchserve.end_to_end_ms_mean",
}


def _split(pattern: str, path: str) -> list[str] | None:
    """``path``'s keys aligned on ``pattern`` (None when it does not match)."""
    a, b = pattern.split("."), path.split(".")
    if a[-1] == ANY and len(b) > len(a):
        b = [*b[: len(a) - 1], ".".join(b[len(a) - 1 :])]
    if len(a) != len(b) or not all(x in (ANY, y) for x, y in zip(a, b, strict=True)):
        return None
    return b


def _matches(pattern: str, path: str) -> bool:
    return _split(pattern, path) is not None


def metric_spec(path: str) -> Metric | None:
    """The catalogue entry of a metric path (None when it is not a gate metric)."""
    return next((m for m in METRICS if _matches(m.pattern, path)), None)


def check_metric(path: str, actions: Iterable[str] | None = None) -> str | None:
    """Why ``path`` cannot be gated (None when it can).

    ``actions``: the timeline's actions, to refuse a fault metric the run cannot measure; None
    skips that check.
    """
    spec = metric_spec(path)
    if spec is None and path in RENAMED:
        return f"unknown metric '{path}'; did you mean '{RENAMED[path]}'? (renamed)"
    if spec is None:
        names = [m.pattern for m in METRICS if ANY not in m.pattern]
        hint = difflib.get_close_matches(path, names, n=1, cutoff=0.6)
        tip = f"; did you mean '{hint[0]}'?" if hint else ""
        head = path.split(".")[0]
        family = sorted({m.pattern for m in METRICS if m.pattern.split(".")[0] == head})
        more = ", ..." if len(family) > 6 else ""
        known = f" (known under '{head}': {', '.join(family[:6])}{more})"
        return f"unknown metric '{path}'{tip}{known if family and not hint else ''}"
    if actions is not None:
        have = set(actions)
        missing = [a for a in spec.needs if a not in have]
        if missing:
            return (
                f"'{path}' needs {' and '.join(missing)} in the timeline (this scenario has "
                f"{', '.join(sorted(have)) or 'no timeline events'}): it could never be measured"
            )
    return None


def resolve_metric(
    path: str, summary: Mapping[str, Any], faults: Sequence[Mapping[str, Any]] = ()
) -> tuple[float | None, str | None]:
    """Value of a dotted metric path and, when it is null, the reason why."""
    spec = metric_spec(path)
    if spec is None:
        return None, check_metric(path)
    parts = _split(spec.pattern, path) or []
    if parts[0] == "faults":
        kind, rest = parts[1], parts[2:]
        of_kind = [f for f in faults if f.get("kind") == kind]
        if not of_kind:
            return None, f"no {kind} fault in this run"
        values = [_walk(f, rest, spec)[0] for f in of_kind]
        if any(v is None for v in values):
            field = ".".join(rest)
            return None, f"{field} not measured for every {kind} fault (e.g. no recovery seen)"
        return max(v for v in values if v is not None), None
    value, why = _walk(summary, parts, spec)
    if why == "null":
        return None, _null_reason(path, summary)
    return value, why


def _walk(node: Any, parts: list[str], spec: Metric) -> tuple[float | None, str | None]:
    path = ".".join(parts)
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            last = isinstance(node, Mapping) and i == len(parts) - 1
            if last and spec.absent_is_zero:
                return 0.0, None
            if node is None or (last and spec.optional):
                return None, "null"
            stop = ".".join(parts[: i + 1])
            return None, f"{path}: not in this run's results (stopped at {stop})"
        node = node[part]
    if node is None:
        return None, "null"
    if isinstance(node, bool):
        return float(node), None
    if not isinstance(node, int | float):
        return None, f"{path} is not a number (it is a {type(node).__name__})"
    if isinstance(node, float) and math.isnan(node):
        return None, f"{path} is NaN"
    return float(node), None


def _null_reason(path: str, summary: Mapping[str, Any]) -> str:
    if path.startswith("gpu."):
        gpu = summary.get("gpu") or {}
        return f"GPU not present: {gpu.get('reason') or 'no GPU sampled'}"
    if path.startswith("torchserve."):
        return "TorchServe not in this stack (no TorchServe metrics)"
    if path.startswith("accuracy"):
        return "no ground truth in the trace, accuracy not measured"
    if path.startswith("inference."):
        return "no inference replies in the measured window"
    return f"{path} was not measured (null)"


def _threshold(
    gate: Gate, baseline_summary: Mapping[str, Any] | None
) -> tuple[float | None, str | None]:
    if not gate.relative:
        return gate.threshold, None
    if baseline_summary is None:
        return None, "gate is relative to a baseline but no baseline was given"
    base, why = resolve_metric(gate.metric, baseline_summary)
    if base is None:
        return None, f"baseline value is null: {why}"
    if gate.rel_op == "*":
        return base * float(gate.rel_value or 0), None
    if gate.rel_op == "+":
        return base + float(gate.rel_value or 0), None
    if gate.rel_op == "-":
        return base - float(gate.rel_value or 0), None
    return base, None


def evaluate_gate(
    gate: Gate,
    summary: Mapping[str, Any],
    faults: Sequence[Mapping[str, Any]] = (),
    baseline_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``gates[]`` entry of results.json."""
    measured, reason = resolve_metric(gate.metric, summary, faults)
    threshold, treason = _threshold(gate, baseline_summary)
    passed = False
    if measured is None:
        reason = f"metric is null: {reason}"
    elif threshold is None:
        reason = treason
    elif gate.op == "between":
        assert gate.threshold_hi is not None
        passed = threshold <= measured <= gate.threshold_hi
    else:
        passed = _OPS[gate.op](measured, threshold)
    if not passed and reason is None:
        shown = (
            f"[{threshold:g}, {gate.threshold_hi:g}]"
            if gate.op == "between"
            else f"{gate.op} {threshold:g}"
        )
        reason = f"measured {measured:g}, required {shown}"
    return {
        "expr": gate.expr,
        "metric": gate.metric,
        "op": gate.op,
        "threshold": threshold,
        "threshold_hi": gate.threshold_hi,
        "relative": gate.relative,
        "measured": measured,
        "passed": passed,
        "reason": None if passed else reason,
    }


def evaluate_gates(
    gates: Sequence[str | Gate],
    summary: Mapping[str, Any],
    faults: Sequence[Mapping[str, Any]] = (),
    baseline_summary: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every gate (strings are parsed first)."""
    parsed = [g if isinstance(g, Gate) else parse_gate(g) for g in gates]
    return [evaluate_gate(g, summary, faults, baseline_summary) for g in parsed]
