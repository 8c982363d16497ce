"""``harness`` command line: run | validate | compare | report | worker | synth | sweep | decide |
judge.

A thin shell over the library (:mod:`harness.api`): it parses arguments, shows progress and
prints outcomes; the run itself, the baseline and the exit code rules live in the library.
Exit codes: :class:`harness.ExitCode` (:data:`EXIT_CODES_HELP`, printed by ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from harness.api import BASELINE_PREFIX, BaselineFailed, load_scenario
from harness.exitcodes import EXIT_CODES_HELP, ExitCode
from harness.results.model import reason_text
from harness.results.verdict import verdict_line
from harness.runner.progress import RunFinished
from harness.scenario import Scenario, ScenarioError
from harness.scenario.models import SyntheticTrace

SET_HELP = "override a scenario key (value parsed as YAML); repeatable"

# Shorthands over --set (flag, environment variable, what it sets); applied before --set, so an
# explicit --set wins. The environment variable is the flag's default, the flag wins over it.
SHORTHANDS = (
    ("sessions", "HARNESS_SESSIONS", "workload.sessions: N fixed sessions (drops arrivals/stages)"),
    ("duration", "HARNESS_DURATION", "workload.duration_s: 60, 60s, 2m or 1h"),
    ("warmup", "HARNESS_WARMUP", "workload.warmup_s: same forms as --duration"),
    ("fps", "HARNESS_FPS", "workload.fps: frames per second per session"),
    ("arrival_rate", "HARNESS_ARRIVAL_RATE", "workload.arrivals.rate_per_s: sessions per second"),
    ("live", "HARNESS_LIVE", "live.file: per-second figures to this file, '-' = stdout"),
    ("live_format", "HARNESS_LIVE_FORMAT", "live.format: jsonl or csv"),
    ("prometheus_port", "HARNESS_PROMETHEUS_PORT", "live.prometheus_port: 0 = any free port"),
)
ENV_HELP = (
    "environment overrides (a flag given wins over its variable):\n"
    + "\n".join(f"  {env:<24} --{flag.replace('_', '-')}: {what}" for flag, env, what in SHORTHANDS)
    + "\n"
)
# `run` only: `validate` writes nothing.
RUN_ENV_HELP = ENV_HELP + "  HARNESS_OUT              --out\n"


def parse_seconds(text: str) -> float:
    """``60``, ``60s``, ``1.5m``, ``2h`` -> seconds; ValueError names the value."""
    t = str(text).strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}
    unit = t[-1] if t and t[-1] in scale else "s"
    number = t[:-1] if t and t[-1] in scale else t
    try:
        value = float(number) * scale[unit]
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use 60, 60s, 2m or 1h)") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"not a duration: {text!r} (must be > 0)")
    return value


def shorthand_overrides(args: argparse.Namespace, environ: Any = None) -> list[str]:
    """The --set overrides the shorthand flags (or their HARNESS_* variables) stand for."""
    import os

    env = os.environ if environ is None else environ
    out: list[str] = []
    for flag, var, _ in SHORTHANDS:
        value = getattr(args, flag, None)
        source = f"--{flag.replace('_', '-')}"
        if value is None and env.get(var, "").strip():
            value, source = env[var].strip(), f"{var} (environment)"
        if value is None:
            continue
        try:
            out += _shorthand(flag, value)
        except ValueError as exc:
            # Name where the value came from: a CI job's variable is not on the command line.
            why = str(exc) if "not a duration" in str(exc) else f"not a {_KIND[flag]}"
            raise ValueError(f"{source}={value!r}: {why}") from None
    return out


# What each numeric shorthand takes, for the message naming a bad value.
_KIND = {"sessions": "whole number", "fps": "number", "arrival_rate": "number",
         "prometheus_port": "whole number (a port)"}  # fmt: skip


def _shorthand(flag: str, value: Any) -> list[str]:
    """The --set overrides of one shorthand's value; ValueError when it is malformed."""
    if flag == "sessions":
        return [f"workload.sessions={int(value)}", "workload.arrivals=null", "workload.stages=null"]
    if flag in ("duration", "warmup"):
        return [f"workload.{flag}_s={parse_seconds(value):g}"]
    if flag == "fps":
        return [f"workload.fps={float(value):g}"]
    if flag == "arrival_rate":
        return [f"workload.arrivals.rate_per_s={float(value):g}"]
    if flag == "live":
        return [f"live.file={json.dumps(str(value))}"]
    if flag == "live_format":
        return [f"live.format={value}"]
    if flag == "prometheus_port":
        return [f"live.prometheus_port={int(value)}"]
    raise AssertionError(f"unknown shorthand {flag}")


def _add_shorthands(cmd: argparse.ArgumentParser) -> None:
    for flag, var, what in SHORTHANDS:
        cmd.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, default=None, help=f"{what} [{var}]"
        )


def traffic_words(wl: Any) -> str:
    """The workload's traffic model in a few words."""
    if wl.sessions is not None:
        return plural(wl.sessions, "session")
    if wl.stages is not None:
        return f"{plural(len(wl.stages), 'stage')} of sessions"
    a = wl.arrivals
    rate = f"{a.rate_per_s:g}/s" if a.rate_per_s is not None else f"{len(a.stages)} rate stages"
    return f"{a.process} arrivals {rate}"


def _version() -> str:
    try:
        return metadata.version("signflow-harness")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def plural(n: int, word: str) -> str:
    """``1 gate``, ``2 gates``, ``0 gates``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="harness",
        description=__doc__.splitlines()[0],
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=text, description=text, epilog=EXIT_CODES_HELP, formatter_class=fmt
        )

    run = command("run", "run a scenario and write results.json, junit.xml, report")
    run.epilog = EXIT_CODES_HELP + RUN_ENV_HELP
    run.add_argument("scenario", type=Path)
    _add_shorthands(run)
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        default=None,
        help="parent of the timestamped run folders (default reports/); <out>/latest points at "
        "the newest",
    )
    where.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="write this run into exactly this folder (must not hold a run already)",
    )
    run.add_argument("--baseline", type=Path, default=None, help="baseline results.json")
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the scenario's baseline scenario and the scenario N times each, interleaved "
        "(ABAB...), and compare them with the run as the sample unit (N >= 2; needs "
        "baseline: {scenario: ...})",
    )
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )

    val = command("validate", "check a scenario file and every file it names, without running")
    val.add_argument("scenario", type=Path)
    val.epilog = EXIT_CODES_HELP + ENV_HELP
    _add_shorthands(val)
    val.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )
    val.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="baseline results.json (checked; allows baseline-relative gates)",
    )

    cmp_ = command("compare", "compare two results.json (NEW against BASE)")
    cmp_.add_argument("new", type=Path)
    cmp_.add_argument("base", type=Path)
    cmp_.add_argument("--fail-on-worse", action="store_true", help="exit 1 if any metric is worse")
    cmp_.add_argument("--all", action="store_true", help="show every metric, not only changes")
    cmp_.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cmp_.add_argument(
        "--allow-unlike-workloads",
        action="store_true",
        help="judge runs whose workloads differ (sessions, fps, duration, arrivals, trace); "
        "without it they get no verdicts and exit 2",
    )

    rep = command("report", "build the HTML report of a results.json")
    rep.add_argument("results", type=Path)
    rep.add_argument("--baseline", type=Path, default=None)
    rep.add_argument("--out", type=Path, default=None, help="report.html path")

    wrk = command("worker", "run a Locust load worker for a master started by `harness run`")
    wrk.add_argument(
        "--master", required=True, metavar="HOST[:PORT]",
        help="port 5557 if omitted; an IPv6 address with a port: [ADDR]:PORT",
    )  # fmt: skip
    # The worker becomes Locust (exec): its exit status is Locust's, not the run's codes.
    wrk.epilog = (
        "exit codes:\n  2  malformed --master\n  other: Locust's own (the worker execs "
        "`locust --worker`); the run's verdict is the master's exit code"
    )

    syn = command("synth", "write a synthetic landmark trace (JSONL) with ground truth")
    defaults = SyntheticTrace()  # the one set of trace defaults (workload.trace.synthetic)
    syn.add_argument("--signs", type=int, default=defaults.signs, help="signs in the trace")
    syn.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    syn.add_argument(
        "--rest-frames",
        type=int,
        nargs=2,
        metavar=("LO", "HI"),
        default=defaults.rest_frames,
        help="rest frames between signs, drawn from [LO, HI]; keep LO above the backend's "
        "REST_FRAMES_TO_END (10) or neighbouring signs merge",
    )
    syn.add_argument(
        "--sign-mix",
        nargs="+",
        metavar="SIGN",
        default=defaults.sign_mix,
        help="draw signs from these labels only (repeat one to weight it)",
    )
    syn.add_argument("--out", type=Path, required=True)

    from harness.sweep.cli import add_parser as add_sweep

    add_sweep(sub)
    _add_decide(command)
    _add_judge(command)
    # Listed from the parser itself, so a new command cannot be left out of `harness --help`.
    p.description = f"harness command line: {' | '.join(sub.choices)}."
    return p


DECIDE_EXIT_CODES = """\
exit codes:
  0    go: every criterion met
  1    no-go: a criterion not met (whatever else is unknown)
  2    invalid decision file (or a scenario/sweep it names), or unreadable --from evidence
  4    inconclusive: no criterion failed, one or more unknown (the output says what would
       settle each: e.g. GPU utilisation: run on a GPU host: scripts/gpu-run.sh)
  130  interrupted by Ctrl-C (143 SIGTERM, 129 SIGHUP): the run in progress is stopped
"""


def _add_decide(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    dec = command("decide", "judge a decision file's criteria (go / no-go / inconclusive)")
    dec.epilog = DECIDE_EXIT_CODES
    dec.add_argument("decision", type=Path, help="decision file (scenarios/migration.yaml)")
    dec.add_argument(
        "--out", type=Path, default=None,
        help="parent of the timestamped decision folder (default reports/decisions)",
    )  # fmt: skip
    dec.add_argument(
        "--from", dest="from_dir", type=Path, default=None, metavar="DIR",
        help="reuse the evidence in DIR (an earlier decision folder: runs/, capacity/, "
        "fallback_kill/, hot_reload/, rollout/); what it lacks is run",
    )  # fmt: skip
    dec.add_argument(
        "--no-run", action="store_true",
        help="run nothing: evidence not in --from is missing and its criteria unknown",
    )  # fmt: skip
    dec.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a decision-file key (evidence.runs.repeat=3); value parsed as YAML",
    )  # fmt: skip


JUDGE_EXIT_CODES = """\
exit codes:
  0    go: the rollout completed (its last step passed), or the last step seen advanced
  1    no-go: a step aborted (a criterion shown worse for the TorchServe cohort)
  2    invalid input: a bad --since/--until/--step/--prometheus/--scenario, or no SignFlow
       series at that URL in that interval (the message names the series and the interval)
  3    Prometheus unreachable or not answering with data (the message names the URL)
  4    inconclusive: a step ran out of evidence with nothing failed, the last step is not
       decided yet, or the rollout percent stayed 0 (the output says what would settle it)
"""


def _add_judge(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    jud = command(
        "judge",
        "judge a production rollout from Prometheus: the in-run rollout judge (same criteria, "
        "same statistics, same decisions) on the two cohorts' histogram buckets",
    )
    jud.epilog = JUDGE_EXIT_CODES
    where = jud.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--prometheus", metavar="URL",
        help="the Prometheus scraping the backend (http://HOST:9090)",
    )  # fmt: skip
    where.add_argument(
        "--run", type=Path, metavar="RUN_DIR",
        help="a finished run with stack.prometheus.enabled: its stored series are served "
        "again and judged over the run's interval with the run's scenario (--since, --until "
        "and --scenario do not apply; --step defaults to 1)",
    )  # fmt: skip
    jud.add_argument(
        "--since", default=None, metavar="DURATION",
        help="judge the last DURATION before --until: 24h, 90m, 600s (steps come from the "
        "rollout percent gauge inside it)",
    )  # fmt: skip
    jud.add_argument(
        "--until", default=None, metavar="TIME",
        help="end of the interval: unix seconds or ISO 8601 (2026-12-08T01:30:00Z); default now",
    )  # fmt: skip
    jud.add_argument(
        "--step", default=None, metavar="SECONDS",
        help="range-query resolution and the shortest look interval (s, default 10)",
    )  # fmt: skip
    jud.add_argument(
        "--scenario", type=Path, default=None,
        help="take the criteria, settle time, look interval, step budget and last percent "
        "from this scenario's rollout block (default: the judge's defaults, no budget)",
    )  # fmt: skip
    jud.add_argument(
        "--out", type=Path, default=None,
        help="folder for judgement.json and judgement.html (default "
        "reports/judgements/<UTC time>)",
    )  # fmt: skip


def parse_time(text: str) -> float:
    """``1765157400``, ``2026-12-08T01:30:00Z`` (no zone: UTC) -> unix seconds; ValueError
    names the value."""
    from datetime import UTC, datetime

    t = str(text).strip()
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (unix seconds or ISO 8601, 2026-12-08T01:30:00Z)"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def cmd_judge(args: argparse.Namespace) -> int:
    """``harness judge --prometheus URL --since 24h``: the rollout's steps, the decision;
    judgement.json and judgement.html written; exit 0/1/4 (2, 3: errors)."""
    import time
    from datetime import UTC, datetime

    from harness.analysis.prometheus_judge import NoSeries
    from harness.api import judge_prometheus
    from harness.collectors.prometheus_api import (
        PrometheusError,
        PrometheusUnreachable,
        check_url,
    )

    parsers: tuple[tuple[str, Callable[[str], Any], Any], ...] = (
        ("--prometheus", check_url, args.prometheus),
        ("--since", parse_seconds, args.since),
        ("--until", parse_time, args.until),
        ("--step", parse_seconds, args.step),
    )
    parsed: dict[str, Any] = {}
    for flag, parse, value in parsers:
        if value is None:
            continue
        try:
            parsed[flag] = parse(value)
        except ValueError as exc:
            why = str(exc).removeprefix(f"{flag} ")
            _err(f"invalid option {flag}: {why}")
            return ExitCode.INVALID
    if args.run is not None:
        return _judge_run(args, parsed.get("--step", 1.0))
    if "--since" not in parsed:
        _err("invalid option: --prometheus needs --since (24h, 90m, 600s)")
        return ExitCode.INVALID
    url, since = parsed["--prometheus"], parsed["--since"]
    step = parsed.get("--step", 10.0)
    end = parsed.get("--until", time.time())
    sc: Scenario | None = None
    if args.scenario is not None:
        try:
            sc = load_scenario(args.scenario)
        except ScenarioError as exc:
            _err(f"invalid scenario:\n{exc}")
            return ExitCode.INVALID
        if sc.rollout is None:
            _err(f"--scenario {args.scenario}: no rollout block (the judge's criteria are there)")
            return ExitCode.INVALID
    out = args.out
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path(_env("HARNESS_OUT") or "reports") / "judgements" / stamp
    try:
        outcome = judge_prometheus(
            url, end - since, end, step_s=step, scenario=sc,
            scenario_path=str(args.scenario) if args.scenario else None, out_dir=out,
        )  # fmt: skip
    except PrometheusUnreachable as exc:
        _err(f"prometheus unreachable: {exc}")
        return ExitCode.INFRASTRUCTURE
    except PrometheusError as exc:
        _err(f"prometheus error: {exc}")
        return ExitCode.INFRASTRUCTURE
    except NoSeries as exc:
        _err(f"nothing to judge: {exc}")
        return ExitCode.INVALID
    except ValueError as exc:
        _err(f"invalid option: {exc}")
        return ExitCode.INVALID
    return _print_judgement(outcome)


def _judge_run(args: argparse.Namespace, step: float) -> int:
    """``harness judge --run DIR``: the run's stored series judged over its interval."""
    from harness.analysis.prometheus_judge import NoSeries
    from harness.api import judge_run
    from harness.collectors.prometheus_api import PrometheusError
    from harness.stack import StackError

    if args.since is not None or args.until is not None or args.scenario is not None:
        _err("invalid option: --run judges the run's own interval with its own scenario: "
             "drop --since, --until and --scenario")  # fmt: skip
        return ExitCode.INVALID
    try:
        outcome = judge_run(args.run, out_dir=args.out, step_s=step)
    except StackError as exc:
        _err(f"cannot serve the run's series: {exc} (was it run with "
             "--set stack.prometheus.enabled=true?)")  # fmt: skip
        return ExitCode.INVALID
    except PrometheusError as exc:
        _err(f"prometheus error: {exc}")
        return ExitCode.INFRASTRUCTURE
    except (NoSeries, ValueError) as exc:
        _err(f"nothing to judge: {exc}")
        return ExitCode.INVALID
    return _print_judgement(outcome)


def _print_judgement(outcome: Any) -> int:
    """Each step's decision, the sentence, where the files are; the exit code."""
    j = outcome.judgement
    for step_ in j.rollout.steps:
        verdict = step_.judgements[-1] if step_.judgements else None
        looks = len(step_.looks)
        words = verdict.reason if verdict else "no look inside the step"
        print(f"  step {step_.step + 1} {step_.percent:>3} % at {step_.set_s:.0f} s: "
              f"{(step_.decision or 'continue').upper()} after {plural(looks, 'look')}: "
              f"{words}")  # fmt: skip
    print(j.sentence)
    print(f"judgement: {outcome.json_path} | page: {outcome.html_path} (exit {j.exit_code})")
    return int(outcome.exit_code)


def _env(name: str) -> str | None:
    """A HARNESS_* variable's value; empty or blank counts as unset."""
    import os

    value = os.environ.get(name, "").strip()
    return value or None


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _load(args: argparse.Namespace) -> Scenario | None:
    """The scenario of ``args`` (warnings printed), or None after printing why it is invalid.

    A ``--baseline`` results file is read and checked here too: it is input the run will read.
    """
    warnings: list[str] = []
    try:
        args.overrides = [*shorthand_overrides(args), *args.overrides]
    except ValueError as exc:
        _err(f"invalid option: {exc}")
        return None
    try:
        sc = load_scenario(
            args.scenario,
            args.overrides,
            has_external_baseline=bool(args.baseline),
            warnings=warnings,
        )
    except ScenarioError as exc:
        _err(f"invalid scenario:\n{exc}")
        return None
    for warning in warnings:
        _err(f"warning: {warning}")
    if args.baseline is not None:
        from harness.results import read_results

        try:
            read_results(args.baseline)
        except ValueError as exc:
            _err(f"invalid baseline: {exc}")
            return None
    return sc


def rollout_words(sc: Scenario) -> str:
    """The rollout's steps and its gate, for ``validate`` ("" without a rollout block)."""
    ro = sc.rollout
    if ro is None:
        return ""
    return (
        f" + rollout {' -> '.join(str(p) for p in ro.steps)} % from t={ro.start_s:g} s (each "
        f"step judged every {ro.look_every_s:g} s for up to {ro.budget_s:g} s) and its gate "
        "'rollout completes'"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate only: exit 0 and a short description, or 2 with the errors. A decision file
    (``harness decide``'s) is validated as one, with every scenario and sweep it names."""
    from harness.decision import DecisionError, is_decision_file, load_decision

    if is_decision_file(args.scenario):
        try:
            plan = load_decision(args.scenario, args.overrides)
        except DecisionError as exc:
            _err(f"invalid decision file:\n{exc}")
            return ExitCode.INVALID
        names = ", ".join(plan.spec.criteria.model_dump(exclude_none=True))
        print(f"{args.scenario}: OK - decision file '{plan.spec.name}' (harness decide), "
              f"criteria: {names}")  # fmt: skip
        return ExitCode.OK
    sc = _load(args)
    if sc is None:
        return ExitCode.INVALID
    wl = sc.workload
    print(
        f"{args.scenario}: OK - scenario '{sc.name}', driver {sc.stack.driver}, "
        f"use_torchserve={sc.stack.use_torchserve}, {traffic_words(wl)} x "
        f"{wl.fps:g} fps, {wl.duration_s:g} s ({wl.warmup_s:g} s warm-up), "
        f"{plural(len(sc.timeline), 'event')}, {plural(len(sc.gates), 'gate')}" + rollout_words(sc)
    )
    return ExitCode.OK


def _print_outcome(doc: dict[str, Any], code: int, out: TextIO | None = None) -> None:
    """A run's outcome: the verdict sentence (the report banner's, harness.results.verdict)
    with the comparison's headline beside it, the gates, the changed metrics, the results path.

    ``out``: where the words go (stdout by default; stderr when stdout carries data, ``--live
    -``)."""
    out = out or sys.stdout
    s = doc.get("summary") or {}
    lat = (s.get("frame") or {}).get("latency_ms") or {}
    line = verdict_line(doc)

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    def say(text: str) -> None:
        print(text, file=out)

    say(
        f"{doc['name']}: verdict {line.headline} (exit {code}) | frame p50/p95/p99 "
        f"{ms(lat.get('p50'))}/{ms(lat.get('p95'))}/{ms(lat.get('p99'))} ms | "
        f"{ms((s.get('throughput') or {}).get('inferences_per_s'))} inferences/s | "
        f"errors {(s.get('errors') or {}).get('total')}"
    )
    if line.comparison is not None:
        say(f"  {line.comparison}")
    hints: list[str] = []
    for reason in doc.get("invalid_reasons") or []:
        say(f"  INVALID: {reason_text(reason)}")
        hint = reason.get("hint") if isinstance(reason, dict) else None
        if hint and hint not in hints:
            hints.append(hint)
    for hint in hints:
        say(f"  hint: {hint}")
    for gate in doc.get("gates") or []:
        mark = "PASS" if gate["passed"] else "FAIL"
        # A passed gate may still carry a note (a comparison gate passed on "too little data").
        extra = f"  ({gate['reason']})" if gate.get("reason") else ""
        say(f"  [{mark}] {gate['expr']}{extra}")
    if doc.get("comparison"):
        say(_comparison_table(doc["comparison"], only_changes=True))
    say(f"results: {doc.get('run_dir')}/results.json")


def human_stream(sc: Scenario) -> TextIO:
    """Where a command's words go: stderr when the scenario streams live rows to stdout
    (``live.file: "-"``), so ``harness run ... --live - | csv-reader`` reads only rows."""
    return sys.stderr if sc.live.file == "-" else sys.stdout


def cmd_run(args: argparse.Namespace) -> int:
    """Run the scenario (after its baseline scenario, if any) through :func:`harness.run`."""
    from harness.api import run
    from harness.runner.progress import progress_display

    sc = _load(args)
    if sc is None:
        return ExitCode.INVALID
    if args.out is None and args.run_dir is None and (env_out := _env("HARNESS_OUT")):
        args.out = Path(env_out)

    out = human_stream(sc)

    def finished(event: RunFinished) -> None:
        _print_outcome(event.outcome.results, event.outcome.exit_code, out)

    def baseline_done(event: RunFinished) -> None:
        # The main run's own RunFinished is printed below, after the progress line is gone.
        if event.run.startswith(BASELINE_PREFIX):
            finished(event)

    if args.repeat != 1:
        return _run_repeated(args, sc, finished)
    try:
        with progress_display(on_finished=baseline_done) as progress:
            outcome = run(
                sc,
                baseline=args.baseline,
                out=args.out,
                run_dir=args.run_dir,
                overrides=tuple(args.overrides),
                on_progress=progress,
            )
    except (ScenarioError, BaselineFailed) as exc:
        return _baseline_failure(exc)
    except ValueError as exc:
        _err(f"invalid baseline: {exc}" if "already holds a run" not in str(exc) else str(exc))
        return ExitCode.INVALID
    except KeyboardInterrupt:
        _err("interrupted: the stack was stopped (partial results: see the line above)")
        return ExitCode.INTERRUPTED
    _print_outcome(outcome.results, outcome.exit_code, out)
    return outcome.exit_code


def _baseline_failure(exc: ScenarioError | BaselineFailed) -> int:
    """What ``run`` and ``run --repeat`` print and return when the baseline run cannot be used
    (the scenario itself was validated before): its scenario is invalid (2) or its run failed
    to measure (the baseline's own exit code)."""
    if isinstance(exc, ScenarioError):
        _err(f"invalid baseline scenario:\n{exc}")
        return ExitCode.INVALID
    _err(str(exc))
    return exc.exit_code


def _run_repeated(
    args: argparse.Namespace, sc: Scenario, each_done: Callable[[RunFinished], None]
) -> int:
    """``--repeat N``: every run's outcome line as it ends, then the comparison of the runs."""
    from harness.api import run_repeated
    from harness.runner.progress import progress_display

    if args.baseline is not None or args.run_dir is not None:
        _err("--repeat reruns the scenario's baseline scenario into one folder under --out: "
             "it takes neither --baseline nor --run-dir")  # fmt: skip
        return ExitCode.INVALID
    try:
        with progress_display(on_finished=each_done) as progress:
            outcome = run_repeated(
                sc, args.repeat, out=args.out, overrides=tuple(args.overrides), on_progress=progress
            )
    except (ScenarioError, BaselineFailed) as exc:
        return _baseline_failure(exc)
    except ValueError as exc:
        _err(str(exc))
        return ExitCode.INVALID
    except KeyboardInterrupt:
        _err("interrupted: the stack was stopped (partial results: see the line above)")
        return ExitCode.INTERRUPTED
    out = human_stream(sc)
    table = _comparison_table(outcome.comparison.model_dump(mode="json"), only_changes=True)
    print(table, file=out)
    print(outcome.comparison.headline, file=out)
    print(f"comparison of the runs: {outcome.comparison_path}", file=out)
    return outcome.exit_code


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _comparison_table(comparison: dict[str, Any], only_changes: bool = False) -> str:
    lines = [_comparison_heading(comparison)]
    for w in [*(comparison.get("warnings") or []), *(comparison.get("stability") or [])]:
        lines.append(f"  WARNING: {w}")
    header = f"  {'metric':44} {'run':>10} {'baseline':>10} {'change':>8}  verdict"
    lines.append(header)
    for m in comparison.get("metrics") or []:
        if only_changes and m.get("method") is None:
            continue
        change = "-" if m["change"] is None else f"{m['change']:+.1%}"
        marker = {"worse": "  <-- WORSE", "better": "  (better)"}.get(m["verdict"], "")
        p = f" p={m['p_value']:.3g}" if m.get("p_value") is not None else ""
        lines.append(
            f"  {m['metric']:44} {_fmt(m['run']):>10} {_fmt(m['baseline']):>10} {change:>8}  "
            f"{m['verdict']}{p}{marker}"
        )
    return "\n".join(lines)


def _comparison_heading(comparison: dict[str, Any]) -> str:
    """``comparison with baseline RUN:``, or for a ``--repeat`` set every run of both sides."""
    runs, bases = comparison.get("run_ids") or [], comparison.get("baseline_run_ids") or []
    if len(runs) > 1 or len(bases) > 1:
        return (
            f"comparison of {len(runs)} runs ({', '.join(runs)}) with {len(bases)} baseline "
            f"runs ({', '.join(bases)}):"
        )
    return f"comparison with baseline {comparison.get('baseline_run_id')}:"


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison of NEW against BASE; exit 1 with --fail-on-worse and a worse metric,
    2 when a side never measured (the comparison cannot say anything)."""
    from harness.api import compare

    try:
        result = compare(args.new, args.base, allow_unlike_workloads=args.allow_unlike_workloads)
    except ValueError as exc:
        _err(str(exc))
        return ExitCode.INVALID
    comparison = result.model_dump(mode="json")
    if args.json:
        print(json.dumps(comparison, indent=1))
    else:
        print(_comparison_table(comparison, only_changes=not args.all))
    print(result.headline, file=sys.stderr if args.json else sys.stdout)
    if not result.usable:
        return ExitCode.INVALID
    worse = result.worse()
    return ExitCode.GATES_FAILED if (args.fail_on_worse and worse) else ExitCode.OK


def cmd_report(args: argparse.Namespace) -> int:
    """Build report.html next to the results (or at --out)."""
    from harness.report import build_report
    from harness.results import read_results

    try:
        doc = read_results(args.results)
        base = read_results(args.baseline) if args.baseline else None
    except ValueError as exc:
        _err(str(exc))
        return ExitCode.INVALID
    out = args.out or args.results.parent / "report.html"
    print(build_report(doc, base, out))
    return ExitCode.OK


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic trace (one frame per line, with its ``truth``)."""
    from pydantic import ValidationError

    from harness.load import synthetic_trace

    try:
        spec = SyntheticTrace(
            seed=args.seed,
            signs=args.signs,
            rest_frames=tuple(args.rest_frames),
            sign_mix=args.sign_mix,
        )
        frames = synthetic_trace(spec.seed, spec.signs, spec.sign_mix, spec.rest_frames)
    except ValidationError as exc:
        for e in exc.errors():
            option = f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else ""
            _err(f"{option}{e['msg'].removeprefix('Value error, ')}")
        return ExitCode.INVALID
    except ValueError as exc:  # the generator's own check (an unknown sign in --sign-mix)
        _err(str(exc))
        return ExitCode.INVALID
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        for frame in frames:
            fh.write(json.dumps(frame, separators=(",", ":")) + "\n")
    lo, hi = spec.rest_frames
    print(
        f"{args.out}: {plural(len(frames), 'frame')}, {plural(spec.signs, 'sign')}, "
        f"seed {spec.seed}, rest {lo}-{hi} frames"
    )
    return ExitCode.OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from harness.sweep.cli import cmd_sweep

    return cmd_sweep(args)


def cmd_decide(args: argparse.Namespace) -> int:
    """``harness decide``: one line per criterion, then the verdict sentence; exit 0/1/4."""
    from harness.decision import DecisionError, decide
    from harness.runner.progress import progress_display

    if args.out is None and (env_out := _env("HARNESS_OUT")):
        args.out = Path(env_out)
    try:
        with progress_display() as progress:
            outcome = decide(
                args.decision,
                out=args.out,
                from_dir=args.from_dir,
                overrides=tuple(args.overrides),
                run_missing=not args.no_run,
                on_progress=progress,
            )
    except DecisionError as exc:
        _err(f"invalid decision file:\n{exc}")
        return ExitCode.INVALID
    except KeyboardInterrupt:
        _err("interrupted: the run in progress was stopped")
        return ExitCode.INTERRUPTED
    d = outcome.decision
    for c in d.criteria:
        print(decision_line(c))
    print(d.sentence)
    print(f"decision: {outcome.json_path} | page: {outcome.html_path} (exit {d.exit_code})")
    return outcome.exit_code


def decision_line(c: Any) -> str:
    """``  NOT MET  inference latency: p95 61.2 ms (baseline 9.1 ms) | target ... | why``."""
    status = {"met": "MET", "not_met": "NOT MET", "unknown": "UNKNOWN"}[c.status.value]
    figures = ", ".join(q.text() for q in c.measured) or "-"
    if c.baseline:
        figures += " (baseline " + ", ".join(q.text() for q in c.baseline) + ")"
    settle = f" -> {c.settle}" if c.settle else ""
    return f"  {status:8} {c.title}: {figures} | target {c.target} | {c.why}{settle}"


def cmd_worker(args: argparse.Namespace) -> int:
    """Become a Locust worker (exec) with the harness's locustfile; README "More load than one
    machine". Never returns on success."""
    import os

    from harness.load.distributed import worker_command

    try:
        argv = worker_command(args.master)
    except ValueError as exc:
        _err(str(exc))
        return ExitCode.INVALID
    # exec: Locust (gevent) must own a fresh process; signals then reach it directly.
    os.execv(argv[0], argv)
    return ExitCode.INFRASTRUCTURE  # not reached


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` console script."""
    args = _parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "validate": cmd_validate,
        "compare": cmd_compare,
        "report": cmd_report,
        "synth": cmd_synth,
        "sweep": _cmd_sweep,
        "worker": cmd_worker,
        "decide": cmd_decide,
        "judge": cmd_judge,
    }
    from harness.runner.interrupts import TerminationSignals

    # SIGTERM/SIGHUP take Ctrl-C's path; the exit code then names the signal (143/129).
    with _log_to_stderr(), TerminationSignals() as term:
        try:
            code = handlers[args.command](args)
        except KeyboardInterrupt:
            code = ExitCode.INTERRUPTED
    return term.exit_code() if code == ExitCode.INTERRUPTED else code


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    """The library's log records (messages with no progress display) as plain stderr lines.

    Only while the command runs: ``main()`` called in process (tests, notebooks) must leave the
    ``harness`` logger as it found it, or a later library call would print on its caller's stderr.
    """
    log = logging.getLogger("harness")
    level = log.level
    handler: _StderrLines | None = None
    if not any(isinstance(h, _StderrLines) for h in log.handlers):
        handler = _StderrLines()
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        if handler is not None:
            log.removeHandler(handler)
        log.setLevel(level)


class _StderrLines(logging.Handler):
    """Each record's message on the *current* ``sys.stderr`` (looked up per record)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stream must not turn a message into a crash
            self.handleError(record)


def _exit() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _exit()
