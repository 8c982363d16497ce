"""Gate evaluation against a summary (docs/RESULTS.md).

The grammar and the parsed :class:`Gate` live with the scenario (harness/scenario/gates.py:
gates are parsed once, when the scenario is validated); the metric catalogue is generated from
the results model (harness/results/model.py ``METRICS``, with units and k6-style types). Here:
resolving a metric path in a summary (``faults.<kind>.<field>`` is the max over the faults of
that kind) and evaluating a gate; a ``compare.`` gate reads the comparison's verdict. A null
metric fails with a reason, it never passes silently.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.results.model import (
    ANY,
    METRICS,
    RENAMED,
    Metric,
    check_metric,
    metric_spec,
    split_metric,
)
from harness.scenario.gates import Gate, GateSyntaxError, parse_gate

from .compare import Comparison, Verdict

__all__ = [
    "ANY",
    "METRICS",
    "RENAMED",
    "Gate",
    "GateSyntaxError",
    "Metric",
    "check_metric",
    "evaluate_compare_gate",
    "evaluate_gate",
    "evaluate_gates",
    "metric_spec",
    "parse_gate",
    "resolve_metric",
]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def resolve_metric(
    path: str, summary: Mapping[str, Any], faults: Sequence[Mapping[str, Any]] = ()
) -> tuple[float | None, str | None]:
    """Value of a dotted metric path and, when it is null, the reason why."""
    spec = metric_spec(path)
    if spec is None:
        return None, check_metric(path)
    parts = split_metric(spec.pattern, path) or []
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
    if path.startswith(("memory.", "drift.")):
        return _drift_reason(path, summary)
    if path.startswith("accuracy"):
        return "no ground truth in the trace, accuracy not measured"
    if path.startswith("inference."):
        return "no inference replies in the measured window"
    return f"{path} was not measured (null)"


def _drift_reason(path: str, summary: Mapping[str, Any]) -> str:
    """A leak gate's null: the fit's own reason (too short, not sampled), else why absent."""
    parts = path.split(".")
    node: Any = summary.get(parts[0])
    if parts[0] == "memory" and isinstance(node, Mapping):
        node = node.get(parts[1])
    why = node.get("reason") if isinstance(node, Mapping) else None
    if why:
        return f"{path} not fitted: {why}"
    if node is None:
        return f"{path} not fitted: no slopes in these results (written before leak gates)"
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


def evaluate_compare_gate(gate: Gate, comparison: Comparison | None) -> dict[str, Any]:
    """A ``compare.METRIC (==|!=) VERDICT`` gate against the comparison with the baseline.

    ``!= worse`` passes on "too little data" or "not judged" (a healthy system is not failed
    for lack of data; ``reason`` then says what the comparison lacked); ``==`` needs exactly
    that verdict. No comparison (no baseline), an unusable one, or no row for the metric:
    failed, with the reason."""
    out: dict[str, Any] = {
        "expr": gate.expr,
        "metric": f"compare.{gate.metric}",
        "op": gate.op,
        "threshold": None,
        "threshold_hi": None,
        "relative": True,
        "measured": None,
        "passed": False,
        "reason": None,
        "compared": gate.verdict,
        "verdict": None,
    }
    if comparison is None:
        out["reason"] = "gate reads the comparison with a baseline, but no baseline was given"
        return out
    if not comparison.usable:
        out["reason"] = f"cannot compare: {comparison.problem}"
        return out
    row = next((m for m in comparison.metrics if m.metric == gate.metric), None)
    if row is None:
        out["reason"] = f"the comparison has no row for {gate.metric}"
        return out
    verdict = str(row.verdict.value)
    passed = (verdict == gate.verdict) == (gate.op == "==")
    change = "" if row.change is None else f" ({row.change:+.1%})"
    p = "" if row.p_value is None else f", p = {row.p_value:.3g}"
    if verdict in (Verdict.TOO_LITTLE_DATA.value, Verdict.NOT_JUDGED.value):
        reason = f"comparison says {verdict}{change}" + (f": {row.note}" if row.note else "")
    elif passed:
        reason = None
    else:
        reason = f"comparison says {verdict}{change}{p}, required {gate.op} {gate.verdict}"
    out.update(measured=row.change, passed=passed, reason=reason, verdict=verdict)
    return out


def evaluate_gate(
    gate: Gate,
    summary: Mapping[str, Any],
    faults: Sequence[Mapping[str, Any]] = (),
    baseline_summary: Mapping[str, Any] | None = None,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    """One ``gates[]`` entry of results.json (``comparison``: the run's comparison with its
    baseline, for ``compare.`` gates)."""
    if gate.verdict is not None:
        return evaluate_compare_gate(gate, comparison)
    measured, reason = resolve_metric(gate.metric, summary, faults)
    threshold, treason = _threshold(gate, baseline_summary)
    if (
        gate.relative
        and comparison is not None
        and comparison.workload_differs
        and not comparison.usable
    ):
        # The comparison's own rule (issue 20 item 4): no judgement between unlike runs
        # unless the caller asked for it, so a baseline-relative threshold is not one either.
        threshold, treason = (
            None,
            (
                "not evaluated: the baseline ran another workload (the comparison says why); "
                "run both on one workload or allow unlike workloads"
            ),
        )
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
    comparison: Comparison | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every gate (strings are parsed first)."""
    parsed = [g if isinstance(g, Gate) else parse_gate(g) for g in gates]
    return [evaluate_gate(g, summary, faults, baseline_summary, comparison) for g in parsed]
