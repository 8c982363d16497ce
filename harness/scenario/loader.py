"""Load a scenario YAML file into a validated :class:`Scenario`.

Errors name the file, the line (from yaml node marks), the field path, and suggest the right key
for a typo. Impossible timelines are rejected up front, before any process starts.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.analysis.gates import GateSyntaxError, check_metric, parse_gate

from .models import Scenario

PathKey = tuple[str | int, ...]


class ScenarioError(ValueError):
    """An invalid scenario file; the message names file:line, the field and a hint."""


# --------------------------------------------------------------------------- YAML + line map


def _line_map(node: yaml.Node, path: PathKey, out: dict[PathKey, int]) -> None:
    """Map every node path to the 1-based line of its key (or item) in the file."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), out)


def _read_yaml(path: Path) -> tuple[str, Any, dict[PathKey, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc.strerror or exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{where}: invalid YAML: {problem}") from exc
    lines: dict[PathKey, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario is a YAML mapping (name:, workload:, ...)")
    return text, data, lines


def _where(path: Path, lines: Mapping[PathKey, int], loc: PathKey, overridden: set[PathKey]) -> str:
    for n in range(len(loc), -1, -1):
        prefix = tuple(loc[:n])
        if prefix in overridden:
            return f"{path} (--set {'.'.join(map(str, prefix))})"
        if prefix in lines:
            return f"{path}:{lines[prefix]}"
    return str(path)


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


# --------------------------------------------------------------------------- overrides


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> set[PathKey]:
    """Apply ``key.path=value`` overrides in place (value parsed as YAML); returns the paths."""
    touched: set[PathKey] = set()
    for item in overrides:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ScenarioError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
        node: Any = data
        loc: list[str | int] = []
        for part in parts[:-1]:
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(f"--set {item!r}: {_dotted(loc)} has no item {part}")
                node = node[int(part)]
                loc.append(int(part))
                continue
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
            loc.append(part)
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ScenarioError(f"--set {item!r}: {_dotted(loc)} has no item {last}")
            node[int(last)] = value
            loc.append(int(last))
        else:
            node[last] = value
            loc.append(last)
        touched.add(tuple(loc))
    return touched


# --------------------------------------------------------------------------- error messages


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
        return None
    if origin in (list, tuple, dict):
        args = typing.get_args(annotation)
        return _unwrap_model(args[-1]) if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Scenario
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _unwrap_model(field.annotation)
    return model


def _format_validation(
    exc: ValidationError, path: Path, lines: Mapping[PathKey, int], overridden: set[PathKey]
) -> str:
    msgs = []
    for err in exc.errors():
        loc: PathKey = tuple(p for p in err["loc"] if not _is_union_tag(p))
        where = _where(path, lines, loc, overridden)
        field = _dotted(loc)
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            tip = f"; did you mean '{hint[0]}'?" if hint else ""
            msgs.append(f"{where}: unknown key '{field}'{tip} (allowed here: {', '.join(allowed)})")
        elif err["type"] == "missing":
            msgs.append(f"{where}: missing required field '{field}'")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            msg = err["msg"].removeprefix("Value error, ")
            msgs.append(f"{where}: field '{field}': {msg}{shown}")
    return "\n".join(msgs)


def _is_union_tag(part: object) -> bool:
    # pydantic adds the member type name to the loc of union errors ("str", "function-after[...]")
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


# --------------------------------------------------------------------------- semantic checks


def _check_timeline(sc: Scenario) -> list[tuple[PathKey, str]]:
    problems: list[tuple[PathKey, str]] = []
    spec = sc.stack
    ts_up = spec.use_torchserve
    version = spec.torchserve.model_version
    previous_at = -1.0
    external_mgmt = spec.external.torchserve_management_url if spec.external else None
    for i, ev in enumerate(sc.timeline):
        loc: PathKey = ("timeline", i)
        if ev.at_s > sc.workload.duration_s:
            problems.append(
                (
                    (*loc, "at_s"),
                    f"event at {ev.at_s:g} s is beyond workload.duration_s "
                    f"({sc.workload.duration_s:g} s): it would never run",
                )
            )
        if ev.at_s < previous_at:
            problems.append(((*loc, "at_s"), "events must be listed in time order"))
        previous_at = ev.at_s
        if ev.action in ("kill_torchserve", "start_torchserve", "reload_model"):
            if not spec.use_torchserve:
                problems.append(
                    ((*loc, "action"), f"{ev.action} but stack.use_torchserve is false")
                )
                continue
            if spec.driver == "external" and ev.action != "reload_model":
                problems.append(
                    ((*loc, "action"), f"{ev.action} is not possible on an external stack")
                )
            if spec.driver == "external" and ev.action == "reload_model" and not external_mgmt:
                problems.append(
                    (
                        (*loc, "action"),
                        "reload_model on an external stack needs "
                        "stack.external.torchserve_management_url",
                    )
                )
        if ev.action == "kill_torchserve":
            if not ts_up:
                problems.append(
                    ((*loc, "action"), "kill_torchserve but TorchServe is already down")
                )
            ts_up = False
        elif ev.action == "start_torchserve":
            if ts_up:
                problems.append(
                    (
                        (*loc, "action"),
                        "start_torchserve without a prior kill_torchserve (it is already running)",
                    )
                )
            ts_up = True
        elif ev.action == "reload_model":
            if not ts_up and spec.use_torchserve:
                problems.append(((*loc, "action"), "reload_model while TorchServe is down"))
            if ev.version == version:
                problems.append(
                    ((*loc, "version"), f"reload_model to version {ev.version}, already loaded")
                )
            version = ev.version or version
    return problems


def _check_gates(sc: Scenario, has_baseline: bool) -> list[tuple[PathKey, str]]:
    problems: list[tuple[PathKey, str]] = []
    actions = [ev.action for ev in sc.timeline]
    for i, expr in enumerate(sc.gates):
        loc: PathKey = ("gates", i)
        try:
            gate = parse_gate(expr)
        except GateSyntaxError as exc:
            problems.append((loc, str(exc)))
            continue
        # Every metric against the catalogue, and fault metrics against the timeline.
        if why := check_metric(gate.metric, actions):
            problems.append((loc, why))
        if gate.relative and not has_baseline:
            problems.append(
                (
                    loc,
                    f"gate {expr!r} is relative to a baseline, but the scenario has no "
                    "'baseline' (and none was given with --baseline)",
                )
            )
    return problems


def _resolve_paths(sc: Scenario, base_dir: Path) -> Scenario:
    def absolute(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base_dir / q).resolve())

    data = sc.model_dump()
    trace = data["workload"]["trace"]
    if trace.get("file"):
        trace["file"] = absolute(trace["file"])
    if data.get("baseline"):
        for key in ("results", "scenario"):
            if data["baseline"].get(key):
                data["baseline"][key] = absolute(data["baseline"][key])
    compose = data["stack"].get("compose")
    if compose:
        if compose.get("file"):
            compose["file"] = absolute(compose["file"])
        compose["overrides"] = [absolute(f) for f in compose.get("overrides") or []]
    return Scenario.model_validate(data)


# --------------------------------------------------------------------------- entry point


def load_scenario(
    path: Path | str, overrides: Sequence[str] = (), *, has_external_baseline: bool = False
) -> Scenario:
    """Read, override, validate and check a scenario file.

    ``has_external_baseline``: a baseline results file was given on the command line, so gates
    relative to ``baseline`` are allowed even when the scenario names none.
    """
    path = Path(path)
    _, data, lines = _read_yaml(path)
    overridden = apply_overrides(data, overrides)
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_validation(exc, path, lines, overridden)) from None
    problems = _check_timeline(sc) + _check_gates(
        sc, has_baseline=has_external_baseline or sc.baseline is not None
    )
    if problems:
        raise ScenarioError(
            "\n".join(
                f"{_where(path, lines, loc, overridden)}: field '{_dotted(loc)}': {msg}"
                for loc, msg in problems
            )
        )
    sc = _resolve_paths(sc, path.resolve().parent)
    if sc.workload.trace.file and not Path(sc.workload.trace.file).is_file():
        loc = ("workload", "trace", "file")
        raise ScenarioError(
            f"{_where(path, lines, loc, overridden)}: field 'workload.trace.file': "
            f"no such file {sc.workload.trace.file}"
        )
    if sc.baseline:
        target = sc.baseline.results or sc.baseline.scenario
        key = "results" if sc.baseline.results else "scenario"
        if target and not Path(target).is_file():
            loc = ("baseline", key)
            raise ScenarioError(
                f"{_where(path, lines, loc, overridden)}: field 'baseline.{key}': "
                f"no such file {target}"
            )
    return sc


def scenario_to_yaml(sc: Scenario) -> str:
    """The resolved scenario as YAML text (results ``scenario_yaml``)."""
    return yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
