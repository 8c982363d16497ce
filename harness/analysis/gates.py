"""Gate expressions (docs/RESULTS.md): parse up front, evaluate against a summary.

Grammar::

    METRIC OP NUMBER                    OP in < <= > >= == !=
    METRIC between LO HI
    METRIC OP baseline * FACTOR | baseline + ABS | baseline - ABS | baseline

METRIC is a dotted path into ``summary``, or ``faults.<kind>.<field>`` meaning the max over the
faults of that kind. A null metric fails with a reason, it never passes silently.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
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


def resolve_metric(
    path: str, summary: Mapping[str, Any], faults: Sequence[Mapping[str, Any]] = ()
) -> tuple[float | None, str | None]:
    """Value of a dotted metric path and, when it is null, the reason why."""
    parts = path.split(".")
    if parts[0] == "faults":
        if len(parts) != 3:
            return None, f"{path}: fault metrics are faults.<kind>.<field>"
        kind, field = parts[1], parts[2]
        of_kind = [f for f in faults if f.get("kind") == kind]
        if not of_kind:
            return None, f"no {kind} fault in this run"
        values = [f.get(field) for f in of_kind]
        if any(v is None for v in values):
            return None, f"{field} not measured for every {kind} fault (e.g. no recovery seen)"
        try:
            return max(float(v) for v in values), None
        except (TypeError, ValueError):
            return None, f"{path} is not numeric"
    node: Any = summary
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            return (
                None,
                f"{path}: no such metric in summary (stopped at {'.'.join(parts[: i + 1])})",
            )
        node = node[part]
    if node is None:
        return None, _null_reason(path, summary)
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
