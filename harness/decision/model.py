"""``decision.json``: the migration decision as a typed document (schema ``signflow.decision`` v1).

The :class:`Decision` object IS the file: ``decision.json`` is ``Decision.model_dump_json()``
and is read back with ``Decision.model_validate_json`` (docs/HARNESS.md "harness decide").
Every criterion is ``met``, ``not_met`` or ``unknown``, never a silent pass; an unknown says
why and what would settle it. The decision follows one rule (:func:`decide_outcome`).
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.exitcodes import ExitCode

SCHEMA: Literal["signflow.decision"] = "signflow.decision"
SCHEMA_VERSION: Literal[1] = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Status(enum.StrEnum):
    """A criterion's status."""

    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


class Outcome(enum.StrEnum):
    """The decision."""

    GO = "go"
    NO_GO = "no_go"
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> ExitCode:
        """0 go, 1 no_go, 4 inconclusive."""
        return {
            Outcome.GO: ExitCode.OK,
            Outcome.NO_GO: ExitCode.GATES_FAILED,
            Outcome.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
        }[self]

    @property
    def words(self) -> str:
        """``GO``, ``NO-GO``, ``INCONCLUSIVE``."""
        return self.value.upper().replace("_", "-")


class Quantity(_Model):
    """One figure: ``value`` in ``unit``; ``bound`` ``at_least`` when the value is a lower bound
    (a censored capacity), ``exact`` otherwise; None when not measured."""

    label: str
    value: float | None
    unit: str
    bound: Literal["exact", "at_least", "at_most"] = "exact"

    def text(self) -> str:
        """``p95 41.2 ms``, ``>= 1920 frames/s``, ``capacity ratio <= 0.98x``."""
        if self.value is None:
            return f"{self.label} not measured"
        v = f"{self.value:.3g}" if abs(self.value) < 100 else f"{self.value:.0f}"
        v = {"at_least": ">= ", "at_most": "<= "}.get(self.bound, "") + v
        if self.unit in ("1/s", "count", "sessions"):
            return f"{v} {self.label}"
        if self.unit == "ratio":
            return f"{self.label} {v}x"
        unit = "" if self.unit in ("", "share") else f" {self.unit}"
        return f"{self.label} {v}{unit}"


class Compared(_Model):
    """One metric of the comparison statistics (harness.analysis.compare) behind a criterion."""

    metric: str
    verdict: str = Field(description="worse | better | no significant change | too little data")
    change: float | None = Field(None, description="relative, 0.1 = +10 %")
    p_value: float | None = None
    method: str | None = None
    note: str | None = None


class Criterion(_Model):
    """One criterion of the design, judged on its evidence.

    ``measured``: the candidate's figures; ``baseline``: the old pipeline's where there is one;
    ``evidence``: paths of the results.json/sweep.json it read, relative to decision.json;
    ``settle``: for an unknown, what would settle it.
    """

    name: str = Field(description="stable key, e.g. inference_latency")
    title: str = Field(description="in words, e.g. inference latency")
    target: str = Field(description="the design's target in words")
    limit: float | None = Field(
        None, description="the target's threshold in the first measured figure's unit (plots)"
    )
    status: Status
    measured: list[Quantity] = Field(default_factory=list)
    baseline: list[Quantity] = Field(default_factory=list)
    ratio: Quantity | None = Field(None, description="candidate / baseline capacity")
    ratio_range: tuple[float | None, float | None] | None = Field(
        None, description="what the sweep's brackets allow for the ratio (None: unbounded)"
    )
    compared: list[Compared] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    why: str
    settle: str | None = None


class EvidenceRecord(_Model):
    """One piece of evidence: where it is and whether this decision ran it or reused it."""

    source: Literal["runs", "capacity", "fallback_kill", "hot_reload", "rollout"]
    paths: list[str] = Field(default_factory=list, description="relative to decision.json")
    origin: Literal["ran", "reused", "missing"]
    note: str | None = None
    elapsed_s: float | None = None


class Decision(_Model):
    """The whole ``decision.json``."""

    schema_: Literal["signflow.decision"] = Field(SCHEMA, alias="schema")
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    description: str = ""
    decision_file: str
    decided_at: str = Field(description="UTC, ISO 8601")
    host: str = Field(description="CPU model x cores, GPU or none (from the evidence)")
    decision: Outcome
    sentence: str = Field(description="the verdict in one sentence")
    exit_code: int
    criteria: list[Criterion]
    evidence: list[EvidenceRecord] = Field(default_factory=list)
    elapsed_s: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def of(self, status: Status) -> list[Criterion]:
        """The criteria with ``status``, in order."""
        return [c for c in self.criteria if c.status == status]

    def to_json(self) -> str:
        """decision.json's text."""
        return self.model_dump_json(indent=1, by_alias=True) + "\n"


def decide_outcome(statuses: list[Status]) -> Outcome:
    """Any not_met -> no_go (an unknown cannot rescue a failed criterion); else any unknown ->
    inconclusive; else go. No criteria at all is inconclusive."""
    if Status.NOT_MET in statuses:
        return Outcome.NO_GO
    if Status.UNKNOWN in statuses or not statuses:
        return Outcome.INCONCLUSIVE
    return Outcome.GO


def verdict_sentence(name: str, criteria: list[Criterion], outcome: Outcome) -> str:
    """``migration: NO-GO on this host: not met: inference latency (...); unknown: ...``."""
    parts = [f"{name}: {outcome.words} on this host"]
    not_met = [c for c in criteria if c.status == Status.NOT_MET]
    unknown = [c for c in criteria if c.status == Status.UNKNOWN]
    if not_met:
        parts.append("not met: " + "; ".join(f"{c.title} ({_short(c)})" for c in not_met))
    if unknown:
        parts.append("unknown: " + "; ".join(f"{c.title} ({c.settle or c.why})" for c in unknown))
    if outcome == Outcome.GO:
        parts.append(f"all {len(criteria)} criteria met")
    return " - ".join(parts)


def _short(c: Criterion) -> str:
    """The first figure against the target's first clause: ``p95 61.2 ms, target p95 < 30 ms``."""
    figure = next((q.text() for q in c.measured if q.value is not None), None)
    if c.ratio is not None and c.ratio.value is not None:
        figure = f"{figure}, {c.ratio.text()}" if figure else c.ratio.text()
    return f"{figure}; target {c.target.split(',')[0]}" if figure else c.why
