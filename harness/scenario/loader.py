"""Load a scenario YAML file into a validated :class:`Scenario`.

Errors name the file, the line (from yaml node marks), the field path, and suggest the right key
for a typo. Everything the run will read is checked up front, before any process starts: the
file itself (UTF-8, no duplicate keys, bounded size/depth/alias expansion), every field (finite
numbers within bounds), the timeline, the gates, the archives a reload needs, the trace file,
the baseline file and the backend environment. All problems are reported at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.redact import is_secret_name, mask, redact_text
from harness.results.model import JUDGED_METRICS, check_metric
from serving.settings import RANGE_ERRORS, range_text

from . import backend_env
from .evidence import plan_warnings
from .models import MODEL_STORE, Scenario, StackSpec
from .tracefile import TraceError, load_trace_file
from .traffic import CONNECT_LEAD_S, plan_workload

PathKey = tuple[str | int, ...]
# Reads and checks a results.json (ValueError says what is wrong). Injected by harness.api so
# this package does not import the results layer (imports flow scenario -> ... -> results).
ResultsReader = Callable[[Path], object]


class ScenarioError(ValueError):
    """An invalid scenario file; the message names file:line, the field and a hint."""


# --------------------------------------------------------------------------- YAML + line map

# Bounds on what a scenario file may cost to read. Shipped scenarios are < 4 KB, < 200 nodes,
# depth < 8: these limits are far above any real scenario and far below harm.
MAX_FILE_BYTES = 1 << 20
# Metrics only the collectors measure (process CPU and memory, GPU, TorchServe's own metrics):
# summarised at the end of the run (harness/analysis/summary.py), so the abort-on-fail check
# while the run goes sees them as null (k6's "thresholds on metrics without data"); the
# generator's CPU falls back on the load's own figure. tests/harness/test_abort_on_fail.py
# checks this list against a real summary without collectors.
COLLECTOR_METRICS = ("cpu.", "gpu.", "torchserve.", "memory.")
# Slopes over the whole measured window (harness/analysis/drift.py): null mid-run until enough
# is measured, so an abort-on-fail check would stop a healthy run for lack of data.
WHOLE_RUN_METRICS = ("drift.",)
MAX_NODES = 20_000  # after alias expansion ("billion laughs" is refused here, not expanded)
MAX_DEPTH = 50


class _Problems:
    """Errors collected across every check, reported together as one ScenarioError."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, msg: str, line: int = 0) -> None:
        self.items.append((line, msg))

    def messages(self) -> list[str]:
        """Distinct messages in file order (line 0, no line known, first)."""
        ordered = sorted(self.items, key=lambda item: item[0])
        return list(dict.fromkeys(msg for _, msg in ordered))

    def raise_if_any(self) -> None:
        if self.items:
            raise ScenarioError("\n".join(self.messages()))


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScenarioError(
            f"{where}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _check_graph(root: yaml.Node, where: str) -> None:
    """Refuse a node graph too big once aliases are expanded, too deep, or recursive.

    Sizes are computed per distinct node (memoised), so the check itself costs O(file size)
    even when the expansion would be astronomically large.
    """
    size: dict[int, int] = {}
    depth_of: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: a hostile file must not blow Python's recursion limit here.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth_of[key] = 1 + max((depth_of[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise ScenarioError(
                    f"{where}:{node.start_mark.line + 1}: the document expands to more than "
                    f"{MAX_NODES} nodes (YAML anchors/aliases); a scenario is far smaller"
                )
            if depth_of[key] > MAX_DEPTH:
                raise ScenarioError(
                    f"{where}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise ScenarioError(f"{where}:{node.start_mark.line + 1}: recursive YAML alias")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def parse_yaml_text(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    """(data, root node) of YAML text, bounded in time and memory; ScenarioError otherwise.

    ``where`` names the source in messages (a file path, or ``--set KEY``).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_graph(node, where)
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{at}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ScenarioError(f"{where}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _line_map(root: yaml.Node, out: dict[PathKey, int], problems: _Problems, where: str) -> None:
    """Map every node path to the 1-based line of its key (or item); flag duplicate keys."""
    stack: list[tuple[yaml.Node, PathKey]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode) and key != "<<":
                    if key in seen:
                        problems.add(
                            f"{where}:{line}: duplicate key '{_dotted((*path, key))}' "
                            f"(first at line {seen[key]}): YAML would silently keep only "
                            "the last one",
                            line,
                        )
                    seen.setdefault(key, line)
                out[(*path, key)] = line
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[(*path, i)] = item.start_mark.line + 1
                stack.append((item, (*path, i)))


def _read_yaml(path: Path, problems: _Problems) -> tuple[str, Any, dict[PathKey, int]]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(
                f"{path}: {path.stat().st_size} bytes; a scenario file is at most "
                f"{MAX_FILE_BYTES} bytes"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc.strerror or exc}") from exc
    text = _decode(raw, str(path))
    data, node = parse_yaml_text(text, str(path))
    lines: dict[PathKey, int] = {}
    if node is not None:
        _line_map(node, lines, problems, str(path))
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario is a YAML mapping (name:, workload:, ...)")
    return text, data, lines


def _where(
    path: Path | str, lines: Mapping[PathKey, int], loc: PathKey, overridden: set[PathKey]
) -> str:
    for n in range(len(loc), -1, -1):
        prefix = tuple(loc[:n])
        if prefix in overridden:
            made = prefix in getattr(overridden, "created", ())
            note = ": not in the file, an override created it" if made else ""
            return f"{path} (--set {'.'.join(map(str, prefix))}{note})"
        if prefix in lines:
            return f"{path}:{lines[prefix]}"
    return str(path)


def _line_of(lines: Mapping[PathKey, int], loc: PathKey) -> int:
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return 0


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


# --------------------------------------------------------------------------- overrides


class Overridden(set[PathKey]):
    """The paths overrides set, and in ``created`` the blocks they created (absent before)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: set[PathKey] = set()


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> Overridden:
    """Apply ``key.path=value`` overrides in place (value parsed as YAML); returns the paths."""
    touched = Overridden()
    for item in overrides:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError(f"--set {key!r}: empty key")
        if len(raw) > MAX_FILE_BYTES:
            raise ScenarioError(f"--set {key}: value longer than {MAX_FILE_BYTES} bytes")
        value = parse_yaml_text(raw, f"--set {key.strip()}")[0] if raw.strip() else ""
        node: Any = data
        loc: list[str | int] = []
        for part in parts[:-1]:
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(f"--set {key}: {_dotted(loc)} has no item {part}")
                node = node[int(part)]
                loc.append(int(part))
                continue
            loc.append(part)
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
                # Not in the file: an error inside it is the override's, never a file line's
                # (`--arrival-rate` on a fixed-sessions scenario creates workload.arrivals).
                touched.add(tuple(loc))
                touched.created.add(tuple(loc))
            node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ScenarioError(f"--set {key}: {_dotted(loc)} has no item {last}")
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


def model_at(
    loc: Sequence[str | int], root: type[BaseModel] | None = None
) -> type[BaseModel] | None:
    """The pydantic model at ``loc`` below ``root`` (the Scenario by default); None below a
    free mapping or a plain field."""
    model: type[BaseModel] | None = root or Scenario
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
    exc: ValidationError,
    path: Path | str,
    lines: Mapping[PathKey, int],
    overridden: set[PathKey],
    prefix: PathKey = (),
) -> list[tuple[int, str]]:
    """(line, message) per pydantic error; secret values never shown, numbers-for-text explained.

    ``path``: the file (or, with no ``lines``, the name of the input: ``make_stack``);
    ``prefix``: where the validated model sits in a scenario (``("stack",)`` for a StackSpec).
    """
    msgs: list[tuple[int, str]] = []
    for err in exc.errors():
        loc: PathKey = (*prefix, *(p for p in err["loc"] if not _is_union_tag(p)))
        where = _where(path, lines, loc, overridden)
        line = _line_of(lines, loc)
        field = _dotted(loc)
        if err["type"] == "extra_forbidden":
            parent = model_at(loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            tip = f"; did you mean '{hint[0]}'?" if hint else ""
            msg = f"{where}: unknown key '{field}'{tip} (allowed here: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = f"{where}: missing required field '{field}'"
        else:
            got = err.get("input")
            secret = any(is_secret_name(part) for part in loc if isinstance(part, str))
            shown = (
                " (value hidden: secret)"
                if secret
                else ("" if isinstance(got, dict | list) else f" (got {redact_text(repr(got))})")
            )
            msg = f"{where}: field '{field}': {err['msg'].removeprefix('Value error, ')}{shown}"
            if err["type"] == "string_type" and isinstance(got, int | float) and not secret:
                # YAML read `2.0` as a number (and `2.10` as 2.1): only quotes keep the text.
                msg += (
                    f'; quote it to keep it as text: "{_yaml_scalar_text(lines, path, loc, got)}"'
                )
            elif err["type"] in ("finite_number",):
                msg += "; give a finite number"
            elif loc[:2] == ("rollout", "steps") and isinstance(got, float) and 0 < got < 1:
                msg += f"; steps are percent: write {got * 100:g} for {got * 100:g} %"
            elif err["type"] in RANGE_ERRORS and loc and isinstance(loc[-1], str):
                # The whole range, not only the bound crossed (stack.torchserve.* shares its
                # ranges with serving.local's CLI and the container's registrar).
                parent = model_at(loc[:-1])
                if parent is not None and loc[-1] in parent.model_fields:
                    msg += f"; accepted: {range_text(loc[-1], parent)}"
        msgs.append((line, msg))
    return msgs


def _yaml_scalar_text(
    lines: Mapping[PathKey, int], path: Path | str, loc: PathKey, got: Any
) -> str:
    """The value as written in the file (so `2.10` is suggested as "2.10", not "2.1")."""
    line = lines.get(loc)
    if line:
        try:
            text = Path(path).read_text(encoding="utf-8").splitlines()[line - 1]
            written = text.split(":", 1)[1].split("#", 1)[0].strip()
            if written and yaml.safe_load(written) == got:
                return written
        except (OSError, UnicodeDecodeError, IndexError, yaml.YAMLError):
            pass
    return str(got)


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


def _check_traffic(sc: Scenario) -> list[tuple[PathKey, str]]:
    """Rollout changes no session could observe, a rollout block that cannot run, an empty
    traffic plan, and abort-on-fail gates (parsed like ``gates``)."""
    problems: list[tuple[PathKey, str]] = []
    wl = sc.workload
    if wl.sessions is not None:
        last_start = wl.ramp_up_s + CONNECT_LEAD_S  # session starts: clock + lead
        why = (
            f"the {wl.sessions} fixed sessions all connect by t={last_start:g} s and the "
            "backend assigns a session's route once, at connect; use workload.arrivals or "
            "workload.stages so sessions keep arriving"
        )
    else:
        plan = plan_workload(wl, lambda _i: wl.duration_s, CONNECT_LEAD_S) or []
        if not plan:
            problems.append((("workload",), "the traffic model starts no session at all"))
        last_start = max((p.start_s for p in plan), default=0.0) + CONNECT_LEAD_S
        why = f"the last session arrives at t={last_start:.1f} s"
    for i, ev in enumerate(sc.timeline):
        if ev.action == "set_rollout" and ev.at_s >= last_start:
            problems.append(
                (
                    ("timeline", i, "at_s"),
                    f"set_rollout at {ev.at_s:g} s reaches no session: {why}",
                )
            )
    ro = sc.rollout
    if ro is not None:
        if not sc.stack.use_torchserve:
            problems.append((("rollout",), "a rollout needs stack.use_torchserve: true"))
        if wl.sessions is not None:
            problems.append((("rollout",), f"a rollout needs sessions that keep arriving: {why}"))
        if any(ev.action == "set_rollout" for ev in sc.timeline):
            problems.append(
                (("rollout",), "the rollout block sets the rollout itself: drop set_rollout events")
            )
        if ro.judge.source == "prometheus" and not sc.stack.prometheus.enabled:
            problems.append(
                (
                    ("rollout", "judge", "source"),
                    "source prometheus reads the stack's Prometheus: set "
                    "stack.prometheus.enabled: true",
                )
            )
        if ro.start_s >= wl.duration_s:
            problems.append(
                (
                    ("rollout", "start_s"),
                    f"the rollout starts at {ro.start_s:g} s, when the load has ended "
                    f"(workload.duration_s {wl.duration_s:g} s)",
                )
            )
    for loc, stages in (
        (("workload", "stages"), wl.stages),
        (("workload", "arrivals", "stages"), wl.arrivals and wl.arrivals.stages),
    ):
        total = sum(st.duration_s for st in stages or [])
        if total > wl.duration_s:
            problems.append(
                (
                    loc,
                    f"the stages last {total:g} s, past workload.duration_s "
                    f"({wl.duration_s:g} s): the last {total - wl.duration_s:g} s would never run; "
                    "shorten them or raise duration_s",
                )
            )  # fmt: skip
    abort = sc.abort_on_fail
    if abort is not None:
        measured = wl.duration_s - wl.warmup_s
        if abort.min_measured_s >= measured:
            problems.append(
                (
                    ("abort_on_fail", "min_measured_s"),
                    f"abort_on_fail.min_measured_s ({abort.min_measured_s:g} s) is not shorter "
                    f"than the measured time (duration_s - warmup_s = {measured:g} s): no check "
                    "would ever run",
                )
            )
        for i, gate in enumerate(abort.gates):
            if gate.metric.startswith(COLLECTOR_METRICS):
                problems.append(
                    (
                        ("abort_on_fail", "gates", i),
                        f"abort_on_fail gate {gate.expr!r}: '{gate.metric}' is measured by the "
                        "collectors, which report at the end of the run only; the check while "
                        "the run goes cannot see it (it would always stop the run). Keep it "
                        "in 'gates' (judged at the end)",
                    )
                )
            elif gate.metric.startswith(WHOLE_RUN_METRICS):
                problems.append(
                    (
                        ("abort_on_fail", "gates", i),
                        f"abort_on_fail gate {gate.expr!r}: '{gate.metric}' is a slope over the "
                        "whole measured window, null until 30 s are measured (it would stop a "
                        "healthy run for lack of data). Keep it in 'gates' (judged at the end)",
                    )
                )
    if sc.abort_on_fail is not None and wl.engine != "native":
        problems.append(
            (("abort_on_fail",), "abort_on_fail needs workload.engine: native (it reads the "
             "generator's frames while the run goes)")
        )  # fmt: skip
    if sc.abort_on_fail is not None:
        # The same checks as gates (grammar, catalogue), on a copy holding only these gates;
        # "baseline" is refused: there is none while the run goes.
        only = sc.model_copy(update={"gates": sc.abort_on_fail.gates, "timeline": []})
        problems += [
            (("abort_on_fail", *loc), msg) for loc, msg in _check_gates(only, has_baseline=False)
        ]
    return problems


def _rollout_warnings(sc: Scenario) -> list[tuple[PathKey, str]]:
    """A rollout that starts from a share already on TorchServe, and steps whose minimum data
    the scenario's budget and duration cannot reach (harness.scenario.evidence)."""
    if sc.rollout is None:
        return []
    out: list[tuple[PathKey, str]] = []
    first = sc.rollout.steps[0]
    if sc.stack.rollout_percent > 0:
        out.append(
            (
                ("stack", "rollout_percent"),
                f"the rollout starts from {sc.stack.rollout_percent} % (the default is 100): "
                f"sessions before its first step ({first} %) already go to TorchServe, so that "
                "step's cohorts are not what it says; set stack.rollout_percent: 0",
            )
        )
    ro = sc.rollout
    end = ro.start_s + len(ro.steps) * ro.hold_s
    if end > sc.workload.duration_s:
        # A step ends as soon as it is decided (hold_s is a maximum), so this is a warning.
        out.append(
            (
                ("rollout", "hold_s"),
                f"{len(ro.steps)} steps of {ro.hold_s:g} s from t={ro.start_s:g} s end at "
                f"{end:g} s, past workload.duration_s ({sc.workload.duration_s:g} s): the "
                "last steps run only if the first ones decide early",
            )
        )
    return out + plan_warnings(sc)


def _check_gates(sc: Scenario, has_baseline: bool) -> list[tuple[PathKey, str]]:
    """Each gate's metric against the catalogue and the timeline (the syntax was checked when
    the model was validated: ``Scenario.gates`` holds parsed gates)."""
    problems: list[tuple[PathKey, str]] = []
    actions = [ev.action for ev in sc.timeline]
    for i, gate in enumerate(sc.gates):
        loc: PathKey = ("gates", i)
        if gate.verdict is not None:
            problems += [(loc, why) for why in _check_compare_gate(gate.expr, gate.metric)]
            if not has_baseline:
                problems.append(
                    (
                        loc,
                        f"gate {gate.expr!r} reads the comparison with a baseline, but the "
                        "scenario has no 'baseline' (and none was given with --baseline); "
                        "abort_on_fail gates never have one (the comparison needs the whole run)",
                    )
                )
            continue
        if gate.metric.startswith("compare."):
            problems.append(
                (
                    loc,
                    f"gate {gate.expr!r}: a compare gate names the comparison's verdict, "
                    f"'{gate.metric} != worse' (== or != with worse, better or same)",
                )
            )
            continue
        if why := check_metric(gate.metric, actions):
            problems.append((loc, why))
        if gate.relative and not has_baseline:
            problems.append(
                (
                    loc,
                    f"gate {gate.expr!r} is relative to a baseline, but the scenario has no "
                    "'baseline' (and none was given with --baseline)",
                )
            )
    return problems


def _check_compare_gate(expr: str, metric: str) -> list[str]:
    """A ``compare.METRIC`` gate's metric must be one the comparison judges."""
    if metric in JUDGED_METRICS:
        return []
    near = difflib.get_close_matches(metric, JUDGED_METRICS, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return [
        f"gate {expr!r}: the comparison does not judge {metric!r}; {hint}compared metrics: "
        f"{', '.join(JUDGED_METRICS)}"
    ]


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


def _check_archives(sc: Scenario) -> list[tuple[PathKey, str]]:
    """Every model version TorchServe is asked to load has an archive (local/compose stacks)."""
    spec = sc.stack
    if not spec.use_torchserve or spec.driver == "external":
        return []
    wanted: list[tuple[PathKey, str]] = [
        (("stack", "torchserve", "model_version"), spec.torchserve.model_version)
    ]
    wanted += [
        (("timeline", i, "version"), ev.version)
        for i, ev in enumerate(sc.timeline)
        if ev.action == "reload_model" and ev.version
    ]
    problems: list[tuple[PathKey, str]] = []
    for loc, version in wanted:
        archive = MODEL_STORE / f"signflow-{version}.mar"
        if not archive.is_file():
            have = sorted(p.stem.removeprefix("signflow-") for p in MODEL_STORE.glob("*.mar"))
            problems.append(
                (
                    loc,
                    f"no model archive for version {version} ({archive}); archives built: "
                    f"{', '.join(have) or 'none (run make setup)'}",
                )
            )
    return problems


def _check_backend_env(sc: Scenario) -> tuple[list[tuple[PathKey, str]], list[tuple[PathKey, str]]]:
    """(errors, warnings) of stack.backend.env and of the synthetic rest gaps it governs."""
    env = sc.stack.backend.env
    base: PathKey = ("stack", "backend", "env")
    errors: list[tuple[PathKey, str]] = []
    warnings: list[tuple[PathKey, str]] = []
    if env and sc.stack.driver == "external":
        warnings.append((base, "the external driver cannot pass stack.backend.env to the backend"))
    else:
        errs, warns = backend_env.env_problems(env)
        errs += backend_env.env_value_problems(env)
        errors += [((*base, name), msg) for name, msg in errs]
        warnings += [((*base, name), msg) for name, msg in warns]
    syn = sc.workload.trace.synthetic
    # Merged signs only matter to a gate on accuracy (a scenario may shorten rests on purpose,
    # for a higher inference rate); there the merge is what failed the shipped 0.75 gate.
    gates_accuracy = any(g.metric.startswith("accuracy") for g in sc.gates)
    if syn is not None and gates_accuracy:
        raw = backend_env.effective_setting(env, "REST_FRAMES_TO_END")
        end_after = (
            int(raw)
            if raw and raw.strip().isdigit()
            else backend_env.backend_default("rest_frames_to_end")
        )
        if syn.rest_frames[0] <= end_after:
            warnings.append(
                (
                    ("workload", "trace", "synthetic", "rest_frames"),
                    f"rest gaps from {syn.rest_frames[0]} frames, but the backend ends a sign "
                    f"after {end_after} rest frames: neighbouring signs can merge and the "
                    f"accuracy gate fail; use a lower bound above {end_after}",
                )
            )
    return errors, warnings


def _check_remote_workers(sc: Scenario) -> list[tuple[PathKey, str]]:
    """Warnings for Locust workers started elsewhere that could not take part.

    Warnings, not errors: a worker started by hand on this same machine
    (``harness worker --master 127.0.0.1:PORT``) counts as "remote" too, and loopback works there.
    """
    wl = sc.workload
    remote = wl.locust.expect_remote_workers if wl.engine == "locust" and wl.locust else 0
    if not remote or wl.locust is None:
        return []
    bind = wl.locust.master_bind
    found: list[tuple[PathKey, str]] = []
    if _is_loopback(bind.host):
        found.append((
            ("workload", "locust", "master_bind", "host"),
            f"{bind.host} is loopback: {remote} remote worker(s) on other machines or in "
            "containers cannot reach the master; bind an address they can reach (README, "
            "'More load than one machine')",
        ))  # fmt: skip
    if bind.port == 0:
        found.append((
            ("workload", "locust", "master_bind", "port"),
            "0 picks a free port the remote workers cannot know: fix one (Locust's is 5557)",
        ))  # fmt: skip
    if sc.stack.driver != "external":
        found.append((
            ("stack", "driver"),
            f"the {sc.stack.driver} stack publishes its backend on loopback only: workers on "
            "other machines or in containers cannot reach it; use driver external with a "
            "ws_url they can reach",
        ))  # fmt: skip
    return found


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_synthetic(sc: Scenario) -> list[tuple[PathKey, str]]:
    syn = sc.workload.trace.synthetic
    if syn is None or not syn.sign_mix:
        return []
    from backend_patch.app.ml.synthetic import SIGN_CLASSES

    return [
        (
            ("workload", "trace", "synthetic", "sign_mix", i),
            f"unknown sign {label!r}; known: {', '.join(SIGN_CLASSES)}",
        )
        for i, label in enumerate(syn.sign_mix)
        if label not in SIGN_CLASSES
    ]


def baseline_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """The ``--set`` overrides that also apply to a ``baseline.scenario`` run.

    Workload/stack overrides (durations, sessions) keep both runs comparable; name, gates,
    timeline, baseline and description belong to the main scenario only.
    """
    skip = ("name", "gates", "timeline", "baseline", "description")
    return tuple(o for o in overrides if not o.split("=", 1)[0].strip().startswith(skip))


def _check_files(
    sc: Scenario, overrides: Sequence[str], read_results: ResultsReader | None
) -> list[tuple[PathKey, str]]:
    """Files the run will read exist and parse: the trace, the baseline results/scenario
    (results: with ``read_results`` when given, the results layer's reader)."""
    problems: list[tuple[PathKey, str]] = []
    if sc.workload.trace.file:
        loc: PathKey = ("workload", "trace", "file")
        trace = Path(sc.workload.trace.file)
        if not trace.is_file():
            problems.append((loc, f"no such file {trace}"))
        else:
            try:
                load_trace_file(trace)
            except TraceError as exc:
                problems.append((loc, str(exc)))
    if sc.baseline:
        key = "results" if sc.baseline.results else "scenario"
        target = Path(str(sc.baseline.results or sc.baseline.scenario))
        if not target.is_file():
            problems.append((("baseline", key), f"no such file {target}"))
        elif key == "results" and read_results is not None:
            try:
                read_results(target)
            except ValueError as exc:
                problems.append((("baseline", key), str(exc)))
        else:  # the baseline scenario runs first: it must be valid too (its own baseline unused)
            try:
                load_scenario(
                    target, sc.baseline.overrides, _as_baseline=True, read_results=read_results
                )
            except ScenarioError as exc:
                problems.append((("baseline", key), f"the baseline scenario is invalid:\n{exc}"))
    return problems


# --------------------------------------------------------------------------- entry point


def load_scenario(
    path: Path | str,
    overrides: Sequence[str] = (),
    *,
    has_external_baseline: bool = False,
    warnings: list[str] | None = None,
    read_results: ResultsReader | None = None,
    _as_baseline: bool = False,
) -> Scenario:
    """Read, override, validate and check a scenario file and every file it names.

    All problems found are reported together in one ScenarioError (file:line: field: message).
    ``has_external_baseline``: a baseline results file was given on the command line, so gates
    relative to ``baseline`` are allowed even when the scenario names none. ``warnings``, when
    given, receives the non-fatal findings (a likely typo in stack.backend.env...).
    ``read_results``: checks a ``baseline.results`` file beyond its existence (harness.api's
    ``load_scenario`` passes the results reader; without it only existence is checked).
    """
    path = Path(path)
    problems = _Problems()
    _, data, lines = _read_yaml(path, problems)
    return check_scenario_data(
        data,
        path,
        lines,
        overrides,
        problems=problems,
        has_external_baseline=has_external_baseline,
        warnings=warnings,
        read_results=read_results,
        _as_baseline=_as_baseline,
    )


def check_scenario_data(
    data: dict[str, Any],
    path: Path,
    lines: Mapping[PathKey, int],
    overrides: Sequence[str] = (),
    *,
    base_dir: Path | None = None,
    problems: _Problems | None = None,
    has_external_baseline: bool = False,
    warnings: list[str] | None = None,
    read_results: ResultsReader | None = None,
    _as_baseline: bool = False,
) -> Scenario:
    """Validate and check scenario ``data`` read from ``path`` (see :func:`load_scenario`).

    ``lines`` maps field paths of ``data`` to lines of ``path`` (a sweep's inline ``base:``
    passes its own sub-map, so messages name the sweep file's lines); ``base_dir``: where
    relative paths start (default: ``path``'s folder). ``data`` is changed by the overrides.
    """
    problems = problems or _Problems()
    overridden = apply_overrides(data, overrides)

    def report(items: Sequence[tuple[PathKey, str]], sink: _Problems) -> None:
        for loc, msg in items:
            sink.add(
                f"{_where(path, lines, loc, overridden)}: field '{_dotted(loc)}': {msg}",
                _line_of(lines, loc),
            )

    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        for line, msg in _format_validation(exc, path, lines, overridden):
            problems.add(msg, line)
        raise ScenarioError("\n".join(problems.messages())) from None
    sc = _resolve_paths(sc, base_dir or path.resolve().parent)
    has_baseline = has_external_baseline or sc.baseline is not None
    if _as_baseline and sc.baseline is not None:  # a baseline run ignores its own baseline
        sc = sc.model_copy(update={"baseline": None})
    if (
        sc.baseline is not None
        and sc.baseline.scenario
        and (extra := baseline_overrides(overrides))
    ):
        # The overrides travel with the scenario to its baseline run (issue 20 item 4).
        spec = sc.baseline.model_copy(update={"overrides": [*sc.baseline.overrides, *extra]})
        sc = sc.model_copy(update={"baseline": spec})
    env_errors, env_warnings = _check_backend_env(sc)
    report(
        _check_timeline(sc)
        + _check_traffic(sc)
        + _check_gates(sc, has_baseline=has_baseline)
        + _check_archives(sc)
        + _check_synthetic(sc)
        + env_errors
        + _check_files(sc, overrides, read_results),
        problems,
    )
    problems.raise_if_any()
    if warnings is not None:
        found = _Problems()
        report(env_warnings + _check_remote_workers(sc) + _rollout_warnings(sc), found)
        warnings.extend(found.messages())
    return sc


def as_stack_spec(spec: StackSpec | Mapping[str, object], source: str = "make_stack") -> StackSpec:
    """The ``stack`` section as a :class:`StackSpec`, coerced once at the door
    (:func:`harness.stack.make_stack`): a StackSpec as it is; a mapping of the same shape (a
    library user's) validated by the model, with the rules of a scenario file's ``stack:``.

    Raises ScenarioError (a ValueError) with one line per bad field, such as ``make_stack:
    field 'stack.torchserve.batch_size': Input should be greater than or equal to 1 (got 0);
    accepted: 1..1024`` (``source`` first; secret values hidden); TypeError for anything
    that is neither.
    """
    if isinstance(spec, StackSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{source}: a stack spec is a harness.scenario.StackSpec or a mapping of its "
            f"fields, got {type(spec).__name__}"
        )
    try:
        return StackSpec.model_validate(dict(spec))
    except ValidationError as exc:
        msgs = _format_validation(exc, source, {}, set(), prefix=("stack",))
        raise ScenarioError("\n".join(msg for _line, msg in msgs)) from None


def scenario_to_yaml(sc: Scenario) -> str:
    """The resolved scenario as YAML text (results ``scenario_yaml``), secrets masked."""
    return yaml.safe_dump(mask(sc.model_dump(mode="json")), sort_keys=False, allow_unicode=True)
