"""Run a sweep plan: one stack per configuration (kept up over its load levels), one ordinary
run directory per point, then sweep.json and sweep.html.

Layout of ``<out>/<UTC time>-<sweep name>/``::

    sweep.json  sweep.html  sweep-file.yaml
    c01/stack/            the configuration's stack (its logs, collected when it stops)
    c01/s0008/            one run: results.json, junit.xml, report.html

Ctrl-C (and SIGTERM/SIGHUP, see harness.runner.interrupts): the current run writes its partial
results, the stack is stopped, and sweep.json/sweep.html are written with every finished point
(``status: interrupted``) before KeyboardInterrupt is re-raised.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from harness.scenario.gates import parse_gate
from harness.scenario.models import Scenario

from .analysis import (
    cost,
    cost_words,
    figures,
    outcome,
    pareto_front,
    reason_text,
    recommend,
)
from .loader import RUN_OVERHEAD_S, Configuration, Plan
from .model import ConfigurationResult, Recommendation
from .search import CapacitySearch, Outcome

SCHEMA = "signflow.sweep"
SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- the one adapter


@contextlib.contextmanager
def open_stack(scenario: Scenario, stack_dir: Path) -> Iterator[Any]:
    """Start the scenario's stack (registered against leftovers) and stop it on exit."""
    from harness.stack import make_stack
    from harness.stack.procs import RunRegistration

    stack_dir.mkdir(parents=True, exist_ok=True)
    with RunRegistration(stack_dir) as registration:
        built = make_stack(scenario.stack, stack_dir)
        registration.note(compose_project=getattr(built, "project", None))
        with built as stack:
            try:
                yield stack
            finally:
                with contextlib.suppress(Exception):
                    stack.collect_logs(stack_dir / "logs")


def run_point(
    scenario: Scenario, stack: Any, run_dir: Path, progress: Any
) -> tuple[dict[str, Any], int]:
    """Run ``scenario``'s load on the entered ``stack`` into ``run_dir``: (results, exit code).

    The one place the sweep calls the run library (switching to ``harness.run`` is this edit).
    """
    from harness.runner.execute import run_scenario

    # The runner, not harness.run: a sweep point has no baseline of its own to resolve.
    return run_scenario(scenario, run_dir=run_dir, on_progress=progress, stack=stack)


# --------------------------------------------------------------------------- progress


class SweepProgress:
    """Lines ``[sweep] point i/n cXX (params) at N sessions | elapsed, ETA`` on ``stream``."""

    def __init__(self, plan: Plan, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = min(plan.max_runs(), plan.sweep.budget.max_runs)
        self.started = time.monotonic()
        self.plan = plan

    def say(self, text: str) -> None:
        """A line of its own."""
        print(f"[sweep] {text}", file=self.stream, flush=True)

    def point(self, i: int, config: Configuration, sessions: int, done_s: list[float]) -> None:
        """Announce point ``i`` (1-based); the ETA uses the mean of finished runs."""
        elapsed = time.monotonic() - self.started
        per = sum(done_s) / len(done_s) if done_s else None
        left = self.total - i + 1
        per_run = per or (config.scenario.workload.duration_s + RUN_OVERHEAD_S)
        eta = min(left * per_run, max(self.plan.sweep.budget.max_minutes * 60 - elapsed, 0))
        self.say(
            f"point {i}/{self.total} {config.id} ({config.label or 'base'}) at {sessions} "
            f"sessions | elapsed {_mmss(elapsed)}, ETA <= {_mmss(eta)}"
        )


def _mmss(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s"


# --------------------------------------------------------------------------- the sweep


@dataclass
class _State:
    plan: Plan
    out: Path
    started: datetime
    t0: float = field(default_factory=time.monotonic)
    points: list[dict[str, Any]] = field(default_factory=list)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    stack_starts: int = 0
    status: str = "complete"
    run_seconds: list[float] = field(default_factory=list)

    def budget_left(self, next_run_s: float) -> str | None:
        """Why the next run would break the budget (None: it fits)."""
        b = self.plan.sweep.budget
        if len(self.points) >= b.max_runs:
            return f"budget: {b.max_runs} runs used"
        if time.monotonic() - self.t0 + next_run_s > b.max_minutes * 60:
            return f"budget: the next run would pass {b.max_minutes:g} minutes"
        return None


def run_sweep(
    plan: Plan, out_dir: Path, stream: TextIO | None = None
) -> tuple[dict[str, Any], int]:
    """Run every configuration of ``plan`` under ``out_dir``; (sweep document, exit code).

    Exit: 0 a configuration meets the constraints, 1 none does, 3 none could be measured
    because a stack failed; KeyboardInterrupt after writing the partial sweep (the CLI: 130).
    """
    from harness.runner.execute import make_run_dir, stop_leftovers
    from harness.stack import StackError

    stop_leftovers()
    started = datetime.now(UTC)
    _, sweep_dir = make_run_dir(out_dir, plan.sweep.name, started)
    (sweep_dir / "sweep-file.yaml").write_bytes(plan.path.read_bytes())
    st = _State(plan, sweep_dir, started)
    show = SweepProgress(plan, stream)
    show.say(f"{len(plan.configurations)} configurations -> {sweep_dir}")
    for c in plan.configurations:
        st.configs[c.id] = _config_entry(c)
    current_key: str | None = None
    stack_cm: contextlib.ExitStack | None = None
    stack: Any = None
    interrupted = False
    try:
        for config in plan.configurations:
            entry = st.configs[config.id]
            search = CapacitySearch(plan.sweep.load.search) if plan.sweep.load.search else None
            levels = iter(plan.levels())
            # model_copy skips validation: parse the constraints into the Gate objects that
            # Scenario.gates holds (the sweep loader already checked their syntax and metrics).
            constraints = [parse_gate(c) for c in plan.sweep.constraints]
            scenario = config.scenario.model_copy(update={"gates": constraints})
            while True:
                sessions = search.next_level() if search else next(levels, None)
                if sessions is None:
                    break
                run_s = scenario.workload.duration_s + RUN_OVERHEAD_S
                key = scenario.stack.model_dump_json()
                if key != current_key:
                    run_s += plan.sweep.stack_start_s
                if why := st.budget_left(run_s):
                    st.status = "budget"
                    entry["note"] = why
                    if search:
                        search.stop(why)
                    break
                if key != current_key:
                    if stack_cm is not None:
                        stack_cm.close()
                        stack_cm, current_key = None, None
                    show.say(f"starting the stack for {config.id} ({config.label or 'base'})")
                    stack_cm = contextlib.ExitStack()
                    st.stack_starts += 1
                    try:
                        stack = stack_cm.enter_context(
                            open_stack(scenario, sweep_dir / config.id / "stack")
                        )
                    except StackError as exc:
                        stack_cm.close()
                        stack_cm = None
                        entry["status"], entry["note"] = "error", f"stack failed: {exc}"
                        show.say(f"{config.id}: the stack did not start: {exc}")
                        break
                    current_key = key
                show.point(len(st.points) + 1, config, sessions, st.run_seconds)
                t_run = time.monotonic()
                # A level's second run (search.confirm) gets its own point and folder.
                again = search.tries(sessions) if search else 0
                level = f"s{sessions:04d}" + (f"-r{again + 1}" if again else "")
                pid = f"{config.id}-{level}"
                run_dir = sweep_dir / config.id / level
                try:
                    with _quiet_progress(f"{config.id}@{sessions}", stream) as progress:
                        doc, code = run_point(
                            scenario.model_copy(
                                update={
                                    "workload": scenario.workload.model_copy(
                                        update={"sessions": sessions}
                                    )
                                }
                            ),
                            stack,
                            run_dir,
                            progress,
                        )
                except KeyboardInterrupt:
                    _record_partial(st, config, pid, sessions, run_dir)
                    raise
                st.run_seconds.append(time.monotonic() - t_run)
                result, why = outcome(doc, code)
                _record(st, config, pid, sessions, run_dir, doc, result, why)
                show.say(f"  {pid}: {result}{f' ({why})' if why else ''}")
                if search:
                    search.record(sessions, result, why)
                elif result == "error":
                    break
            _finish_config(entry, search, st)
    except KeyboardInterrupt:
        interrupted = True
        st.status = "interrupted"
        for entry in st.configs.values():  # the configuration cut short: undecided
            if entry["status"] == "not run" and entry["points"]:
                entry["status"], entry["note"] = "unknown", "interrupted"
    finally:
        if stack_cm is not None:
            with contextlib.suppress(Exception):
                stack_cm.close()
    doc = build_document(st)
    from .report import write_report

    write_documents(sweep_dir, doc, write_report)
    if interrupted:
        print(f"interrupted: partial sweep in {sweep_dir}/sweep.json", file=sys.stderr)
        raise KeyboardInterrupt
    if doc["recommendation"] is not None:
        return doc, 0
    errors = [c for c in doc["configurations"] if c["status"] == "error"]
    return doc, 3 if errors and len(errors) == len(doc["configurations"]) else 1


@contextlib.contextmanager
def _quiet_progress(name: str, stream: TextIO | None) -> Iterator[Any]:
    """The run's own progress: plain lines every 10 s (the sweep line says the rest)."""
    from harness.runner.progress import PlainProgress

    yield PlainProgress(stream or sys.stderr, every_s=10.0)


def _config_entry(c: Configuration) -> dict[str, Any]:
    sc = c.scenario.model_dump(mode="json")
    return {
        "id": c.id,
        "label": c.label,
        "params": c.params,
        "stack": sc["stack"],
        "fps": sc["workload"]["fps"],
        "cost": list(cost(c.params, sc)),
        "cost_words": cost_words(sc),
        "status": "not run",
        "value": None,
        "capacity": None,
        "capacity_note": None,
        "note": None,
        "points": [],
        "best_point": None,
    }


def _record(
    st: _State,
    config: Configuration,
    pid: str,
    sessions: int,
    run_dir: Path,
    doc: dict[str, Any],
    result: Outcome,
    why: str | None,
) -> None:
    st.docs[pid] = doc
    st.points.append(
        {
            "id": pid,
            "config": config.id,
            "sessions": sessions,
            "run_dir": str(run_dir.relative_to(st.out)),
            "verdict": doc.get("verdict"),
            "valid": doc.get("valid"),
            "invalid_reasons": [reason_text(r) for r in doc.get("invalid_reasons") or []],
            "outcome": result,
            "why": why,
            "figures": figures(doc),
            "constraints": [
                {k: g.get(k) for k in ("expr", "measured", "passed", "reason")}
                for g in doc.get("gates") or []
            ],
        }
    )
    st.configs[config.id]["points"].append(pid)


def _record_partial(
    st: _State, config: Configuration, pid: str, sessions: int, run_dir: Path
) -> None:
    """The interrupted run, if it left results (kept, marked interrupted, never counted)."""
    from harness.results.writer import read_results, results_document

    with contextlib.suppress(Exception):
        doc = results_document(read_results(run_dir / "results.json"))
        _record(st, config, pid, sessions, run_dir, doc, "error", "interrupted")


def _finish_config(entry: dict[str, Any], search: CapacitySearch | None, st: _State) -> None:
    pts = [p for p in st.points if p["config"] == entry["id"]]
    if entry["status"] == "error" or not pts:
        return
    objective = st.plan.sweep.objective
    if search is not None:
        entry["capacity"] = search.capacity
        entry["capacity_note"] = search.note
        entry["search"] = [{"sessions": n, "outcome": o} for n, o in search.levels]
        passing = [p for p in pts if p["outcome"] == "pass"]
        entry["best_point"] = max(passing, key=lambda p: p["sessions"])["id"] if passing else None
        # Passing at search.max is a lower bound, but it does meet the constraints there.
        at_max = search.stopped is None and search.failed is None and search.passed is not None
        entry["capacity_at_least"] = search.passed
        entry["censored"] = search.censored
        if objective.metric == "capacity":
            entry["value"] = search.passed if at_max else search.capacity
        elif entry["best_point"]:
            entry["value"] = _value(st, entry["best_point"], objective.metric)
        if (search.capacity is not None and search.capacity > 0) or at_max:
            entry["status"] = "met"
        elif search.capacity == 0:
            entry["status"] = "not met"
        else:
            entry["status"] = "unknown"
        return
    outcomes = {p["outcome"] for p in pts}
    complete = len(pts) == len(st.plan.levels())
    if outcomes == {"pass"} and complete:
        entry["status"] = "met"
        top = max(pts, key=lambda p: p["sessions"])
        entry["best_point"] = top["id"]
        entry["value"] = _value(st, top["id"], objective.metric)
    elif "fail" in outcomes:
        entry["status"] = "not met"
    else:
        entry["status"] = "unknown"


def _value(st: _State, pid: str, metric: str) -> float | None:
    from harness.analysis.gates import resolve_metric

    return resolve_metric(metric, st.docs[pid].get("summary") or {})[0]


def build_document(st: _State) -> dict[str, Any]:
    """sweep.json (docs/RESULTS.md "sweep.json")."""
    sweep = st.plan.sweep
    configs = list(st.configs.values())
    # The front among the points that meet the constraints: an overloaded point has the most
    # throughput of all, at a latency nobody accepts, and would otherwise always be on it.
    valid = [
        p
        for p in st.points
        if p["outcome"] == "pass" and p["figures"]["inferences_per_s"] is not None
    ]
    fronts = {}
    for key in ("p95_ms", "p99_ms"):
        pts = [
            (p["id"], p["figures"]["inferences_per_s"], p["figures"][key])
            for p in valid
            if p["figures"][key] is not None
        ]
        fronts[key] = pareto_front(pts)
    resolution = sweep.load.search.resolution if sweep.load.search else 1
    rec = recommend(
        configs,
        st.docs,
        sweep.objective.metric,
        sweep.objective.higher_is_better,
        resolution,
        [parse_gate(c).metric for c in sweep.constraints],
    )
    recommendation = None
    if rec is not None:
        chosen = st.configs[rec["config"]]
        recommendation = Recommendation(
            **rec, params=chosen["params"], why=_why(st, rec)
        ).model_dump(mode="json")
    # Typed once here (sweep.model.ConfigurationResult): sweep.json's configurations.
    configs = [ConfigurationResult.model_validate(c).model_dump(mode="json") for c in configs]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "name": sweep.name,
        "description": sweep.description,
        "status": st.status,
        "started_at": _iso(st.started),
        "finished_at": _iso(datetime.now(UTC)),
        "elapsed_s": round(time.monotonic() - st.t0, 1),
        "sweep_file": str(st.plan.path),
        "parameters": sweep.space.names(),
        "constraints": sweep.constraints,
        "objective": {
            "metric": sweep.objective.metric,
            "direction": "maximize" if sweep.objective.higher_is_better else "minimize",
        },
        "load": sweep.load.model_dump(mode="json"),
        "budget": {
            **sweep.budget.model_dump(mode="json"),
            "runs_used": len(st.points),
            "minutes_used": round((time.monotonic() - st.t0) / 60, 2),
        },
        "stack_starts": st.stack_starts,
        "stack_restarts": max(st.stack_starts - 1, 0),
        "configurations": configs,
        "points": st.points,
        "pareto": fronts,
        "recommendation": recommendation,
    }


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _why(st: _State, rec: dict[str, Any]) -> str:
    """The recommendation in plain words."""
    sweep = st.plan.sweep
    c = st.configs[rec["config"]]
    constraints = " and ".join(sweep.constraints) or "no constraints"
    if sweep.objective.metric == "capacity" and rec.get("censored"):
        fps, tied = c["fps"], rec.get("tied") or []
        head = (
            f"{c['id']} ({c['label'] or 'the base'}) holds at least {c['value']} sessions at "
            f"{fps:g} fps with {constraints}: it passed the largest load tried, so its "
            "capacity is a lower bound, not a measurement; raise search.max to measure it."
        )
        if tied:
            head += (
                f" {', '.join(tied)} also held {c['value']} sessions: bounds, not equal "
                f"capacities, so not called equivalent; {c['id']} is named for "
                f"{rec.get('tie_break')}."
            )
    elif sweep.objective.metric == "capacity":
        fps = c["fps"]
        held = c["capacity"] if c["capacity"] is not None else f"at least {c['value']}"
        head = (
            f"{c['id']} ({c['label'] or 'the base'}) holds {held} sessions at {fps:g} "
            f"fps with {constraints} ({c['capacity_note']})."
        )
    else:
        verb = "highest" if sweep.objective.higher_is_better else "lowest"
        head = (
            f"{c['id']} ({c['label'] or 'the base'}) meets {constraints} at every load and has "
            f"{sweep.objective.metric} = {c['value']:.4g} ({verb} is best)."
        )
    best = st.configs[rec["best_measured"]]
    if rec["best_measured"] != rec["config"]:
        head += (
            f" {best['id']} measured {best['value']:.4g}, a difference inside the noise, so the "
            f"cheaper configuration is recommended ({c['cost_words']} vs {best['cost_words']})."
        )
    others = [e for e in rec["equivalent"] if e != rec["best_measured"]]
    if others:
        head += f" Equivalent within the noise: {', '.join(others)}."
    undecided = [
        f"{e['id']} ({e['capacity_note'] or e['note'] or e['status']})"
        for e in st.configs.values()
        if e["status"] in ("unknown", "not run", "error")
    ]
    if undecided:
        head += f" Not decided, so not compared: {'; '.join(undecided)}."
    return head


def write_documents(sweep_dir: Path, doc: dict[str, Any], report: Callable[..., Path]) -> None:
    """sweep.json, then sweep.html (a broken report never loses sweep.json)."""
    import json
    import traceback

    from harness.redact import mask

    doc.update(mask(doc))
    tmp = sweep_dir / ".sweep.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    tmp.replace(sweep_dir / "sweep.json")
    try:
        report(doc, sweep_dir / "sweep.html")
    except Exception as exc:
        print(
            f"sweep report failed ({type(exc).__name__}: {exc}); sweep.json kept", file=sys.stderr
        )
        (sweep_dir / "report-error.txt").write_text(traceback.format_exc(), encoding="utf-8")
