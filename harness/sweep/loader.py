"""Load a sweep file into a :class:`Plan`: the sweep, its configurations and their scenarios.

Read with the scenario loader's YAML reader (UTF-8 only, duplicate keys and hostile YAML
refused, every node's line known), so errors name ``file:line: field``. Every configuration's
scenario is built and checked like ``harness validate`` would (at the lowest and highest load
it can be run at) before anything starts; all problems are reported together.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.analysis.gates import GateSyntaxError, check_metric, parse_gate
from harness.scenario.loader import (
    PathKey,
    ScenarioError,
    _dotted,
    _line_of,
    _Problems,
    _read_yaml,
    _unwrap_model,
    apply_overrides,
    check_scenario_data,
    model_at,
)
from harness.scenario.models import Scenario, StackSpec

from .model import SweepFile


class SweepError(ScenarioError):
    """An invalid sweep file; the message names file:line, the field and a hint."""


@dataclass(frozen=True)
class Configuration:
    """One point of the parameter space: its id (``c01``), parameters and scenario.

    ``scenario`` is the base with the parameters applied, at the sweep's first load level
    (the search's ``start``); the runner sets ``workload.sessions`` per load level.
    """

    id: str
    params: dict[str, Any]
    scenario: Scenario

    @property
    def label(self) -> str:
        """``batch_size=8, max_batch_delay_ms=5`` (last key segment; the full key is in params)."""
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={_show(v)}" for k, v in self.params.items())

    def at(self, sessions: int) -> Scenario:
        """The scenario at ``sessions`` sessions (already validated at the bounds)."""
        wl = self.scenario.workload.model_copy(update={"sessions": sessions})
        return self.scenario.model_copy(update={"workload": wl})


@dataclass(frozen=True)
class Plan:
    """A loaded sweep: the file's model, its path and its configurations (file order)."""

    path: Path
    sweep: SweepFile
    configurations: list[Configuration]

    def levels(self) -> list[int]:
        """Fixed load levels (empty when the load is searched)."""
        return self.sweep.load.levels()

    def max_runs(self) -> int:
        """Runs the plan takes at most (before the budget)."""
        per = self.sweep.load.search.max_runs() if self.sweep.load.search else len(self.levels())
        return per * len(self.configurations)

    def estimate_s(self, runs: int | None = None) -> float:
        """Estimated wall seconds of ``runs`` runs (default: the most it can take, budget-capped).

        Each configuration starts its stack once (``stack_start_s``); each run costs its
        ``duration_s`` plus a few seconds of analysis and report.
        """
        n = min(self.max_runs(), self.sweep.budget.max_runs) if runs is None else runs
        run_s = self.configurations[0].scenario.workload.duration_s + RUN_OVERHEAD_S
        starts = len(self.configurations) * self.sweep.stack_start_s
        return min(n * run_s + starts, self.sweep.budget.max_minutes * 60)


RUN_OVERHEAD_S = 6.0  # per run: traces, analysis, results, report (measured on this machine)


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | dict | list) else str(value)


def scenario_key(key: str) -> str:
    """The full scenario path of a space key: ``torchserve.batch_size`` is
    ``stack.torchserve.batch_size`` (a ``stack`` field may be named without ``stack.``)."""
    head = key.split(".", 1)[0]
    if head in Scenario.model_fields:
        return key
    if head in StackSpec.model_fields:
        return f"stack.{key}"
    return key


def _key_problem(key: str) -> str | None:
    """Why ``key`` is not a scenario key a sweep may vary (None when it is)."""
    full = scenario_key(key)
    parts = full.split(".")
    model: type[BaseModel] | None = Scenario
    for i, part in enumerate(parts):
        if model is None:
            return None  # below a free mapping (backend env): any name is a key
        fields = model.model_fields
        if part not in fields:
            hint = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            tip = f"; did you mean '{'.'.join([*parts[:i], hint[0]])}'?" if hint else ""
            return f"'{key}' is not a scenario key{tip}"
        model = _unwrap_model(fields[part].annotation)
    if full in ("name", "workload.sessions"):
        return f"'{key}' is set by the sweep itself (name; load.sessions/search)"
    if model is not None:
        return f"'{key}' is a section; vary one of its keys ({', '.join(model.model_fields)})"
    return None


def format_errors(
    exc: ValidationError,
    path: Path,
    lines: Mapping[PathKey, int],
    root: type[BaseModel] = SweepFile,
) -> list[tuple[int, str]]:
    """(line, ``file:line: message``) for each of ``exc``'s errors in a file whose top-level
    model is ``root`` (a sweep file; the decision file too), with the allowed keys and a
    did-you-mean for an unknown one."""
    out: list[tuple[int, str]] = []
    for err in exc.errors():
        loc: PathKey = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "dict")))
        )
        line = _line_of(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        field = _dotted(loc)
        if err["type"] == "extra_forbidden":
            parent = model_at(loc[:-1], root)
            allowed = sorted(parent.model_fields) if parent else []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            tip = f"; did you mean '{hint[0]}'?" if hint else ""
            msg = f"{where}: unknown key '{field}'{tip} (allowed here: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = f"{where}: missing required field '{field}'"
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            msg = f"{where}: field '{field}': {err['msg'].removeprefix('Value error, ')}{shown}"
        out.append((line, msg))
    return out


def _split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(sweep overrides, scenario overrides): ``--set budget.max_runs=4`` changes the sweep,
    ``--set workload.duration_s=5`` every configuration's scenario."""
    mine: list[str] = []
    theirs: list[str] = []
    for item in overrides:
        head = item.split("=", 1)[0].strip().split(".", 1)[0]
        (mine if head in SweepFile.model_fields else theirs).append(item)
    return mine, theirs


def load_sweep(path: Path | str, overrides: Sequence[str] = ()) -> Plan:
    """Read, override and validate a sweep file and every configuration's scenario.

    SweepError (a ScenarioError) lists every problem as ``file:line: field: message``.
    """
    path = Path(path)
    problems = _Problems()
    try:
        _, data, lines = _read_yaml(path, problems)
    except ScenarioError as exc:
        raise SweepError(str(exc).replace("a scenario is a", "a sweep is a")) from None
    sweep_sets, scenario_sets = _split_overrides(overrides)
    apply_overrides(data, sweep_sets)
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as exc:
        for line, msg in format_errors(exc, path, lines):
            problems.add(msg, line)
        raise SweepError("\n".join(problems.messages())) from None

    def add(loc: PathKey, msg: str) -> None:
        line = _line_of(lines, loc)
        problems.add(f"{path}:{line}: field '{_dotted(loc)}': {msg}", line)

    for i, expr in enumerate(sweep.constraints):
        try:
            gate = parse_gate(expr)
        except GateSyntaxError as exc:
            add(("constraints", i), str(exc))
            continue
        if gate.relative or gate.verdict is not None:
            add(("constraints", i), "a sweep constraint cannot be relative to a baseline")
        elif why := check_metric(gate.metric):
            add(("constraints", i), why)
    if sweep.objective.metric != "capacity" and (why := check_metric(sweep.objective.metric)):
        add(("objective",), why)
    space_loc: PathKey = ("space", "grid" if sweep.space.grid is not None else "points")
    for key in sweep.space.names():
        if why := _key_problem(key):
            if sweep.space.grid is not None:
                add((*space_loc, key), why)
            else:  # the first point that names it
                first = next(i for i, pt in enumerate(sweep.space.points or []) if key in pt)
                add((*space_loc, first, key), why)
    for key in sweep.set:
        if why := _key_problem(key):
            add(("set", key), why)
    _raise_if_any(problems)

    base_data, base_path, base_lines, base_dir = _base(sweep, path, lines, problems)
    loads = [sweep.load.search.start, sweep.load.search.max] if sweep.load.search else None
    loads = loads or [sweep.load.levels()[0], sweep.load.levels()[-1]]
    configs: list[Configuration] = []
    common = [f"{scenario_key(k)}={json.dumps(v)}" for k, v in sweep.set.items()]
    for n, params in enumerate(sweep.space.configurations(), start=1):
        cid = f"c{n:02d}"
        sets = [f"{scenario_key(k)}={json.dumps(v)}" for k, v in params.items()]
        scenarios = []
        for sessions in dict.fromkeys(loads):
            try:
                scenarios.append(
                    check_scenario_data(
                        copy.deepcopy(base_data),
                        base_path,
                        base_lines,
                        [
                            *common,
                            *scenario_sets,
                            *sets,
                            f"workload.sessions={sessions}",
                            f"name={sweep.name}-{cid}",
                        ],
                        base_dir=base_dir,
                    )
                )
            except ScenarioError as exc:
                at = _config_line(sweep, lines, n - 1)
                problems.add(
                    f"{path}:{at}: configuration {cid} ({', '.join(sets) or 'the base'}) at "
                    f"{sessions} sessions is not a valid scenario:\n  "
                    + str(exc).replace("\n", "\n  "),
                    at,
                )
                break
        else:
            configs.append(Configuration(cid, params, scenarios[0]))
    _raise_if_any(problems)
    return Plan(path, sweep, configs)


def _raise_if_any(problems: _Problems) -> None:
    if problems.items:
        raise SweepError("\n".join(problems.messages()))


def _config_line(sweep: SweepFile, lines: Mapping[PathKey, int], index: int) -> int:
    if sweep.space.points is not None:
        return _line_of(lines, ("space", "points", index))
    return _line_of(lines, ("space", "grid"))


def _base(
    sweep: SweepFile, path: Path, lines: Mapping[PathKey, int], problems: _Problems
) -> tuple[dict[str, Any], Path, dict[PathKey, int], Path]:
    """(data, file its lines refer to, line map, folder relative paths start from)."""
    if isinstance(sweep.base, dict):
        sub = {k[1:]: v for k, v in lines.items() if k[:1] == ("base",)}
        return copy.deepcopy(sweep.base), path, sub, path.resolve().parent
    target = Path(sweep.base).expanduser()
    if not target.is_absolute():
        target = (path.resolve().parent / target).resolve()
    if not target.is_file():
        line = _line_of(lines, ("base",))
        raise SweepError(f"{path}:{line}: field 'base': no such scenario file {target}")
    inner = _Problems()
    try:
        _, data, base_lines = _read_yaml(target, inner)
    except ScenarioError as exc:
        raise SweepError(f"base scenario {target}:\n{exc}") from None
    _raise_if_any(inner)
    return data, target, base_lines, target.parent
