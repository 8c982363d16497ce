"""The decision file (``scenarios/migration.yaml``): criteria and where their evidence comes from.

A decision file names the evidence to gather (each a scenario run, a baseline/candidate pair
or a capacity sweep, with ``set`` overrides) and the criteria to judge against it. Every model
forbids unknown keys, so a typo is an error naming the file, the line and the closest key, as
for scenarios and sweeps (it is read with the same YAML reader). Paths are relative to the
decision file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.analysis.gates import GateSyntaxError, check_metric, parse_gate
from harness.decision.evidence import EvidenceKey
from harness.scenario.loader import (
    PathKey,
    ScenarioError,
    _dotted,
    _line_of,
    _Problems,
    _read_yaml,
    apply_overrides,
    parse_yaml_text,
)
from harness.sweep.loader import format_errors

GPU_HOST_HINT = "run on a GPU host: scripts/gpu-run.sh"


class DecisionError(ScenarioError):
    """An invalid decision file; the message names file:line, the field and a hint."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Overrides = dict[str, Any]


def override_list(*layers: Mapping[str, Any]) -> list[str]:
    """``{key: value}`` mappings as ``--set`` strings (``key=<JSON value>``, JSON being YAML),
    in order (a later layer wins). A nested mapping is flattened to dotted keys, so
    ``--set evidence.runs.set.workload.fps=15`` sets one key, not the whole section."""
    out: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and (value or not prefix):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out.append(f"{prefix}={json.dumps(value)}")

    for layer in layers:
        walk("", layer)
    return out


# --------------------------------------------------------------------------- evidence


class RunsSource(_Strict):
    """The baseline (old pipeline) and the candidate (TorchServe) at the same load.

    ``set`` applies to both scenarios (the same load on both sides); ``repeat``: runs a side,
    interleaved B1 C1 B2 C2 ... (>= 3 a side for the run-level comparison statistics).
    """

    baseline: str
    candidate: str
    set: Overrides = Field(default_factory=dict)
    repeat: int = Field(1, ge=1, le=20)


class CapacitySource(_Strict):
    """A sweep with ``load.search``: the capacity of two of its configurations (ids ``c01``...)."""

    sweep: str
    baseline: str = Field("c01", pattern=r"^c\d{2,}$")
    candidate: str = Field("c02", pattern=r"^c\d{2,}$")
    set: Overrides = Field(default_factory=dict)


class ScenarioSource(_Strict):
    """One scenario run (a fault timeline, a rollout)."""

    scenario: str
    set: Overrides = Field(default_factory=dict)


class Evidence(_Strict):
    """Where each criterion's evidence comes from (any may be left out; its criteria then
    cannot be judged and the file is refused)."""

    runs: RunsSource | None = None
    capacity: CapacitySource | None = None
    fallback_kill: ScenarioSource | None = None
    hot_reload: ScenarioSource | None = None
    rollout: ScenarioSource | None = None


# --------------------------------------------------------------------------- criteria


class ThroughputTarget(_Strict):
    """Candidate capacity at the sweep's latency constraint: frames/s at least
    ``min_frames_per_s`` (the design's 200-500 req/s: one message per frame), and at least
    ``min_ratio`` x the baseline's capacity in sessions, beyond the sweep's resolution."""

    min_frames_per_s: float = Field(200, gt=0)
    design_range: tuple[float, float] = (200, 500)
    min_ratio: float = Field(1.0, gt=0)


class LatencyTarget(_Strict):
    """Candidate p95 below ``p95_below_ms``; ``vs_baseline: not_worse``: and the comparison
    statistics find it not worse than the baseline (``ignore``: absolute target only)."""

    p95_below_ms: float = Field(30, gt=0)
    vs_baseline: str = Field("not_worse", pattern=r"^(not_worse|ignore)$")


class GpuTarget(_Strict):
    """Mean GPU utilisation of the candidate run within [lo, hi] percent."""

    util_between: tuple[float, float] = (40, 70)


class GatesTarget(_Strict):
    """Gate expressions (scenario gate syntax, ``faults.KIND.FIELD`` included) that must all
    hold in the evidence run."""

    gates: list[str] = Field(min_length=1)


class RolloutTarget(_Strict):
    """The canary completes up to ``to_percent`` of new sessions on TorchServe."""

    to_percent: int = Field(100, ge=1, le=100)


class AccuracyTarget(_Strict):
    """Candidate accuracy at least ``min`` and not worse than the baseline's (two-proportion
    test of the comparison statistics)."""

    min: float = Field(0.9, ge=0, le=1)


class ErrorsTarget(_Strict):
    """Candidate ``errors.total`` (error replies + lost frames + disconnects) at most this."""

    max_total: int = Field(0, ge=0)


class Criteria(_Strict):
    """The criteria to judge (left out: not judged, and not listed in the decision)."""

    throughput: ThroughputTarget | None = None
    frame_latency: LatencyTarget | None = None
    inference_latency: LatencyTarget | None = None
    gpu: GpuTarget | None = None
    kill: GatesTarget | None = None
    reload: GatesTarget | None = None
    rollout: RolloutTarget | None = None
    accuracy: AccuracyTarget | None = None
    errors: ErrorsTarget | None = None


# Which evidence each criterion reads (the file is refused when it is missing).
NEEDS: dict[str, EvidenceKey] = {
    "throughput": "capacity",
    "frame_latency": "runs",
    "inference_latency": "runs",
    "gpu": "runs",
    "kill": "fallback_kill",
    "reload": "hot_reload",
    "rollout": "rollout",
    "accuracy": "runs",
    "errors": "runs",
}


class DecisionFile(_Strict):
    """A validated decision file."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    # Overrides for every scenario and sweep of the evidence (each one's own ``set`` wins).
    set: Overrides = Field(default_factory=dict)
    evidence: Evidence
    criteria: Criteria

    @model_validator(mode="after")
    def _evidence_for_every_criterion(self) -> DecisionFile:
        missing = [
            f"criteria.{c} needs evidence.{NEEDS[c]}"
            for c in Criteria.model_fields
            if getattr(self.criteria, c) is not None and getattr(self.evidence, NEEDS[c]) is None
        ]
        if missing:
            raise ValueError("; ".join(missing))
        if not any(getattr(self.criteria, c) is not None for c in Criteria.model_fields):
            raise ValueError("no criteria: name at least one")
        return self


@dataclass(frozen=True)
class DecisionPlan:
    """A loaded decision file: the model, its path and the files it names (resolved)."""

    path: Path
    spec: DecisionFile

    def resolve(self, relative: str) -> Path:
        """A path of the file, relative to the file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.path.resolve().parent / p).resolve()


def is_decision_file(path: Path | str) -> bool:
    """Whether ``path`` is a decision file (a top-level ``criteria:``) rather than a scenario:
    ``harness validate`` loads it with :func:`load_decision`. False when it cannot be read as
    a YAML mapping (the scenario loader then says why). Read with the scenario loader's bounded
    parser: a hostile file (deep nesting, alias bombs) must reach the loader's clear exit 2, not
    die of RecursionError here first."""
    try:
        data, _ = parse_yaml_text(Path(path).read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ScenarioError):
        return False
    return isinstance(data, dict) and "criteria" in data


def load_decision(path: Path | str, overrides: Sequence[str] = ()) -> DecisionPlan:
    """Read, override (``KEY=VALUE``, value as YAML) and validate a decision file, and check
    every file, scenario, sweep and gate it names (each scenario and sweep is loaded as
    ``harness validate``/``harness sweep --dry-run`` would, with its ``set``).

    DecisionError (a ScenarioError) lists every problem as ``file:line: field: message``.
    """
    path = Path(path)
    problems = _Problems()
    try:
        _, data, lines = _read_yaml(path, problems)
        touched = apply_overrides(data, overrides)
    except ScenarioError as exc:
        raise DecisionError(str(exc).replace("a scenario is a", "a decision file is a")) from None
    lines = {k: v for k, v in lines.items() if k not in touched}
    try:
        spec = DecisionFile.model_validate(data)
    except ValidationError as exc:
        for line, msg in format_errors(exc, path, lines, DecisionFile):
            problems.add(msg, line)
        raise DecisionError("\n".join(problems.messages())) from None
    plan = DecisionPlan(path, spec)

    def add(loc: PathKey, msg: str) -> None:
        line = _line_of(lines, loc)
        problems.add(f"{path}:{line}: field '{_dotted(loc)}': {msg}", line)

    for name in ("kill", "reload"):
        target = getattr(spec.criteria, name)
        for i, expr in enumerate(target.gates if target is not None else []):
            try:
                gate = parse_gate(expr)
            except GateSyntaxError as exc:
                add(("criteria", name, "gates", i), str(exc))
                continue
            if gate.relative:
                add(("criteria", name, "gates", i), "a criterion gate has no baseline")
            elif why := check_metric(gate.metric):
                add(("criteria", name, "gates", i), why)
    _check_sources(plan, add)
    if problems.items:
        raise DecisionError("\n".join(problems.messages()))
    return plan


def _check_sources(plan: DecisionPlan, add: Any) -> None:
    """Load every scenario and sweep the evidence names (errors added, nothing run)."""
    from harness.api import load_scenario
    from harness.sweep.loader import load_sweep

    ev = plan.spec.evidence

    def scenario(loc: PathKey, file: str, sets: Mapping[str, Any]) -> None:
        target = plan.resolve(file)
        if not target.is_file():
            add(loc, f"no such scenario file {target}")
            return
        try:
            load_scenario(target, override_list(plan.spec.set, sets), has_external_baseline=True)
        except ScenarioError as exc:
            add(loc, "not a valid scenario with this evidence's set:\n  " + _indent(exc))

    if ev.runs is not None:
        scenario(("evidence", "runs", "baseline"), ev.runs.baseline, ev.runs.set)
        scenario(("evidence", "runs", "candidate"), ev.runs.candidate, ev.runs.set)
    for key in ("fallback_kill", "hot_reload", "rollout"):
        src: ScenarioSource | None = getattr(ev, key)
        if src is not None:
            scenario(("evidence", key, "scenario"), src.scenario, src.set)
    if ev.capacity is not None:
        cap = ev.capacity
        target = plan.resolve(cap.sweep)
        loc: PathKey = ("evidence", "capacity", "sweep")
        if not target.is_file():
            add(loc, f"no such sweep file {target}")
            return
        try:
            sweep = load_sweep(target, override_list(plan.spec.set, cap.set))
        except ScenarioError as exc:
            add(loc, "not a valid sweep with this evidence's set:\n  " + _indent(exc))
            return
        if sweep.sweep.load.search is None:
            add(loc, "a capacity needs a sweep with load.search")
        ids = [c.id for c in sweep.configurations]
        for side in ("baseline", "candidate"):
            if getattr(cap, side) not in ids:
                add(
                    ("evidence", "capacity", side),
                    f"{getattr(cap, side)} is not a configuration of {target.name} "
                    f"({', '.join(ids)})",
                )


def _indent(exc: Exception) -> str:
    return str(exc).replace("\n", "\n  ")
