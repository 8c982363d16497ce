"""Orchestration of one run: stack -> load + collectors + timeline -> analysis -> results -> report.

The public entry is :func:`harness.run` (harness/api.py), which resolves the baseline and calls
:func:`run_scenario` here. Exit codes: :class:`harness.ExitCode` (0 all gates pass; 1 a gate
failed; 2 INVALID measurement: the generator fell behind, or a timeline event could not be
executed; 3 infrastructure failure (StackError)). A stack this module starts is always torn down
by its context manager; each such run registers itself while its stack may be up
(harness.stack.procs.RunRegistration), and stops first what a killed run left behind. A stack
passed in (already entered by the caller, e.g. a sweep) is used and left running. Nothing here
prints: messages go to the run's :class:`harness.runner.progress.Emitter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from harness.analysis.compare import compare
from harness.analysis.gates import evaluate_gates
from harness.analysis.rollout import rollout_gate
from harness.analysis.summary import summarize
from harness.clock import RunClock
from harness.exitcodes import ExitCode
from harness.redact import mask, redact_files, redact_text, secret_values
from harness.results.junit import write_junit
from harness.results.model import (
    SCHEMA,
    SCHEMA_VERSION,
    AbortRecord,
    EventRecord,
    Fault,
    GateResult,
    Histograms,
    InvalidKind,
    InvalidReason,
    LoadDistribution,
    PrometheusRecord,
    Provenance,
    QueryRecord,
    Results,
    RolloutRecord,
    SessionRecord,
    Summary,
    Verdict,
)
from harness.results.provenance import collect_provenance
from harness.results.writer import results_document, write_results
from harness.runner.outcome import BASELINE_PREFIX
from harness.runner.progress import Emitter, ProgressCallback, RunStarting, Tick
from harness.runner.timeline import Timeline, event_record
from harness.runner.watch import abort_gate
from harness.scenario import Scenario, scenario_to_yaml

if TYPE_CHECKING:
    from harness.load.recording import LoadResult
    from harness.stack import Stack

logger = logging.getLogger("harness")
DEFAULT_OUT = Path("reports")
LATEST = "latest"  # <out>/latest -> the newest run folder
MAX_SESSION_RECORDS = 10_000  # results "sessions": the first this many sessions' lifetimes
_FAULTS: TypeAdapter[list[Fault]] = TypeAdapter(list[Fault])


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_run_dir(
    out_root: Path, name: str, now: datetime | None = None, run_dir: Path | None = None
) -> tuple[str, Path]:
    """(run_id, run_dir) of a new run.

    Default: ``<out_root>/<UTC timestamp>-<name>`` (made unique if it exists), and
    ``<out_root>/latest`` is pointed at it, so scripts have a stable handle
    (``reports/latest/results.json``). ``run_dir``: exactly that folder (``--run-dir``); it must
    not hold a run already. Its run_id is the folder's name; ``latest`` is left alone.
    """
    if run_dir is not None:
        if (run_dir / "results.json").exists():
            raise ValueError(f"{run_dir} already holds a run (results.json); choose another")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir.name, run_dir
    stamp = (now or _utc_now()).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{name}"
    run_dir = out_root / run_id
    n = 1
    while run_dir.exists():
        n += 1
        run_id = f"{stamp}-{name}-{n}"
        run_dir = out_root / run_id
    run_dir.mkdir(parents=True)
    point_latest(out_root, run_id)
    return run_id, run_dir


def point_latest(out_root: Path, run_id: str) -> None:
    """Atomically point ``<out_root>/latest`` at ``run_id`` (a relative symlink)."""
    link = out_root / LATEST
    tmp = out_root / f".{LATEST}.{run_id}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(run_id, target_is_directory=True)
        os.replace(tmp, link)  # a real folder named latest is never replaced (IsADirectoryError)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        logger.warning("note: could not point %s at %s: %s", link, run_id, exc)


@dataclass
class _Measured:
    """What the measurement phase produced (possibly partial after an interrupt)."""

    load: LoadResult | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    collectors: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    rollout: dict[str, Any] | None = None  # harness.runner.controller.RolloutController.record
    aborted: dict[str, Any] | None = None  # the abort-on-fail gate that stopped the load
    prometheus: PrometheusRecord | None = None  # the stack's Prometheus (stack.prometheus)


def _load_engine(scenario: Scenario, config: Any, clock: RunClock, run_dir: Path | None) -> Any:
    """The one place the load engine is chosen (``workload.engine``): this process's
    LoadGenerator, or Locust workers (harness.load.distributed, same interface)."""
    from harness.load import LoadGenerator

    wl = scenario.workload
    if wl.engine == "locust":
        from harness.load.distributed import DistributedLoad

        assert wl.locust is not None  # the model fills it in when engine is locust
        return DistributedLoad(config, clock, wl.locust, wl.trace, run_dir or Path("."))
    return LoadGenerator(config, clock)


async def _measure(
    scenario: Scenario, stack: Stack, emit: Emitter, out: _Measured, run_dir: Path | None = None
) -> None:
    from harness.collectors import (
        CollectorSet,
        GpuCollector,
        ProcessCollector,
        PrometheusCollector,
    )
    from harness.load import LoadConfig
    from harness.load.trace import trace_provider
    from harness.scenario.traffic import CONNECT_LEAD_S, plan_workload

    wl = scenario.workload
    ep = stack.endpoints
    clock = RunClock()
    traces = trace_provider(wl.trace)
    plan = plan_workload(wl, lambda i: len(traces(i)) / wl.fps, CONNECT_LEAD_S)
    config = LoadConfig(
        ws_url=ep.ws_url,
        sessions=wl.sessions or 0,
        plan=plan,
        fps=wl.fps,
        duration_s=wl.duration_s,
        warmup_s=wl.warmup_s,
        ramp_up_s=wl.ramp_up_s,
        traces=traces,
        late_threshold_ms=wl.late_threshold_ms,
        reply_timeout_s=wl.reply_timeout_s,
    )
    gen = _load_engine(scenario, config, clock, run_dir)
    collectors = CollectorSet(clock)
    process = ProcessCollector(stack.processes, include_self=True)
    collectors.add(process)
    prom: dict[str, Any] = {}
    if ep.all_torchserve_metrics_urls():
        # One collector over every replica: the tier's figures are summed across them. It asks
        # the stack for the URLs at each scrape: a restarted compose container has new ports.
        prom["torchserve"] = PrometheusCollector(
            "torchserve", lambda: stack.endpoints.all_torchserve_metrics_urls()
        )
    if ep.backend_metrics_url:
        prom["backend"] = PrometheusCollector("backend", ep.backend_metrics_url)
    for c in prom.values():
        collectors.add(c)
    gpu = GpuCollector()
    collectors.add(gpu)
    timeline = Timeline(scenario.timeline, stack, clock, on_event=emit.say)
    out.events = timeline.records
    stop = asyncio.Event()
    # Before t=0: the traces are built and serialised here (inside the run they made the first
    # seconds late); a distributed engine waits for its workers.
    await gen.prepare()
    watching = _watch(scenario, stack, clock, gen, emit, run_dir, out)
    await asyncio.to_thread(watching.prepare)
    clock.start()
    wall0 = time.time()  # the run clock's t = 0 on the wall clock (Prometheus's time)
    tasks = [
        asyncio.create_task(collectors.run(stop), name="collectors"),
        asyncio.create_task(timeline.run(stop), name="timeline"),
    ]
    load_task = asyncio.create_task(gen.run(), name="load")
    for name, coro in watching.coroutines(load_task, stop):
        tasks.append(asyncio.create_task(coro, name=name))
    try:
        try:
            out.load = await load_task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if (
                watching.abort is None
                or watching.abort.aborted is None
                or (me is not None and me.cancelling())
            ):
                raise
            out.aborted = watching.abort.aborted  # a lost abort-on-fail gate: keep what ran
            out.load = gen.partial
    except asyncio.CancelledError:
        out.interrupted = True
        load_task.cancel()
        with contextlib.suppress(BaseException):
            await load_task
        out.load = gen.partial  # what was measured before Ctrl-C (None if nothing usable)
        raise
    finally:
        stop.set()
        # Collectors take their last window; a timeline event still in its thread is awaited
        # so the stack is not torn down under it (bounded by the stack's own timeouts).
        await asyncio.gather(*tasks, return_exceptions=True)
        watching.close()
        if ep.prometheus_url is not None:
            out.prometheus = _prometheus_record(
                ep.prometheus_url, run_dir, wall0, time.time(),
                torchserve=scenario.stack.use_torchserve, gpu=gpu.present,
            )  # fmt: skip
        end = out.load.duration_s if out.load is not None else wl.duration_s
        out.collectors = {
            "series": collectors.series(),
            "summaries": {
                "gpu": gpu.summary(wl.warmup_s, end) if gpu.present else None,
                **(
                    {"torchserve": prom["torchserve"].summary(wl.warmup_s, end)}
                    if "torchserve" in prom
                    else {}
                ),
            },
            "gpu": {
                "present": gpu.present,
                "reason": gpu.reason,
                "name": ", ".join(gpu.names) if gpu.names else None,
            },
        }


def _prometheus_record(
    url: str, run_dir: Path | None, start: float, end: float, *, torchserve: bool, gpu: bool
) -> PrometheusRecord:
    """results.json's ``prometheus``: the stack's server (``url``, a password masked), its
    stored series in ``run_dir`` if kept there, and a graph link over [start, end] (unix s) to
    each success-metric recording rule that can hold data in this run."""
    from harness.collectors.prometheus_api import graph_link
    from harness.stack.prometheus import stored_data_dir, success_queries

    data = stored_data_dir(run_dir) if run_dir is not None else None
    return PrometheusRecord(
        url=redact_text(url),
        data_dir=str(data) if data is not None and data.is_dir() else None,
        start_unix_s=round(start, 3),
        end_unix_s=round(end, 3),
        queries=[
            QueryRecord(expr=rule, about=about, link=graph_link(url, rule, start, end))
            for rule, about in success_queries(torchserve, gpu)
        ],
    )


class _Watching:
    """The run's watchers (harness.runner.watch, .controller, .live), built from the scenario;
    ``close()`` releases the live file and the Prometheus endpoint."""

    def __init__(
        self, scenario: Scenario, stack: Any, clock: RunClock, gen: Any,
        emit: Emitter, run_dir: Path | None, out: _Measured,
    ) -> None:  # fmt: skip
        from harness.runner.controller import RolloutController
        from harness.runner.live import LiveExporter, LiveFile, RunLabels, row_of
        from harness.runner.watch import AbortWatcher

        self.gen = gen
        self.out = out
        self.initial_percent = (
            scenario.stack.rollout_percent if scenario.stack.use_torchserve else None
        )
        self.rollout = None
        self.abort = None
        self.closers: list[Callable[[], None]] = []
        self.sinks: list[Callable[[Any], None]] = []
        if emit.on_progress is not None:
            self.sinks.append(lambda stats: emit.emit(Tick(emit.run, stats)))
        tell = emit.say
        if scenario.rollout is not None:
            from harness.scenario.evidence import plan_rollout

            arrivals = scenario.workload.arrivals
            self.rollout = RolloutController(
                scenario.rollout,
                stack,
                clock,
                gen,
                scenario.workload.reply_timeout_s,
                tell,
                plans=plan_rollout(scenario),
                arrival_rate=arrivals.rate_per_s if arrivals is not None else None,
            )
            out.rollout = self.rollout.record
        if scenario.abort_on_fail is not None:
            self.abort = AbortWatcher(scenario.abort_on_fail, scenario, gen, clock, tell)
        live = scenario.live
        percent = self._percent
        # Rows and gauges name their run: a baseline run and the candidate of one invocation
        # share stdout and the Prometheus port, as two series.
        labels = RunLabels(
            run=run_dir.name if run_dir is not None else emit.run,
            scenario=scenario.name,
            role="baseline" if emit.run.startswith(BASELINE_PREFIX) else "candidate",
        )

        if live.file:
            path = live.file if live.file == "-" or run_dir is None else run_dir / live.file
            if live.file != "-" and Path(live.file).is_absolute():
                path = live.file
            f = LiveFile(path, live.format)
            self.sinks.append(lambda st: f.write(row_of(st, percent(), labels)))
            self.closers.append(f.close)
        if live.prometheus_port is not None:
            exporter = LiveExporter(live.prometheus_host, live.prometheus_port)
            tell(f"live figures: http://{exporter.host}:{exporter.port}/metrics")
            self.exporter = exporter
            self.sinks.append(lambda st: exporter.update(row_of(st, percent(), labels)))
            self.closers.append(exporter.close)

    def prepare(self) -> None:
        """Imports the watchers need, done before t=0 (they cost seconds inside the run)."""
        if self.rollout is not None:
            self.rollout.prepare()
        if self.abort is not None:
            self.abort.prepare()
            self.closers.append(self.abort.close)

    def _percent(self) -> int | None:
        if self.rollout is None:
            return self.initial_percent
        steps = self.rollout.record["steps"]
        rec = self.rollout.record
        if rec["outcome"] == "aborted" or rec.get("rolled_back_s") is not None:
            return 0
        return steps[-1]["percent"] if steps else self.initial_percent

    def coroutines(
        self, load_task: asyncio.Task[Any], stop: asyncio.Event
    ) -> list[tuple[str, Any]]:
        """(name, coroutine) of every watcher to run beside the load."""
        from harness.runner.watch import live_loop

        out: list[tuple[str, Any]] = []
        if self.sinks:
            out.append(("live", live_loop(self.gen, self.sinks, stop)))
        if self.rollout is not None:
            out.append(("rollout", self.rollout.run(stop)))
        if self.abort is not None:
            out.append(("abort-on-fail", self.abort.run(load_task, stop)))
        return out

    def close(self) -> None:
        """Release the live file, the endpoint and the judge's process (errors ignored: the
        run's results come first)."""
        if self.rollout is not None:
            self.closers.append(self.rollout.close)
        for close in self.closers:
            with contextlib.suppress(Exception):
                close()


def _watch(
    scenario: Scenario, stack: Any, clock: RunClock, gen: Any,
    emit: Emitter, run_dir: Path | None, out: _Measured,
) -> _Watching:  # fmt: skip
    return _Watching(scenario, stack, clock, gen, emit, run_dir, out)


def _skeleton(scenario: Scenario, run_id: str, started: datetime) -> Results:
    """The results of a run that has measured nothing yet (what a stack that never started
    or an early Ctrl-C leaves); each key given is written, null or not."""
    return Results.model_validate(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "name": scenario.name,
            "started_at": _iso(started),
            "finished_at": None,
            "scenario": scenario.model_dump(mode="json"),
            "scenario_yaml": scenario_to_yaml(scenario),
            "valid": False,
            "invalid_reasons": [],
            "verdict": "error",
            "error": None,
            "summary": _empty_summary(),
            "series": {"t": []},
            "histograms": {"unit": "us"},
            "events": [event_record(e) for e in scenario.timeline],
            "faults": [],
            "gates": [],
            "comparison": None,
            "provenance": {},
            "rollout": None,
            "aborted": None,
            "sessions": [],
            "sessions_truncated": False,
        }
    )


def _empty_summary() -> dict[str, Any]:
    lat = dict.fromkeys(("p50", "p90", "p95", "p99", "p999", "max", "mean", "count"))
    return {
        "frame": {"latency_ms": dict(lat), "latency_uncorrected_ms": dict(lat)},
        "inference": {"latency_ms": dict(lat)},
        "throughput": {"frames_per_s": None, "inferences_per_s": None},
        "errors": {"total": None},
        "accuracy": None,
        "served_by": {"local": None, "torchserve": None},
    }


def _analyse(
    results: Results,
    scenario: Scenario,
    measured: _Measured,
    baseline_doc: dict[str, Any] | None,
) -> ExitCode:
    """Fill summary..gates/verdict of ``results`` from a finished measurement; returns the exit
    code."""
    load = measured.load
    if load is None:
        raise ValueError("nothing was measured: no analysis to make")
    summary, series, histograms, faults = summarize(
        load, measured.collectors, measured.events, scenario
    )
    results.summary = Summary.model_validate(summary)
    results.series = series
    # hdr values are microseconds (results.model)
    results.histograms = Histograms.model_validate({"unit": "us", **histograms})
    results.faults = _FAULTS.validate_python(faults)
    events = [EventRecord.model_validate(e) for e in measured.events]
    results.events = events
    if distribution := getattr(load, "distribution", None):
        # engine locust: per-worker frames, late share, CPU, host
        results.load = LoadDistribution.model_validate(distribution)
    reasons = [_with_stack_hint(r, scenario) for r in load.invalid_reasons]
    for i, ev in enumerate(events):
        if ev.ok is not False and ev.ok is not None:
            continue
        what = "failed" if ev.ok is False else "did not run"
        reasons.append(
            InvalidReason(
                kind=InvalidKind.TIMELINE_EVENT,
                message=f"timeline event {i} ({ev.action}) {what}: {ev.error}",
                hint="the fault could not be injected as planned: see the event's error and "
                "the stack's logs in the run's logs/ folder",
            )
        )
    results.valid = not reasons
    results.invalid_reasons = [_whole(r) for r in reasons]
    base_summary = baseline_doc.get("summary") if baseline_doc else None
    comparison = None
    if baseline_doc is not None:
        # Before the gates: a ``compare.METRIC != worse`` gate reads its verdicts.
        comparison = compare(results, baseline_doc)
        if baseline_doc.get("valid") is False:
            comparison.warnings.append("the baseline run was INVALID")
        results.comparison = comparison.model_dump(mode="json")
    gates = evaluate_gates(scenario.gates, summary, faults, base_summary, comparison)
    results.rollout = (
        RolloutRecord.model_validate(measured.rollout) if measured.rollout is not None else None
    )
    results.aborted = (
        AbortRecord.model_validate(measured.aborted) if measured.aborted is not None else None
    )
    # Per-session lifetimes (summary.traffic has their spreads); capped so a day of arrivals
    # cannot make results.json huge.
    records = list(getattr(load, "sessions", None) or [])
    results.sessions = [SessionRecord.model_validate(r) for r in records[:MAX_SESSION_RECORDS]]
    results.sessions_truncated = len(records) > MAX_SESSION_RECORDS
    if results.rollout is not None and results.rollout.events:
        # The rollout's own changes join the timeline: charts mark each step like an event.
        results.events = sorted(
            [*events, *results.rollout.events],
            key=lambda e: e.started_s if e.started_s is not None else e.at_s,
        )
    if (gate := rollout_gate(measured.rollout)) is not None:
        gates.append(gate)
    if measured.aborted is not None:
        gates.append(abort_gate(measured.aborted))
    results.gates = [GateResult.model_validate(g) for g in gates]
    if reasons:
        results.verdict = Verdict.INVALID
        return ExitCode.INVALID
    verdict, code = gates_verdict(gates, measured.rollout)
    results.verdict = verdict
    return code


def _whole(reason: InvalidReason) -> InvalidReason:
    """``reason`` with every field written, null or not (results.json holds reasons whole)."""
    return InvalidReason.model_validate(reason.model_dump())


def gates_verdict(
    gates: list[dict[str, Any]], rollout: dict[str, Any] | None
) -> tuple[Verdict, ExitCode]:
    """A valid run's verdict from its gates[] and its rollout record: PASSED (0) when every
    gate passed; INCONCLUSIVE (4) when the only gate lost is the rollout's and the rollout
    ran out of evidence with nothing failed (an answer of its own, never FAILED); else FAILED."""
    failed = [g for g in gates if not g["passed"]]
    if not failed:
        return Verdict.PASSED, ExitCode.OK
    if (rollout or {}).get("outcome") == "inconclusive" and all(
        g["metric"] == "rollout" for g in failed
    ):
        return Verdict.INCONCLUSIVE, ExitCode.INCONCLUSIVE
    return Verdict.FAILED, ExitCode.GATES_FAILED


def _with_stack_hint(reason: InvalidReason, scenario: Scenario) -> InvalidReason:
    """A fell-behind reason's hint, said for the stack at hand (it may share our CPUs)."""
    if reason.kind != InvalidKind.FELL_BEHIND or scenario.stack.driver not in ("local", "compose"):
        return reason
    from harness.load.selfcheck import HINTS

    shared = (
        "the stack shares this machine's CPUs with the load generator; "
        + HINTS[InvalidKind.FELL_BEHIND].split("; ", 1)[1]
    )
    return reason.model_copy(update={"hint": shared})


def _write_all(run_dir: Path, results: Results) -> Results:
    """Write results.json (the model's one dump) and junit.xml; returns the results as written
    (masked: the report and the printed outcome come from this same document)."""
    results.finished_at = _iso(_utc_now())
    masked = Results.model_validate(mask(results_document(results)))
    write_results(run_dir, masked)
    write_junit(run_dir, results_document(masked))
    return masked


def _report(
    run_dir: Path, results: Results, baseline_doc: dict[str, Any] | None, emit: Emitter
) -> None:
    from harness.report import build_report

    try:
        path = build_report(results, baseline_doc, run_dir / "report.html")
        emit.say(f"report: {path}")
    except Exception as exc:  # a broken report must not lose the measurement
        emit.say(f"report failed ({type(exc).__name__}: {exc}); results.json kept", logging.ERROR)
        (run_dir / "report-error.txt").write_text(traceback.format_exc(), encoding="utf-8")


def _stack_words(scenario: Scenario) -> str:
    spec = scenario.stack
    if not spec.use_torchserve:
        return "backend only, TorchServe off"
    ts = spec.torchserve
    return f"backend + TorchServe {ts.model_version}, batch {ts.batch_size}, {ts.workers} worker(s)"


def run_scenario(
    scenario: Scenario,
    out_dir: Path | None = None,
    baseline_doc: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    run_dir: Path | None = None,
    stack: Stack | None = None,
    run_name: str | None = None,
) -> tuple[dict[str, Any], ExitCode]:
    """Run one scenario into ``<out_dir>/<run_id>/`` (or exactly ``run_dir``); returns (results
    document, exit code). ValueError when ``run_dir`` already holds a run.

    ``stack``: an already entered stack to measure (its lifetime is the caller's; the scenario's
    ``stack`` section then only describes it). Without one, the scenario's stack is built,
    started and always stopped here. ``run_name``: the ``run`` of the progress events (default
    the scenario's name).

    KeyboardInterrupt is re-raised after the stack is down and partial results are written
    (``verdict: error``, ``error: interrupted``).
    """
    from harness.runner.interrupts import interrupt_name
    from harness.stack import StackError

    emit = Emitter(run_name or scenario.name, on_progress)
    if stack is None:
        stop_leftovers(emit)
    started = _utc_now()
    run_id, run_dir = make_run_dir(out_dir or DEFAULT_OUT, scenario.name, started, run_dir)
    secrets = secret_values(scenario.model_dump(mode="json"))
    results = _skeleton(scenario, run_id, started)
    results.run_dir = str(run_dir)
    measured = _Measured()
    code = ExitCode.INFRASTRUCTURE
    interrupted = False
    emit.emit(RunStarting(emit.run, scenario.stack.use_torchserve))
    ours: list[Stack] = []  # the stack this run started, for its logs once it is down
    try:
        if stack is not None:
            emit.say("measuring the running stack; load starts now")
            _measure_on(scenario, stack, emit, measured, results, run_dir)
        else:
            emit.say(f"starting the {scenario.stack.driver} stack ({_stack_words(scenario)})")
            up_since = time.monotonic()
            with open_stack(scenario, run_dir) as entered:
                ours.append(entered)
                emit.say(f"stack up in {time.monotonic() - up_since:.1f}s; load starts now")
                _measure_on(scenario, entered, emit, measured, results, run_dir)
    except StackError as exc:
        results.error = f"{type(exc).__name__}: {exc}"
        emit.say(f"infrastructure failure: {redact_text(str(exc), secrets)}", logging.ERROR)
    except KeyboardInterrupt:
        interrupted = True
        results.error = "interrupted"
    finally:
        # Only a stack this run started (a given one's logs are its owner's), after teardown.
        for logged in ours:
            with contextlib.suppress(Exception):
                logged.collect_logs(run_dir / "logs")
        redact_files(run_dir / "logs", secrets)  # the logs the harness keeps hold no secret
        if not results.provenance.model_fields_set:
            results.provenance = Provenance.model_validate(collect_provenance(None))
        if measured.events:
            results.events = [EventRecord.model_validate(e) for e in measured.events]
        if measured.prometheus is not None:
            results.prometheus = measured.prometheus
    if measured.load is not None:
        code = _analyse(results, scenario, measured, baseline_doc)
        if interrupted:
            results.verdict, results.valid = Verdict.ERROR, False
            results.invalid_reasons.append(
                _interrupted(
                    f"run interrupted: results cover {scenario.workload.warmup_s:g}"
                    f"-{measured.load.duration_s:.1f} s of the planned "
                    f"{scenario.workload.duration_s:g} s ({interrupt_name()})",
                    measured.load.duration_s,
                    scenario.workload.duration_s,
                )
            )
    elif interrupted:
        results.invalid_reasons.append(
            _interrupted(
                f"run interrupted before anything past the warm-up ({interrupt_name()})",
                None,
                scenario.workload.duration_s,
            )
        )
    results = _write_all(run_dir, results)
    if scenario.report.enabled and measured.load is not None:
        # Also after Ctrl-C: the stack is already down, and the partial figures are worth a look.
        _report(run_dir, results, baseline_doc, emit)
    if interrupted:
        emit.say(f"interrupted: partial results in {run_dir}/results.json", logging.WARNING)
        raise KeyboardInterrupt
    return results_document(results), code


def _interrupted(message: str, covered_s: float | None, planned_s: float) -> InvalidReason:
    return _whole(
        InvalidReason(
            kind=InvalidKind.INTERRUPTED,
            message=message,
            measured=covered_s,
            limit=planned_s,
            unit="s",
            hint="partial figures: rerun to completion for a verdict",
        )
    )


def _measure_on(
    scenario: Scenario,
    stack: Stack,
    emit: Emitter,
    measured: _Measured,
    results: Results,
    run_dir: Path,
) -> None:
    from harness.runner.loop import run_async

    try:
        run_async(_measure(scenario, stack, emit, measured, run_dir))
    finally:
        results.provenance = Provenance.model_validate(collect_provenance(stack))


@contextlib.contextmanager
def open_stack(scenario: Scenario, run_dir: Path) -> Iterator[Stack]:
    """Build, start and (on any exit) stop the scenario's stack; yields the entered stack.

    Logs and the run registration go under ``run_dir``. Registered until the stack is down: if
    this process is killed before, the next run finds the registration and stops what the stack
    left running. Raises StackError when it cannot start (exit 3).
    """
    from harness.stack import make_stack
    from harness.stack.procs import RunRegistration

    run_dir.mkdir(parents=True, exist_ok=True)
    with RunRegistration(run_dir) as registration:
        built = make_stack(scenario.stack, run_dir)
        registration.note(compose_project=getattr(built, "project", None))
        with built as stack:
            yield stack


def stop_leftovers(emit: Emitter | None = None) -> int:
    """Find the stacks of runs whose harness was killed, say so and stop them.

    Only processes verified as those runs' own (pid + start time from their process record;
    the dead harness by pid + start time + command line) are signalled; runs whose harness
    still runs are left alone. Returns how many processes were stopped.
    """
    from harness.stack.procs import find_leftovers
    from harness.stack.procs import stop_leftovers as stop

    say = emit.say if emit is not None else (lambda text, level: logger.log(level, "%s", text))
    leftovers = find_leftovers()
    if not leftovers:
        return 0
    for left in leftovers:
        say(f"left over from a killed run: {left.describe()}", logging.WARNING)
    stopped = stop(leftovers)
    if stopped:
        say(f"stopped {stopped} left-over processes", logging.WARNING)
    return stopped
