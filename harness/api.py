"""The harness as a library: run a scenario, load one, compare two results documents.

    import harness
    scenario = harness.load_scenario("scenarios/quickstart.yaml")
    outcome = harness.run(scenario, out="reports")
    print(outcome.verdict, outcome.exit_code, outcome.results_path)

:func:`run` owns the whole run: the baseline (a results file, a results document, or the
scenario's ``baseline`` section: a file to read or a scenario run first), the stack (started and
always stopped, or one the caller already entered: :func:`open_stack`), load, collectors,
timeline, analysis, results, JUnit and report. It never prints: progress and messages go to
``on_progress`` (:mod:`harness.runner.progress` events), else to the ``harness`` logger.

Ctrl-C (and SIGTERM/SIGHUP inside :class:`harness.runner.interrupts.TerminationSignals`) stops the
stack, writes partial results and re-raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.compare import Comparison
from harness.analysis.judgement import ProductionJudgement
from harness.exitcodes import ExitCode
from harness.runner.outcome import BASELINE_PREFIX as BASELINE_PREFIX
from harness.runner.outcome import BaselineFailed as BaselineFailed
from harness.runner.outcome import RunOutcome as RunOutcome
from harness.runner.progress import Emitter, ProgressCallback, RunFinished
from harness.scenario import Scenario
from harness.stack import Stack

logger = logging.getLogger("harness")


def load_scenario(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    has_external_baseline: bool = False,
    warnings: list[str] | None = None,
) -> Scenario:
    """Read, override (``KEY=VALUE``, value as YAML), validate and check a scenario file.

    Raises :class:`harness.ScenarioError` (a ValueError) naming file:line:field for every
    problem. ``warnings`` receives the non-fatal findings.
    """
    from harness.results.writer import read_results
    from harness.scenario import load_scenario as load

    return load(
        path,
        overrides,
        has_external_baseline=has_external_baseline,
        warnings=warnings,
        read_results=read_results,
    )


Baseline = str | Path | Mapping[str, Any] | RunOutcome


def _read_baseline(baseline: Baseline) -> dict[str, Any]:
    from harness.results.writer import read_results, results_document

    if isinstance(baseline, RunOutcome):
        return baseline.results
    if isinstance(baseline, Mapping):
        return dict(baseline)
    return results_document(read_results(Path(baseline)))


def run(
    scenario: Scenario | str | Path,
    *,
    baseline: Baseline | None = None,
    out: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    stack: Stack | None = None,
) -> RunOutcome:
    """Run ``scenario`` (a Scenario, or a scenario file read with ``overrides``).

    ``baseline``: a results.json path, a results document or a RunOutcome to compare with;
    None uses the scenario's own ``baseline`` section (a results file, or a scenario run first
    with the ``overrides`` that apply to it: its outcome is ``RunOutcome.baseline``).
    ``out``: parent of the timestamped run folders (default ``reports/``; ``<out>/latest``
    points at the newest); ``run_dir``: exactly this folder instead. ``stack``: an already
    entered stack (:func:`open_stack`) to measure, left running afterwards; without one the
    scenario's stack is started and stopped here.

    Raises ScenarioError (bad scenario or baseline scenario), ValueError (an unreadable baseline
    results file, or ``run_dir`` already holds a run), :class:`BaselineFailed` (the baseline run
    could not start its stack) and KeyboardInterrupt (after partial results are written).
    """
    from harness.runner.execute import DEFAULT_OUT, run_scenario

    sc = _with_overrides(scenario, overrides)
    out_dir = Path(out) if out is not None else DEFAULT_OUT
    exact = Path(run_dir) if run_dir is not None else None
    if exact is not None and (exact / "results.json").exists():
        raise ValueError(f"--run-dir {exact} already holds a run (results.json); choose another")
    base_outcome: RunOutcome | None = None
    base_doc: dict[str, Any] | None = None
    if baseline is not None:
        base_doc = _read_baseline(baseline)
    elif sc.baseline is not None and sc.baseline.results:
        base_doc = _read_baseline(sc.baseline.results)
    elif sc.baseline is not None and sc.baseline.scenario:
        # Its own stack always: the baseline scenario describes another system than ``stack``.
        base_outcome = _run_baseline_scenario(sc, sc.baseline.scenario, out_dir, on_progress)
        base_doc = base_outcome.results
    doc, code = run_scenario(sc, out_dir, base_doc, on_progress, exact, stack)
    if (
        base_outcome is not None
        and base_outcome.exit_code == ExitCode.INVALID
        and code
        in (
            ExitCode.OK,
            ExitCode.GATES_FAILED,
        )
    ):
        Emitter(sc.name, on_progress).say(
            "the baseline measurement was INVALID: the comparison cannot be trusted",
            logging.WARNING,
        )
        code = ExitCode.INVALID
    outcome = RunOutcome(doc, code, base_outcome)
    Emitter(sc.name, on_progress).emit(RunFinished(sc.name, outcome))
    return outcome


def _with_overrides(scenario: Scenario | str | Path, overrides: Sequence[str]) -> Scenario:
    """The scenario (read with ``overrides`` from a path), its baseline scenario run carrying
    the overrides that apply to it (``BaselineSpec.overrides``; the loader sets them when it
    reads a file, so a Scenario from :func:`load_scenario` has them already)."""
    if not isinstance(scenario, Scenario):
        return load_scenario(scenario, overrides)
    from harness.scenario.loader import baseline_overrides

    extra = baseline_overrides(overrides)
    if not extra or scenario.baseline is None or not scenario.baseline.scenario:
        return scenario
    have = scenario.baseline.overrides
    spec = scenario.baseline.model_copy(
        update={"overrides": [*have, *(o for o in extra if o not in have)]}
    )
    return scenario.model_copy(update={"baseline": spec})


def _baseline_scenario(sc: Scenario) -> Scenario:
    """The scenario's baseline scenario, read with the overrides it carries, its own baseline
    dropped."""
    assert sc.baseline is not None and sc.baseline.scenario
    base_sc = load_scenario(sc.baseline.scenario, sc.baseline.overrides)
    return base_sc.model_copy(update={"baseline": None})


def _run_baseline_scenario(
    sc: Scenario, path: str, out_dir: Path, on_progress: ProgressCallback | None
) -> RunOutcome:
    from harness.runner.execute import run_scenario

    base_sc = _baseline_scenario(sc)
    name = f"{BASELINE_PREFIX}{Path(path).stem}"
    Emitter(sc.name, on_progress).say(f"baseline: running scenario {base_sc.name} first")
    doc, code = run_scenario(base_sc, out_dir, None, on_progress, None, None, run_name=name)
    outcome = RunOutcome(doc, code)
    Emitter(name, on_progress).emit(RunFinished(name, outcome))
    if code == ExitCode.INFRASTRUCTURE:
        raise BaselineFailed(outcome)
    return outcome


@dataclass(frozen=True)
class RepeatedOutcome:
    """``--repeat N``: N baseline and N candidate runs, interleaved ABAB..., compared with the
    run as the sample unit (:func:`harness.analysis.compare.compare_runs`).

    ``set_dir``: the folder holding every run's folder and ``comparison.json``. ``exit_code``:
    the most severe of the runs' (INFRASTRUCTURE > INVALID > GATES_FAILED > OK), INVALID too
    when the comparison cannot be made (``comparison.usable`` false).
    """

    candidates: tuple[RunOutcome, ...]
    baselines: tuple[RunOutcome, ...]
    comparison: Comparison
    exit_code: ExitCode
    set_dir: Path

    @property
    def comparison_path(self) -> Path:
        """``<set_dir>/comparison.json``."""
        return self.set_dir / "comparison.json"


_SEVERITY = (ExitCode.INFRASTRUCTURE, ExitCode.INVALID, ExitCode.GATES_FAILED, ExitCode.OK)


def run_repeated(
    scenario: Scenario | str | Path,
    repeat: int,
    *,
    out: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    overrides: Sequence[str] = (),
) -> RepeatedOutcome:
    """Run the scenario's ``baseline.scenario`` and the scenario ``repeat`` times each,
    interleaved (B1 A1 B2 A2 ...: drift of the machine hits both sides alike), into one folder
    ``<out>/<UTC stamp>-<name>-x<repeat>/``; each candidate run is gated and compared against
    the baseline run just before it, and the whole set with the run as the sample unit.

    Raises ValueError when ``repeat`` < 2 or the scenario has no baseline scenario to rerun
    (a results file cannot be repeated), ScenarioError, :class:`BaselineFailed` (a baseline run
    could not start its stack) and KeyboardInterrupt (after partial results are written).
    """
    import json

    from harness.analysis.compare import MIN_RUNS, compare_runs
    from harness.runner.execute import DEFAULT_OUT, make_run_dir, run_scenario

    if repeat < MIN_RUNS:
        raise ValueError(f"--repeat {repeat}: give {MIN_RUNS} or more (1 is a plain run)")
    sc = _with_overrides(scenario, overrides)
    if sc.baseline is None or not sc.baseline.scenario:
        raise ValueError(
            "--repeat needs a baseline scenario to rerun (baseline: {scenario: FILE}); a "
            "baseline results file is one run and cannot be repeated"
        )
    base_sc = _baseline_scenario(sc)
    _, set_dir = make_run_dir(Path(out) if out is not None else DEFAULT_OUT, f"{sc.name}-x{repeat}")
    base_name = f"{BASELINE_PREFIX}{Path(sc.baseline.scenario).stem}"
    candidates: list[RunOutcome] = []
    baselines: list[RunOutcome] = []
    for i in range(repeat):
        Emitter(sc.name, on_progress).say(f"repeat {i + 1}/{repeat}: baseline, then candidate")
        doc, code = run_scenario(base_sc, set_dir, None, on_progress, None, None, base_name)
        base = RunOutcome(doc, code)
        baselines.append(base)
        Emitter(base_name, on_progress).emit(RunFinished(base_name, base))
        if code == ExitCode.INFRASTRUCTURE:
            raise BaselineFailed(base)
        doc, code = run_scenario(sc, set_dir, base.results, on_progress)
        if base.exit_code == ExitCode.INVALID and code in (ExitCode.OK, ExitCode.GATES_FAILED):
            code = ExitCode.INVALID
        outcome = RunOutcome(doc, code, base)
        candidates.append(outcome)
        Emitter(sc.name, on_progress).emit(RunFinished(sc.name, outcome))
    comparison = compare_runs([b.results for b in baselines], [c.results for c in candidates])
    (set_dir / "comparison.json").write_text(
        json.dumps(
            {
                "candidate_runs": [c.results["run_id"] for c in candidates],
                "baseline_runs": [b.results["run_id"] for b in baselines],
                "comparison": comparison.model_dump(mode="json"),
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    codes = {o.exit_code for o in (*candidates, *baselines)}
    if not comparison.usable:
        codes.add(ExitCode.INVALID)
    code = next(c for c in _SEVERITY if c in codes or c == ExitCode.OK)
    return RepeatedOutcome(tuple(candidates), tuple(baselines), comparison, code, set_dir)


def compare(
    results: Baseline, baseline: Baseline, *, allow_unlike_workloads: bool = False
) -> Comparison:
    """The comparison of ``results`` against ``baseline`` (paths, documents or RunOutcomes).

    Returns the typed :class:`harness.analysis.compare.Comparison` (``.model_dump(mode="json")``
    is the ``comparison`` section of docs/RESULTS.md). Runs whose workloads differ (sessions,
    fps, duration, arrivals, trace...) get no verdicts (``usable`` false, the differences in
    ``problem``) unless ``allow_unlike_workloads``. ValueError names an unreadable file.
    """
    from harness.analysis.compare import compare as compare_docs

    return compare_docs(
        _read_baseline(results),
        _read_baseline(baseline),
        allow_unlike_workloads=allow_unlike_workloads,
    )


@contextlib.contextmanager
def open_stack(scenario: Scenario, run_dir: str | Path) -> Iterator[Stack]:
    """Start the scenario's stack (logs and registration under ``run_dir``); stop it on exit.

    For several runs against one running stack (a sweep's load levels)::

        with harness.open_stack(scenario, "reports/sweep-1") as stack:
            for sessions in (10, 20, 40):
                workload = scenario.workload.model_copy(update={"sessions": sessions})
                harness.run(scenario.model_copy(update={"workload": workload}), stack=stack)

    Raises :class:`harness.StackError` when it cannot start.
    """
    from harness.runner.execute import open_stack as open_

    with open_(scenario, Path(run_dir)) as stack:
        yield stack


@dataclass(frozen=True)
class JudgeOutcome:
    """What ``judge_prometheus`` wrote: the judgement, its JSON and page, the exit code."""

    judgement: ProductionJudgement
    json_path: Path
    html_path: Path
    exit_code: ExitCode


# The command's answer for each rollout outcome: (decision, exit code). "running" splits on
# the last step's decision: advanced (go: the next step may go) or not decided yet.
_JUDGE_OUTCOMES = {
    "completed": ("go", ExitCode.OK),
    "aborted": ("no_go", ExitCode.GATES_FAILED),
    "inconclusive": ("inconclusive", ExitCode.INCONCLUSIVE),
    "incomplete": ("inconclusive", ExitCode.INCONCLUSIVE),
}


def judge_prometheus(
    url: str,
    start: float,
    end: float,
    *,
    step_s: float = 10.0,
    scenario: Scenario | None = None,
    scenario_path: str | None = None,
    out_dir: str | Path,
) -> JudgeOutcome:
    """Judge the rollout seen by the Prometheus at ``url`` over [start, end] (unix s) with the
    in-run rollout judge (harness/analysis/prometheus_judge.py); write ``judgement.json`` and
    ``judgement.html`` into ``out_dir``.

    ``scenario``: whose ``rollout`` block gives the criteria, the settle time, the look
    interval, the step budget and the last percent (None: :class:`RolloutJudge`'s defaults,
    1 s settle, a look every ``step_s``, no budget, 100 %). Raises
    ``harness.collectors.prometheus_api.PrometheusUnreachable`` (nothing answered),
    ``PrometheusError`` (a bad answer) and ``harness.analysis.prometheus_judge.NoSeries``
    (the interval holds no SignFlow series); ValueError for a bad interval or step.
    """
    from datetime import UTC, datetime

    from harness.analysis.histogram_cohorts import frames_per_unit
    from harness.analysis.judgement import JudgementSource, JudgeUsed
    from harness.analysis.prometheus_judge import (
        QUERIES,
        JudgeSettings,
        judge_series,
        read_series,
    )
    from harness.collectors.prometheus_api import PrometheusAPI
    from harness.report.judgement_page import write_judgement_page
    from harness.results.model import QueryRecord
    from harness.scenario.models import RolloutJudge

    if not end > start:
        raise ValueError(f"the interval is empty: end {end} is not after start {start}")
    if not step_s > 0:
        raise ValueError(f"--step must be > 0 s, got {step_s}")
    ro = scenario.rollout if scenario is not None else None
    settings = JudgeSettings(
        judge=ro.judge if ro is not None else RolloutJudge(),
        settle_s=ro.settle_s if ro is not None else 1.0,
        look_every_s=ro.look_every_s if ro is not None else step_s,
        budget_s=ro.budget_s if ro is not None else None,
        final_percent=ro.steps[-1] if ro is not None else 100,
    )
    with PrometheusAPI(url) as api:
        series = read_series(api, start, end, step_s)
        links = [
            QueryRecord(expr=expr, about=about, link=api.graph_link(expr, start, end))
            for expr, about in QUERIES
        ]
        base = api.shown_url
    fps = series.fps or (scenario.workload.fps if scenario is not None else None)
    settings = dataclasses.replace(settings, fps=fps)
    record = judge_series(series, settings)
    decision, code = _JUDGE_OUTCOMES.get(record.outcome, ("continue", ExitCode.INCONCLUSIVE))
    if record.outcome == "running" and record.steps and record.steps[-1].decision == "advance":
        decision, code = "go", ExitCode.OK

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    judgement = ProductionJudgement(
        judged_at=iso(datetime.now(UTC).timestamp()),
        decision=decision,
        exit_code=int(code),
        sentence=f"Rollout {record.outcome}: {record.reason}",
        source=JudgementSource(
            prometheus_url=base,
            start_unix_s=start,
            end_unix_s=end,
            start=iso(start),
            end=iso(end),
            step_s=step_s,
            queries=links,
            frame_buckets_ms=[e * 1000.0 for e in series.frame_edges],
            inference_buckets_ms=[e * 1000.0 for e in series.inference_edges],
            fps=fps,
            frames_per_unit=frames_per_unit(fps) if fps else 1.0,
        ),
        judge=JudgeUsed(
            scenario=scenario_path,
            criteria=settings.judge,
            settle_s=settings.settle_s,
            look_every_s=settings.look_every_s,
            budget_s=settings.budget_s,
            final_percent=settings.final_percent,
        ),
        rollout=record,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "judgement.json"
    json_path.write_text(judgement.model_dump_json(indent=1, by_alias=True), encoding="utf-8")
    html_path = write_judgement_page(judgement, out / "judgement.html")
    return JudgeOutcome(judgement, json_path, html_path, code)


def judge_run(
    run_dir: str | Path, *, out_dir: str | Path | None = None, step_s: float = 1.0
) -> JudgeOutcome:
    """Judge a finished run's rollout from the Prometheus it ran (``stack.prometheus.enabled``):
    its stored series (``<run_dir>/prometheus/data``, copied) served again by a Prometheus
    process on loopback, judged over the run's interval with the run's own scenario
    (:func:`judge_prometheus`), the server stopped after. Written to ``out_dir`` (default
    ``<run_dir>/judgement``). ValueError: no readable results.json; StackError: no stored
    series or no prometheus binary."""
    import tempfile
    from datetime import datetime

    from harness.results import read_results
    from harness.stack.prometheus import LocalPrometheus, stored_data_dir

    run = Path(run_dir)
    doc = read_results(run / "results.json")
    scenario = Scenario.model_validate(doc.scenario)

    def unix(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    if not doc.finished_at:
        raise ValueError(f"{run / 'results.json'}: the run has no finished_at (still running?)")
    # The interval holds the whole run (the steps come from the gauge inside it).
    start, end = unix(doc.started_at) - 2.0, unix(doc.finished_at) + 2.0
    with tempfile.TemporaryDirectory(prefix="harness-judge-") as tmp:
        prom = LocalPrometheus(Path(tmp), Path(tmp))
        try:
            prom.start_stored(stored_data_dir(run))
            assert prom.url is not None
            return judge_prometheus(
                prom.url, start, end, step_s=step_s, scenario=scenario,
                scenario_path=f"{run / 'results.json'} (the run's scenario)",
                out_dir=out_dir if out_dir is not None else run / "judgement",
            )  # fmt: skip
        finally:
            prom.stop()
