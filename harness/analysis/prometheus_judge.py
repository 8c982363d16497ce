"""The rollout judge over a production Prometheus (``harness judge --prometheus URL``).

The same judge as the in-run one (harness/analysis/rollout.py ``judge_step``: same criteria,
same anytime-valid statistics, same decisions, inconclusive included), fed by the two cohorts'
series instead of the harness's frames (harness/analysis/histogram_cohorts.py):

1. **Read** (:func:`read_series`): range queries over [start, end] every ``step`` s of the
   backend's cumulative series, per cohort (``route``): the frame and inference latency
   histograms' buckets, errors, sessions opened and open, and the rollout percent gauge
   ``signflow_rollout_percent``.
2. **Steps** (:func:`rollout_steps`): each stretch of instants where the gauge holds one
   percent above 0 is a rollout step, set at its first instant; it ends where the gauge
   changes (or at the end of the interval, still running).
3. **Looks** (:func:`judge_series`): every ``look_every_s`` (on the query's instants; after
   :data:`LINEAR_LOOKS` looks, whenever the span judged grew by 5 %) the step so far, from
   ``settle_s`` after it was set, is judged: the TorchServe cohort against the
   old-pipeline cohort OVER THE SAME SECONDS (Kayenta's lesson: never a cohort against last
   week). The first look that decides ends the step: advance (the last percent: complete) or
   abort. A step that ended (the gauge moved on) or spent the scenario's budget undecided,
   with nothing failed, is inconclusive; the interval's last step, undecided and within its
   budget, is still ``continue`` (outcome ``running``).

The record is the in-run judge's :class:`~harness.results.model.RolloutRecord`; its times are
seconds from the interval's start (``start``, unix s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

import harness.hdr as hdr
from harness.analysis.judgement import Agreement, FigureAgreement, StepAgreement
from harness.collectors.prometheus_api import (
    PrometheusAPI,
    PrometheusError,
    RangeResult,
    RangeSeries,
)
from harness.redact import redact_text
from harness.results.model import (
    CohortFigures,
    CohortLatency,
    CohortPair,
    RolloutJudgement,
    RolloutLook,
    RolloutRecord,
    RolloutStep,
)
from harness.scenario.models import RolloutJudge

from .histogram_cohorts import (
    CohortSeries,
    Counts,
    HistogramCohort,
    frames_per_unit,
    increases,
)
from .rollout import COHORTS, judge_step

FRAME_BUCKETS = "signflow_frame_latency_seconds_bucket"
INFERENCE_BUCKETS = "signflow_inference_latency_seconds_bucket"
ERRORS = "signflow_errors_total"
SESSIONS = "signflow_sessions_total"
SESSIONS_OPEN = "signflow_sessions_open"
PERCENT = "signflow_rollout_percent"
# Each series read, with what it is (the page lists them with a link to the server's graph).
QUERIES: tuple[tuple[str, str], ...] = (
    (PERCENT, "rollout percent (the steps)"),
    (FRAME_BUCKETS, "frame reply latency buckets, per cohort"),
    (INFERENCE_BUCKETS, "inference latency buckets, per cohort and who answered"),
    (ERRORS, "error replies, per cohort"),
    (SESSIONS, "sessions opened, per cohort"),
    (SESSIONS_OPEN, "sessions open, per cohort"),
)
NO_ACCURACY = (
    "not judged from Prometheus: production metrics carry no ground truth (the in-run judge "
    "measures accuracy on the trace's labelled signs)"
)


class NoSeries(ValueError):
    """The interval holds none of the series the judge needs (names the query)."""


@dataclass(frozen=True)
class JudgeSettings:
    """How steps are looked at: ``settle_s`` left out after a change, a look every
    ``look_every_s``, a step's evidence budget ``budget_s`` (None: until the gauge moves on),
    the rollout's last percent ``final_percent`` (its advance is ``complete``), and the
    criteria ``judge``. ``fps``: frames per second a session (None: measured from the series)."""

    judge: RolloutJudge
    settle_s: float = 1.0
    look_every_s: float = 1.0
    budget_s: float | None = None
    final_percent: int = 100
    fps: float | None = None


@dataclass(frozen=True)
class Series:
    """Everything read: instants ``t`` (s from ``start``), the percent at each, the cohorts'
    series, the per-session frame rate used for thinning (frames/s), and the edges."""

    start: float
    step: float
    t: hdr.Floats
    percent: hdr.Floats
    cohorts: dict[str, CohortSeries]
    fps: float | None
    frame_edges: list[float]
    inference_edges: list[float]


@dataclass(frozen=True)
class Step:
    """One rollout step seen on the gauge: set at ``set_s``, until ``end_s`` (s from start);
    ``ended``: the gauge moved on (False: still at this percent when the interval ended)."""

    percent: int
    set_s: float
    end_s: float
    ended: bool


def _grid(result: RangeResult) -> hdr.Floats:
    n = math.floor((result.end - result.start) / result.step + 1e-9) + 1
    return result.start + np.arange(n, dtype=np.float64) * result.step


def _on_grid(s: RangeSeries, start: float, step: float, n: int) -> Counts:
    """A series' values at the grid's instants (NaN where it had none)."""
    out = np.full(n, np.nan)
    for t, v in zip(s.t, s.v, strict=True):
        i = round((t - start) / step)
        if 0 <= i < n:
            out[i] = v
    return out


def _counter(s: RangeSeries, start: float, step: float, n: int) -> Counts:
    """A counter's increase since the grid's first instant (a series born inside the interval
    counts from 0: a new process's counters start there)."""
    v = _on_grid(s, start, step, n)
    if n and math.isnan(v[0]):
        v = v.copy()
        v[0] = 0.0
    return increases(v)


def _le(labels: dict[str, str]) -> float:
    try:
        return float(labels["le"])
    except (KeyError, ValueError):
        raise NoSeries(f"a bucket series without a numeric 'le' label: {labels}") from None


def _buckets(
    result: RangeResult, route: str, n: int, local_only: bool = False
) -> tuple[list[float], Counts]:
    """(finite edges, per-bucket counts (n, edges + 1)) of ``route``'s histogram series,
    summed over instances (and ``served_by``; ``local_only``: served_by="local" only)."""
    by_le: dict[float, Counts] = {}
    for s in result.series:
        if s.labels.get("route") != route:
            continue
        if local_only and s.labels.get("served_by") != "local":
            continue
        le = _le(s.labels)
        by_le[le] = by_le.get(le, np.zeros(n)) + _counter(s, result.start, result.step, n)
    all_les = sorted({_le(s.labels) for s in result.series})
    finite = [le for le in all_les if not math.isinf(le)]
    cum = np.stack([by_le.get(le, np.zeros(n)) for le in [*finite, math.inf]], axis=1)
    per_bucket = np.diff(cum, axis=1, prepend=0.0)
    return finite, np.clip(per_bucket, 0.0, None)


def _by_route(result: RangeResult, route: str, n: int, gauge: bool = False) -> Counts:
    total = np.zeros(n)
    for s in result.series:
        if s.labels.get("route") != route:
            continue
        if gauge:
            total += np.nan_to_num(_on_grid(s, result.start, result.step, n), nan=0.0)
        else:
            total += _counter(s, result.start, result.step, n)
    return total


def read_series(api: PrometheusAPI, start: float, end: float, step: float) -> Series:
    """Range-query the judge's series over [start, end] (unix s) every ``step`` s
    (:func:`series_from`)."""
    got = {name: api.range_query(name, start, end, step) for name, _ in QUERIES}
    return series_from(got, f"at {api.shown_url} between {_iso(start)} and {_iso(end)}")


def series_from(got: Mapping[str, RangeResult], where: str = "") -> Series:
    """The cohorts' series from the range queries of :data:`QUERIES` (by expression), all
    over the same instants. Raises NoSeries (naming the series and ``where``) when the
    gauge or the frame histogram is absent: nothing to judge there."""
    first = got[PERCENT]
    start, step = first.start, first.step
    for name in (PERCENT, FRAME_BUCKETS):
        if not got[name].series:
            raise NoSeries(
                f"no {name} series {where}: is this the Prometheus scraping the SignFlow "
                "backend (job 'backend'), and did it run in that interval?"
            )
    t_abs = _grid(got[PERCENT])
    n = t_abs.size
    percent = np.full(n, np.nan)
    for s in got[PERCENT].series:
        v = _on_grid(s, start, step, n)
        percent = np.fmax(percent, v)  # several backends: the highest share any set
    cohorts: dict[str, CohortSeries] = {}
    frame_edges: list[float] = []
    inf_edges: list[float] = []
    for route in COHORTS:
        frame_edges, frames = _buckets(got[FRAME_BUCKETS], route, n)
        if got[INFERENCE_BUCKETS].series:
            inf_edges, inf = _buckets(got[INFERENCE_BUCKETS], route, n)
            _, local = _buckets(got[INFERENCE_BUCKETS], route, n, local_only=True)
        else:
            inf_edges, inf, local = [], np.zeros((n, 1)), np.zeros((n, 1))
        cohorts[route] = CohortSeries(
            t=t_abs - start,
            frame_edges=np.asarray(frame_edges),
            frame_buckets=frames,
            inference_edges=np.asarray(inf_edges),
            inference_buckets=inf,
            inference_local_buckets=local,
            errors=_by_route(got[ERRORS], route, n),
            sessions_opened=_by_route(got[SESSIONS], route, n),
            sessions_open=_by_route(got[SESSIONS_OPEN], route, n, gauge=True),
        )
    return Series(
        start=start, step=step, t=t_abs - start, percent=percent, cohorts=cohorts,
        fps=measured_fps(cohorts, step), frame_edges=frame_edges, inference_edges=inf_edges,
    )  # fmt: skip


def measured_fps(cohorts: dict[str, CohortSeries], step: float) -> float | None:
    """Frames per second a session: all frames over the open sessions' seconds (the gauge
    integrated over the instants); None without open sessions."""
    frames = sum(
        float(c.frame_buckets[-1].sum() + c.errors[-1]) for c in cohorts.values() if c.t.size
    )
    open_s = sum(float(np.sum(c.sessions_open[1:])) * step for c in cohorts.values())
    return frames / open_s if open_s > 0 and frames > 0 else None


def rollout_steps(t: hdr.Floats, percent: hdr.Floats) -> list[Step]:
    """The stretches of ``percent`` above 0 (instants without a value continue the stretch
    they are in), each a step set at its first instant."""
    steps: list[Step] = []
    current: float | None = None
    start_i = 0
    values = [None if math.isnan(p) else float(p) for p in percent]
    for i, p in enumerate(values):
        if p is None or p == current:
            continue
        if current is not None and current > 0:
            steps.append(Step(int(current), float(t[start_i]), float(t[i]), True))
        current, start_i = p, i
    if current is not None and current > 0 and t.size:
        steps.append(Step(int(current), float(t[start_i]), float(t[-1]), False))
    return steps


# A step is looked at every ``look_every_s`` for its first LINEAR_LOOKS looks, then whenever
# its judged span has grown by LOOK_GROWTH: a day-long step at 10 s costs ~200 looks, not 8640,
# each over the whole step so far. The confidence sequences hold at every look at once, so any
# schedule of looks keeps their guarantee (harness/analysis/sequential.py); a sparser one can
# only decide later, never wrongly.
LINEAR_LOOKS = 120
LOOK_GROWTH = 1.05


def judge_series(series: Series, settings: JudgeSettings) -> RolloutRecord:
    """Judge every rollout step in ``series`` (module docstring); the in-run record's shape."""
    fps = settings.fps or series.fps or 0.0
    f = frames_per_unit(fps) if fps else 1.0
    canary = HistogramCohort(series.cohorts["torchserve"], frames_per_unit=f)
    control = HistogramCohort(series.cohorts["local"], frames_per_unit=f)
    record = RolloutRecord(outcome="running")
    steps = rollout_steps(series.t, series.percent)
    if not steps:
        record.outcome = "incomplete"
        record.reason = "no rollout step in the interval: the rollout percent stayed at 0"
        return record
    every = max(settings.look_every_s, series.step)
    for i, st in enumerate(steps):
        step = _judge_step(i, st, canary, control, series, settings, every)
        record.steps.append(step)
        decision = step.decision
        if decision == "abort":
            record.outcome, record.failed_step = "aborted", i
            record.reason = f"step {i + 1} ({st.percent} %) aborted: " + (
                step.judgements[-1].reason if step.judgements else ""
            )
            return record
        if decision == "inconclusive":
            j = step.judgements[-1]
            record.outcome, record.inconclusive_step = "inconclusive", i
            record.reason = (
                f"step {i + 1} ({st.percent} %) inconclusive after {len(step.looks)} looks: "
                f"{j.reason}; to settle it: {j.settle}"
            )
            return record
    last = record.steps[-1]
    if last.decision == "complete":
        record.outcome, record.reason = "completed", f"reached {last.percent} %"
    elif last.decision == "advance":
        record.reason = f"step {len(steps)} ({last.percent} %) advanced: the next step may go"
    else:
        record.reason = f"step {len(steps)} ({last.percent} %) not decided yet: " + (
            last.judgements[-1].reason if last.judgements else "no look yet"
        )
    return record


def _judge_step(
    i: int,
    st: Step,
    canary: HistogramCohort,
    control: HistogramCohort,
    series: Series,
    settings: JudgeSettings,
    every: float,
) -> RolloutStep:
    step = RolloutStep(step=i, percent=st.percent, set_s=st.set_s, judgements=[], looks=[])
    t0 = st.set_s + settings.settle_s
    budget_end = st.set_s + settings.budget_s if settings.budget_s is not None else math.inf
    stop = min(st.end_s, budget_end)
    instants = [float(x) for x in series.t if t0 < x <= stop + 1e-9]
    looks: list[float] = []
    for x in instants:
        if not looks or (
            x - looks[-1] >= every - 1e-9
            and (len(looks) < LINEAR_LOOKS or x - t0 >= (looks[-1] - t0) * LOOK_GROWTH)
        ):
            looks.append(x)
    if instants and (not looks or looks[-1] != instants[-1]):
        looks.append(instants[-1])  # the last instant of the step is always looked at
    verdict: RolloutJudgement | None = None
    decision: Literal["advance", "abort", "complete", "continue", "inconclusive"] = "continue"
    for k, at in enumerate(looks):
        final = k == len(looks) - 1 and (st.ended or at >= budget_end - 1e-9)
        verdict = judge_step(canary, control, settings.judge, (t0, at), final=final)
        _no_accuracy(verdict)
        verdict.window_s = [t0, at]
        verdict.at_s = at
        verdict.look = k + 1
        decision = verdict.decision  # type: ignore[assignment]
        if decision == "advance" and st.percent >= settings.final_percent:
            decision = "complete"
            verdict.decision = "complete"
        step.looks.append(RolloutLook(
            at_s=at, decision=decision,
            status={c.criterion: c.status for c in verdict.criteria},
        ))  # fmt: skip
        if decision != "continue":
            break
    if verdict is not None:
        if decision == "inconclusive":
            verdict.settle = _settle(verdict, st, settings.judge.min_sessions)
        step.judgements.append(verdict)
    # A step still undecided at the interval's end has no decision yet (its look says continue).
    step.decision = None if decision == "continue" else decision
    if verdict is None:
        step.decision = "not judged"
    return step


def _no_accuracy(verdict: RolloutJudgement) -> None:
    for c in verdict.criteria:
        if c.criterion == "accuracy":
            c.why = NO_ACCURACY


def _settle(verdict: RolloutJudgement, st: Step, min_sessions: int) -> str:
    """What would settle an undecided step, from its criteria's evidence."""
    out: list[str] = []
    for c in verdict.criteria:
        ev = c.evidence
        if c.status != "n/a" or not c.criterion.endswith("latency") or ev is None:
            continue
        units = ev.units.split(" ")[0]
        if ev.needed:
            out.append(f"{c.criterion}: {ev.needed} more TorchServe {units} at {st.percent} %")
        else:
            out.append(f"{c.criterion}: the TorchServe cohort sits between the pass and fail "
                       "bars; more data at this spread would not decide it")  # fmt: skip
    figs = verdict.figures
    for name, fig in (("torchserve", figs.torchserve), ("local", figs.local)):
        if fig.sessions < min_sessions:
            out.append(f"the {name} cohort needs {min_sessions} sessions (has {fig.sessions})")
    why = "the step ended" if st.ended else "its budget ran out"
    return "; ".join(out) or f"a longer step ({why} before the evidence sufficed)"


def bucket_widths(edges: Sequence[float], value_ms: float | None) -> tuple[float, float] | None:
    """The bucket (lo, hi] in ms holding ``value_ms`` (the resolution of a figure read from
    these edges); None for None, (last edge, inf) beyond the last edge."""
    if value_ms is None:
        return None
    lo = 0.0
    for e in edges:
        if value_ms <= e * 1000.0 + 1e-9:
            return lo, e * 1000.0
        lo = e * 1000.0
    return lo, math.inf


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The figures compared between the two judges, (family, percentile).
AGREEMENT_FIGURES = (("frame", "p50"), ("frame", "p95"), ("inference", "p50"), ("inference", "p95"))


def agreement(
    in_run: RolloutRecord,
    ours: RolloutRecord,
    frame_edges: Sequence[float],
    inference_edges: Sequence[float],
) -> Agreement:
    """Step by step (matched in order; the in-run steps the load cut short, "not judged",
    are left out): both decisions, looks, counts and cohort percentiles with the bucket
    holding ours. ``*_edges``: the histograms' finite edges (s)."""
    out: list[StepAgreement] = []
    for a, b in zip(in_run.steps, ours.steps, strict=False):
        if a.decision in (None, "not judged"):
            continue
        row = StepAgreement(
            percent=a.percent, in_run=a.decision, prometheus=b.decision,
            same=a.decision == b.decision and a.percent == b.percent,
            looks_in_run=len(a.looks), looks_prometheus=len(b.looks),
        )  # fmt: skip
        if a.judgements and b.judgements:
            fa, fb = a.judgements[-1].figures, b.judgements[-1].figures
            for side in COHORTS:
                ca, cb = getattr(fa, side), getattr(fb, side)
                for what in ("sessions", "frames", "inferences"):
                    row.counts[f"{side} {what}"] = [getattr(ca, what), getattr(cb, what)]
                for family, key in AGREEMENT_FIGURES:
                    attr = f"{family}_latency_ms"
                    va = getattr(getattr(ca, attr), key)
                    vb = getattr(getattr(cb, attr), key)
                    edges = frame_edges if family == "frame" else inference_edges
                    bucket = bucket_widths(edges, vb)
                    row.figures.append(FigureAgreement(
                        figure=f"{side} {family} {key}", in_run_ms=va, prometheus_ms=vb,
                        bucket_ms=None if bucket is None
                        else [bucket[0], None if math.isinf(bucket[1]) else bucket[1]],
                        within_bucket=None if bucket is None or va is None
                        else bucket[0] <= va <= bucket[1],
                    ))  # fmt: skip
        out.append(row)
    return Agreement(steps=out, same_decisions=bool(out) and all(s.same for s in out))


def judge_window(
    url: str,
    window_unix: tuple[float, float],
    judge: RolloutJudge,
    *,
    final: bool = False,
    step: float = 1.0,
    fps: float | None = None,
) -> RolloutJudgement:
    """One look of the in-run judge with ``rollout.judge.source: prometheus``: the cohorts
    between ``window_unix`` = (t0, t1) (unix s) read from the stack's Prometheus at ``url``
    (instants every ``step`` s) and judged by ``judge_step``. When Prometheus has no answer
    yet (unreachable, no series), the look is undecided and says why (``continue``; at the
    ``final`` look ``inconclusive``)."""
    t0, t1 = window_unix
    try:
        with PrometheusAPI(url, timeout_s=5.0) as api:
            # From one instant before t0: the counts at t0 are the last sample at or before it.
            got = {name: api.range_query(name, t0 - step, max(t1, t0), step) for name, _ in QUERIES}
        series = series_from(got, f"at {redact_text(url)}")
    except (PrometheusError, NoSeries, ValueError) as exc:
        return _unjudged(f"Prometheus gave no cohorts yet: {redact_text(str(exc))}", final)
    f = frames_per_unit(fps or series.fps or 0.0) if (fps or series.fps) else 1.0
    canary = HistogramCohort(series.cohorts["torchserve"], frames_per_unit=f)
    control = HistogramCohort(series.cohorts["local"], frames_per_unit=f)
    rel = (t0 - series.start, t1 - series.start)
    verdict = judge_step(canary, control, judge, rel, final=final)
    _no_accuracy(verdict)
    return verdict


def _unjudged(reason: str, final: bool) -> RolloutJudgement:
    empty = CohortFigures(
        sessions=0, frames=0, inferences=0, frame_latency_ms=CohortLatency(),
        inference_latency_ms=CohortLatency(), errors=0, judged_signs=0,
    )  # fmt: skip
    return RolloutJudgement(
        decision="inconclusive" if final else "continue",
        reason=("the evidence budget ran out with no criterion failed: " if final else "") + reason,
        criteria=[],
        figures=CohortPair(torchserve=empty, local=empty.model_copy()),
    )
