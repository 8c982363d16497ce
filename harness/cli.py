"""``harness`` command line: run | validate | compare | report | synth.

Exit codes: 0 all gates pass; 1 a gate failed (or ``compare --fail-on-worse`` found a worse
metric); 2 invalid scenario, bad input file or INVALID measurement; 3 infrastructure failure
(the stack did not start); 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (each
handled like Ctrl-C: the stack is stopped and partial results are written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.runner import (
    EXIT_GATE,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    resolve_baseline,
    run_scenario,
)
from harness.scenario import ScenarioError, load_scenario


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write results.json, junit.xml, report")
    run.add_argument("scenario", type=Path)
    run.add_argument("--out", type=Path, default=None, help="parent of run dirs (reports/)")
    run.add_argument("--baseline", type=Path, default=None, help="baseline results.json")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    val = sub.add_parser("validate", help="check a scenario file without running it")
    val.add_argument("scenario", type=Path)
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    val.add_argument("--baseline", type=Path, default=None, help="allow baseline-relative gates")

    cmp_ = sub.add_parser("compare", help="compare two results.json (NEW against BASE)")
    cmp_.add_argument("new", type=Path)
    cmp_.add_argument("base", type=Path)
    cmp_.add_argument("--fail-on-worse", action="store_true", help="exit 1 if any metric is worse")
    cmp_.add_argument("--all", action="store_true", help="show every metric, not only changes")
    cmp_.add_argument("--json", action="store_true", help="print the comparison as JSON")

    rep = sub.add_parser("report", help="build the HTML report of a results.json")
    rep.add_argument("results", type=Path)
    rep.add_argument("--baseline", type=Path, default=None)
    rep.add_argument("--out", type=Path, default=None, help="report.html path")

    syn = sub.add_parser("synth", help="write a synthetic landmark trace (JSONL)")
    syn.add_argument("--signs", type=int, default=20)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--out", type=Path, required=True)
    return p


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate only: exit 0 and a short description, or 2 with the errors."""
    try:
        sc = load_scenario(args.scenario, args.overrides, has_external_baseline=bool(args.baseline))
    except ScenarioError as exc:
        _err(f"invalid scenario:\n{exc}")
        return EXIT_INVALID
    wl = sc.workload
    print(
        f"{args.scenario}: OK - scenario '{sc.name}', driver {sc.stack.driver}, "
        f"use_torchserve={sc.stack.use_torchserve}, {wl.sessions} sessions x {wl.fps:g} fps, "
        f"{wl.duration_s:g} s ({wl.warmup_s:g} s warm-up), {len(sc.timeline)} events, "
        f"{len(sc.gates)} gates"
    )
    return EXIT_OK


def _invalid_hint(doc: dict[str, Any], reasons: list[str]) -> str | None:
    """What to do about an INVALID generator self-check (None for other reasons)."""
    from harness.load.selfcheck import CPU_SATURATED, FELL_BEHIND, OVER_RANGE, SUT_STOPPED_READING

    if any(r.startswith(SUT_STOPPED_READING) for r in reasons):
        # Not this machine's fault: the generator kept its schedule, the server did not read.
        return (
            "the system under test stopped reading its WebSocket connections (paused, "
            "deadlocked or overloaded): see its logs in the run's logs/ folder; this "
            "machine kept the schedule"
        )
    if any(r.startswith(OVER_RANGE) for r in reasons):
        return (
            "replies slower than workload.reply_timeout_s are outside the latency histograms; "
            "raise reply_timeout_s above the slowest reply to measure them"
        )
    if any(r.startswith(CPU_SATURATED) for r in reasons):
        return (
            "one generator process tops out near 7,500 frames/s on one core "
            "(benchmarks/generator_ceiling.py); offer fewer sessions per run, or run the "
            "harness on another host against driver: external"
        )
    if not any(r.startswith(FELL_BEHIND) for r in reasons):
        return None
    driver = ((doc.get("scenario") or {}).get("stack") or {}).get("driver")
    where = (
        "the stack shares this machine's CPUs with the load generator; "
        if driver in ("local", "compose")
        else "this machine was too busy for the generator to keep its schedule; "
    )
    return (
        where + "rerun on a quieter or bigger machine, or drive the stack from another host "
        "(driver: external). workload.late_threshold_ms loosens the check, at the cost of "
        "latency figures that may include the generator's own delay"
    )


def _print_outcome(doc: dict[str, Any], code: int) -> None:
    s = doc.get("summary") or {}
    lat = (s.get("frame") or {}).get("latency_ms") or {}

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    print(
        f"{doc['name']}: verdict {doc['verdict'].upper()} (exit {code}) | frame p50/p95/p99 "
        f"{ms(lat.get('p50'))}/{ms(lat.get('p95'))}/{ms(lat.get('p99'))} ms | "
        f"{ms((s.get('throughput') or {}).get('inferences_per_s'))} inferences/s | "
        f"errors {(s.get('errors') or {}).get('total')}"
    )
    reasons = doc.get("invalid_reasons") or []
    for reason in reasons:
        print(f"  INVALID: {reason}")
    if hint := _invalid_hint(doc, reasons):
        print(f"  hint: {hint}")
    for gate in doc.get("gates") or []:
        mark = "PASS" if gate["passed"] else "FAIL"
        extra = "" if gate["passed"] else f"  ({gate['reason']})"
        print(f"  [{mark}] {gate['expr']}{extra}")
    if doc.get("comparison"):
        print(_comparison_table(doc["comparison"], only_changes=True))
    print(f"results: {doc.get('run_dir')}/results.json")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the scenario (after its baseline scenario, if any)."""
    from harness.progress import progress_display

    try:
        sc = load_scenario(args.scenario, args.overrides, has_external_baseline=bool(args.baseline))
    except ScenarioError as exc:
        _err(f"invalid scenario:\n{exc}")
        return EXIT_INVALID
    try:
        if args.baseline is None and sc.baseline is not None and sc.baseline.scenario:
            with progress_display(f"baseline:{Path(sc.baseline.scenario).stem}") as progress:
                baseline_doc, base_code = resolve_baseline(
                    sc, None, args.out, tuple(args.overrides), progress
                )
            if baseline_doc:
                _print_outcome(baseline_doc, base_code)
        else:
            baseline_doc, base_code = resolve_baseline(sc, args.baseline, args.out)
    except ScenarioError as exc:
        _err(f"invalid baseline scenario:\n{exc}")
        return EXIT_INVALID
    except ValueError as exc:
        _err(f"invalid baseline: {exc}")
        return EXIT_INVALID
    except KeyboardInterrupt:
        _err("interrupted during the baseline run; the stack was stopped")
        return EXIT_INTERRUPTED
    if base_code == EXIT_INFRA:
        _err("the baseline run failed to start its stack; not running the scenario")
        return EXIT_INFRA
    try:
        with progress_display(sc.name) as progress:
            doc, code = run_scenario(sc, args.out, baseline_doc, progress)
    except KeyboardInterrupt:
        _err("interrupted: the stack was stopped; partial results (if any) were written")
        return EXIT_INTERRUPTED
    _print_outcome(doc, code)
    if base_code == EXIT_INVALID and code in (EXIT_OK, EXIT_GATE):
        _err("the baseline measurement was INVALID: the comparison cannot be trusted")
        return EXIT_INVALID
    return code


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _comparison_table(comparison: dict[str, Any], only_changes: bool = False) -> str:
    lines = [f"comparison with baseline {comparison.get('baseline_run_id')}:"]
    for w in comparison.get("warnings") or []:
        lines.append(f"  WARNING: {w}")
    header = f"  {'metric':44} {'run':>10} {'baseline':>10} {'change':>8}  verdict"
    lines.append(header)
    for m in comparison.get("metrics") or []:
        if only_changes and m["verdict"] in ("n/a",) and m.get("method") is None:
            continue
        change = "-" if m["change"] is None else f"{m['change']:+.1%}"
        marker = {"worse": "  <-- WORSE", "better": "  (better)"}.get(m["verdict"], "")
        p = f" p={m['p_value']:.3g}" if m.get("p_value") is not None else ""
        lines.append(
            f"  {m['metric']:44} {_fmt(m['run']):>10} {_fmt(m['baseline']):>10} {change:>8}  "
            f"{m['verdict']}{p}{marker}"
        )
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison of NEW against BASE; exit 1 with --fail-on-worse and a worse metric."""
    from harness.analysis.compare import compare
    from harness.results.writer import read_results

    try:
        new, base = read_results(args.new), read_results(args.base)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_INVALID
    comparison = compare(new, base)
    if args.json:
        print(json.dumps(comparison, indent=1))
    else:
        print(_comparison_table(comparison, only_changes=not args.all))
    worse = [m["metric"] for m in comparison["metrics"] if m["verdict"] == "worse"]
    if worse:
        print(f"worse: {', '.join(worse)}")
    return EXIT_GATE if (args.fail_on_worse and worse) else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Build report.html next to the results (or at --out)."""
    from harness.results.writer import read_results

    try:
        doc = read_results(args.results)
        base = read_results(args.baseline) if args.baseline else None
    except ValueError as exc:
        _err(str(exc))
        return EXIT_INVALID
    try:
        from harness.report import build_report
    except ImportError:
        _err("the HTML report module (harness.report) is not available in this installation")
        return EXIT_INFRA
    out = args.out or args.results.parent / "report.html"
    print(build_report(doc, base, out))
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic trace (one frame per line, with its ``truth``)."""
    from harness.load import synthetic_trace

    if args.signs < 1:
        _err("--signs must be >= 1")
        return EXIT_INVALID
    frames = synthetic_trace(args.seed, args.signs, None, (5, 15))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        for frame in frames:
            fh.write(json.dumps(frame, separators=(",", ":")) + "\n")
    print(f"{args.out}: {len(frames)} frames, {args.signs} signs, seed {args.seed}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` console script."""
    args = _parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "validate": cmd_validate,
        "compare": cmd_compare,
        "report": cmd_report,
        "synth": cmd_synth,
    }
    from harness.interrupts import TerminationSignals

    # SIGTERM/SIGHUP take Ctrl-C's path; the exit code then names the signal (143/129).
    with TerminationSignals() as term:
        try:
            code = handlers[args.command](args)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
    return term.exit_code() if code == EXIT_INTERRUPTED else code


def _exit() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _exit()
