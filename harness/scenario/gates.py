"""Gate expressions: the grammar, parsed once when the scenario is validated.

Grammar::

    METRIC OP NUMBER                    OP in < <= > >= == !=
    METRIC between LO HI
    METRIC OP baseline * FACTOR | baseline + ABS | baseline - ABS | baseline
    compare.METRIC (== | !=) (worse | better | same)

METRIC is a dotted path into ``summary``, or ``faults.<kind>.<field>[.<sub>]``; the loader
checks it against the catalogue (harness.results.model.METRICS) and the timeline. A
``compare.`` gate reads the comparison with the baseline (harness/analysis/compare.py): METRIC
is one the comparison judges (harness.results.model.JUDGED_METRICS) and the word its verdict
(``same`` = "no significant change"); it needs a baseline, like ``OP baseline`` gates. In a
:class:`harness.scenario.Scenario`, ``gates`` holds :class:`Gate` values; they serialise back
to their expression text (results.json, scenario YAML).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_METRIC = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_RE_BETWEEN = re.compile(rf"^\s*(?P<m>{_METRIC})\s+between\s+(?P<lo>{_NUM})\s+(?P<hi>{_NUM})\s*$")
_RE_REL = re.compile(
    rf"^\s*(?P<m>{_METRIC})\s*(?P<op><=|>=|==|!=|<|>)\s*baseline"
    rf"(?:\s*(?P<rop>[*+-])\s*(?P<v>{_NUM}))?\s*$"
)
_RE_COMPARE = re.compile(
    rf"^\s*compare\.(?P<m>{_METRIC})\s*(?P<op>==|!=)\s*(?P<v>[A-Za-z_ ]+?)\s*$"
)
# A compare gate's words -> the comparison's verdicts (harness.analysis.compare.Verdict).
VERDICT_WORDS = {
    "worse": "worse",
    "better": "better",
    "same": "no significant change",
    "no significant change": "no significant change",
}
_RE_ABS = re.compile(rf"^\s*(?P<m>{_METRIC})\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<v>{_NUM})\s*$")


class GateSyntaxError(ValueError):
    """A gate expression that does not follow the grammar."""


@dataclass(frozen=True)
class Gate:
    """A parsed gate expression (``str()`` is the expression as written)."""

    expr: str
    metric: str
    op: str
    threshold: float | None
    threshold_hi: float | None = None
    relative: bool = False
    rel_op: str | None = None  # "*", "+", "-" or None (plain ``baseline``)
    rel_value: float | None = None
    # A ``compare.`` gate: the comparison verdict it names ("worse", "better", "no significant
    # change"); ``metric`` is then the compared metric (without ``compare.``).
    verdict: str | None = None

    def __str__(self) -> str:
        return self.expr


# A number with a unit glued on (``< 30ms``, ``<= 2 s``, ``< 5%``): said apart from the grammar.
_RE_UNIT = re.compile(
    r"^(?P<head>.*?)(?P<num>[-+]?\d+(?:\.\d+)?)\s*(?P<unit>ms|s|sec|seconds|%|percent|us|µs|m|min)\s*$"
)


def parse_gate(expr: object) -> Gate:
    """Parse one gate expression; GateSyntaxError explains the grammar on failure."""
    if isinstance(expr, Gate):
        return expr
    if not isinstance(expr, str):
        raise GateSyntaxError(f"gate must be a string, got {type(expr).__name__}")
    m = _RE_COMPARE.match(expr)
    if m:
        word = m["v"].strip().lower()
        if word not in VERDICT_WORDS:
            raise GateSyntaxError(
                f"{expr!r}: a compare gate names a verdict: 'compare.METRIC != worse' (or == / "
                f"!= with one of {', '.join(VERDICT_WORDS)}), got {m['v'].strip()!r}"
            )
        return Gate(expr, m["m"], m["op"], None, verdict=VERDICT_WORDS[word])
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
    unit = _RE_UNIT.match(expr)
    if unit:
        bare = f"{unit['head']}{unit['num']}"
        raise GateSyntaxError(
            f"{expr!r}: write {bare!r}: a gate's number takes no unit ({unit['unit']!r}); the "
            "metric's name gives it (..._ms: milliseconds, ..._s: seconds, ..._percent: "
            "percent, a share: 0..1)"
        )
    raise GateSyntaxError(
        f"{expr!r} is not a gate: use 'METRIC OP NUMBER' (OP one of < <= > >= == !=), "
        "'METRIC between LO HI', 'METRIC OP baseline * FACTOR' / 'baseline + ABS' or "
        "'compare.METRIC != worse'"
    )


def _serialise(gate: Gate) -> str:
    return gate.expr


def _parse(value: Any) -> Gate:
    return parse_gate(value)


# The pydantic field type of a scenario's gates: a string in, a Gate inside, a string out.
GateField = Annotated[
    Gate,
    BeforeValidator(_parse),
    PlainSerializer(_serialise, return_type=str),
    WithJsonSchema({"type": "string"}),
]
