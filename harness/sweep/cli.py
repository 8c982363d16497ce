"""``harness sweep FILE [--out DIR] [--set k=v] [--dry-run] [--emit-config DIR]``.

Exit codes: 0 a configuration meets the constraints (a recommendation), 1 none does, 2 invalid
sweep file or input, 3 infrastructure (no configuration's stack started), 130 interrupted
(every finished point and a partial sweep.json/sweep.html are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from .loader import RUN_OVERHEAD_S, Plan, SweepError, load_sweep

EXIT_OK, EXIT_NONE, EXIT_INVALID, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_OUT = Path("reports") / "sweeps"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``sweep`` subcommand."""
    text = "run a sweep: find the best configuration and each one's capacity"
    p = sub.add_parser(
        "sweep",
        help=text,
        description=text + "\n\n" + __doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", type=Path, help="sweep file (sweeps/*.yaml)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"parent folder ({DEFAULT_OUT})")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep key (budget.max_runs=4) or, for any other key, every "
        "configuration's scenario (workload.duration_s=5); value parsed as YAML; repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and its duration")
    p.add_argument(
        "--emit-config",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the recommended config.properties, model-config.yaml and scenario stack "
        "block into DIR",
    )


def describe(plan: Plan) -> str:
    """The plan in lines: configurations, loads, runs and the estimated duration."""
    sw = plan.sweep
    load = (
        f"capacity search from {sw.load.search.start} to {sw.load.search.max} sessions "
        f"(resolution {sw.load.search.resolution}, at most {sw.load.search.max_runs()} runs each)"
        if sw.load.search
        else f"sessions {', '.join(map(str, plan.levels()))}"
    )
    wl = plan.configurations[0].scenario.workload
    lines = [
        f"sweep {sw.name}: {len(plan.configurations)} configurations x {load}",
        f"  each run {wl.duration_s:g} s ({wl.warmup_s:g} s warm-up) at {wl.fps:g} fps, driver "
        f"{plan.configurations[0].scenario.stack.driver}",
        f"  constraints: {'; '.join(sw.constraints) or 'none'}",
        f"  objective: {'maximize' if sw.objective.higher_is_better else 'minimize'} "
        f"{sw.objective.metric}",
        f"  budget: {sw.budget.max_runs} runs, {sw.budget.max_minutes:g} min; at most "
        f"{plan.max_runs()} runs planned",
        f"  estimated duration: at most {plan.estimate_s() / 60:.1f} min",
    ]
    lines += [f"  {c.id}: {c.label or 'the base scenario'}" for c in plan.configurations]
    lines += budget_cut(plan)
    return "\n".join(lines)


def budget_cut(plan: Plan) -> list[str]:
    """Which configurations the budget would cut if every one took its most runs (a search's
    worst case: ``Search.max_runs``), run in order: one stack start each, then its runs."""
    sw = plan.sweep
    per = sw.load.search.max_runs() if sw.load.search else len(plan.levels())
    run_s = plan.configurations[0].scenario.workload.duration_s + RUN_OVERHEAD_S
    runs, seconds, cut = 0, 0.0, []
    for c in plan.configurations:
        seconds += sw.stack_start_s
        done = 0
        while (
            done < per
            and runs < sw.budget.max_runs
            and seconds + run_s <= sw.budget.max_minutes * 60
        ):
            runs, seconds, done = runs + 1, seconds + run_s, done + 1
        if done < per:
            cut.append((c, done))
    if not cut:
        return ["  budget: enough for every configuration's most runs"]
    limit = f"{sw.budget.max_runs} runs, {sw.budget.max_minutes:g} min"
    out = [f"  budget ({limit}) would cut, if every search took its most runs ({per} each):"]
    for c, done in cut:
        what = "never run" if done == 0 else f"stopped after {done} of {per} runs"
        out.append(
            f"    {c.id} ({c.label or 'the base scenario'}): {what}; its capacity would be "
            "at best a lower bound (raise budget.max_runs / budget.max_minutes)"
        )
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    """Validate, plan, run; print the recommendation."""
    from .execute import run_sweep

    try:
        plan = load_sweep(args.sweep, args.overrides)
    except SweepError as exc:
        print(f"invalid sweep:\n{exc}", file=sys.stderr)
        return EXIT_INVALID
    # Live rows on stdout (live.file "-"): every word goes to stderr, stdout stays data.
    words = sys.stderr if any(c.scenario.live.file == "-" for c in plan.configurations) else None
    with contextlib.redirect_stdout(words) if words else contextlib.nullcontext():
        print(describe(plan))
    if args.dry_run:
        return EXIT_OK
    try:
        doc, code = run_sweep(plan, args.out)
    except KeyboardInterrupt:
        print("interrupted: stacks stopped; finished points kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    with contextlib.redirect_stdout(words) if words else contextlib.nullcontext():
        _print_outcome(args, doc)
    return code


def _print_outcome(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Each configuration's capacity, the recommendation, and what --emit-config wrote."""
    from .emit import emit_config

    for c in doc["configurations"]:
        cap = c["capacity"] if c["capacity"] is not None else c.get("capacity_note") or "-"
        print(f"  {c['id']} {c['label']}: {c['status']}; capacity: {cap}; value {c['value']}")
    rec = doc["recommendation"]
    print(f"recommendation: {rec['why']}" if rec else "recommendation: none met the constraints")
    print(f"stack starts: {doc['stack_starts']}; runs: {doc['budget']['runs_used']}")
    if args.emit_config is not None and rec is not None:
        for path in emit_config(doc, args.emit_config):
            print(f"wrote {path}")
    elif args.emit_config is not None:
        print(f"--emit-config: nothing written to {args.emit_config} (no recommendation)")
