"""Judge each criterion of a decision file on its evidence: met, not met or unknown.

Pure functions over typed evidence (:mod:`harness.decision.evidence`); nothing here runs or
reads files. The rules, per criterion:

- a part of a criterion that cannot be measured (no evidence, an INVALID or failed run, a
  null figure, "too little data", a censored capacity that does not decide) is unknown, with
  what would settle it; a measured miss is not met; a criterion is not met when any part is,
  else unknown when any part is, else met;
- comparisons with the baseline are the project's comparison statistics
  (:func:`harness.analysis.compare.compare_runs`, which is ``compare`` for one run a side):
  "worse" is p < alpha/m (Bonferroni) and |change| > 5 %, never a raw difference;
- a capacity is the bracket [highest passing, lowest failing) load of the sweep's search: a
  search that passed its largest load, or stopped at the load machine's limit, is a lower
  bound only ("raise search.max"), and two capacities are only compared as far as their
  brackets allow (never "equal" because two lower bounds are).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.analysis.compare import Comparison, MetricComparison, Verdict, compare_runs
from harness.analysis.gates import evaluate_gates
from harness.results.model import GateResult, Results
from harness.sweep.search import MACHINE_LIMIT_NOTE

from .evidence import (
    EvidenceKey,
    EvidenceSet,
    RunEvidence,
    SweepConfiguration,
    SweepDocument,
    SweepEvidence,
)
from .model import Compared, Criterion, Quantity, Status
from .spec import (
    GPU_HOST_HINT,
    AccuracyTarget,
    DecisionFile,
    ErrorsTarget,
    GatesTarget,
    GpuTarget,
    LatencyTarget,
    RolloutTarget,
    ThroughputTarget,
)

Rel = Callable[[Path], str]


def combine(parts: list[Status]) -> Status:
    """not_met if any part is, else unknown if any is, else met (no parts: unknown)."""
    if Status.NOT_MET in parts:
        return Status.NOT_MET
    if Status.UNKNOWN in parts or not parts:
        return Status.UNKNOWN
    return Status.MET


def run_problem(run: RunEvidence) -> str | None:
    """Why a run's figures cannot be used (None: they can)."""
    r = run.results
    if r.verdict == "error" or (r.error and not r.summary.frame.latency_ms.count):
        return f"the run {r.run_id} failed: {r.error or 'no measurement'}"
    if not r.valid:
        reasons = "; ".join(x.message for x in r.invalid_reasons) or "no reason recorded"
        return f"the measurement {r.run_id} is INVALID ({reasons})"
    return None


@dataclass(frozen=True)
class _Part:
    status: Status
    why: str
    settle: str | None = None


def _merge(name: str, title: str, target: str, parts: list[_Part], **kw: object) -> Criterion:
    status = combine([p.status for p in parts])
    shown = [p for p in parts if p.status == status] or parts
    settle = "; ".join(dict.fromkeys(p.settle for p in parts if p.settle and p.status == status))
    return Criterion(
        name=name,
        title=title,
        target=target,
        status=status,
        why="; ".join(p.why for p in shown),
        settle=(settle or None) if status == Status.UNKNOWN else None,
        **kw,
    )


def _missing(name: str, title: str, target: str, what: str, problem: str | None) -> Criterion:
    why = problem or f"no {what} evidence"
    return Criterion(
        name=name,
        title=title,
        target=target,
        status=Status.UNKNOWN,
        why=why,
        settle=f"run harness decide without --no-run (or give --from a folder with the {what})",
    )


# --------------------------------------------------------------------------- runs


def comparison_of(ev: EvidenceSet) -> Comparison | None:
    """The comparison statistics of the candidate runs against the baseline runs."""
    if not ev.baselines or not ev.candidates:
        return None
    return compare_runs([b.document for b in ev.baselines], [c.document for c in ev.candidates])


def _row(cmp: Comparison | None, metric: str) -> MetricComparison | None:
    if cmp is None:
        return None
    return next((m for m in cmp.metrics if m.metric == metric), None)


def _compared(row: MetricComparison) -> Compared:
    return Compared(
        metric=row.metric,
        verdict=str(row.verdict),
        change=row.change,
        p_value=row.p_value,
        method=row.method,
        note=row.note,
    )


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def _runs_problem(ev: EvidenceSet, sides: str = "both") -> str | None:
    """Why the runs of ``sides`` (both | candidate) cannot be used (None: they can)."""
    runs = ev.candidates if sides == "candidate" else [*ev.baselines, *ev.candidates]
    problems = [p for r in runs if (p := run_problem(r))]
    return "; ".join(problems) or None


RERUN = "rerun the runs (an INVALID measurement cannot be judged)"


def _absolute(
    ev: EvidenceSet, measured: float | None, ok: bool | None, met: str, missed: str, absent: str
) -> _Part:
    """The candidate-only part of a criterion: its runs' problem first, then the figure."""
    if problem := _runs_problem(ev, "candidate"):
        return _Part(Status.UNKNOWN, problem, RERUN)
    if measured is None or ok is None:
        return _Part(Status.UNKNOWN, absent, "longer candidate runs")
    return _Part(Status.MET, met) if ok else _Part(Status.NOT_MET, missed)


def _versus(
    ev: EvidenceSet, cmp: Comparison | None, metric: str, label: str, hint: str
) -> tuple[_Part, list[Compared]]:
    """The comparison part: both sides' runs must be usable for it."""
    if _runs_problem(ev, "candidate"):  # said once, by the candidate's own part
        return _Part(Status.UNKNOWN, "no comparison either", RERUN), []
    if problem := _runs_problem(ev):
        return _Part(Status.UNKNOWN, f"no comparison: {problem}", RERUN), []
    return _vs_baseline(cmp, metric, label, hint)


def _vs_baseline(
    cmp: Comparison | None, metric: str, label: str, repeat_hint: str
) -> tuple[_Part, list[Compared]]:
    """The comparison's verdict on ``metric`` as a part: worse -> not met."""
    if cmp is not None and not cmp.usable:
        return _Part(Status.UNKNOWN, f"no comparison: {cmp.problem}", repeat_hint), []
    row = _row(cmp, metric)
    if row is None:
        return _Part(Status.UNKNOWN, f"{label} not compared", repeat_hint), []
    shown = [_compared(row)]
    change = "" if row.change is None else f" {row.change:+.0%}"
    p = "" if row.p_value is None else f", p = {row.p_value:.2g}"
    if row.verdict == Verdict.WORSE:
        return _Part(Status.NOT_MET, f"{label}{change} vs baseline: worse{p}"), shown
    if row.verdict in (Verdict.SAME, Verdict.BETTER):
        return _Part(Status.MET, f"{label}{change} vs baseline: {row.verdict}{p}"), shown
    note = row.note or str(row.verdict)
    return _Part(
        Status.UNKNOWN, f"{label} vs baseline: {note}", _settle_little(row, repeat_hint)
    ), shown


# Independent blocks a side that narrow a latency change's interval under the comparison's
# "undecided" width (+50 %): an A/A pair of 29 windows in 9-s blocks (3 a side) gave
# [-48 %, +78 %]; the width shrinks as 1/sqrt(blocks), so ~10 blocks bring that to ~+/-40 %.
BLOCKS_TO_DECIDE = 10


def _settle_little(row: MetricComparison, default: str) -> str:
    """What settles "too little data": when the sides' windows hold few independent blocks
    (the metric's own swings, compare.py's block length), how long a run would hold enough."""
    blocks = row.block_windows
    n = min(row.n_run or 0, row.n_baseline or 0)
    if row.verdict == Verdict.TOO_LITTLE_DATA and blocks and n > 0:
        b = max(blocks)
        if n / b < BLOCKS_TO_DECIDE:
            return (
                f"runs measuring ~{BLOCKS_TO_DECIDE * b} s (this metric moves in {b}-s swings: "
                f"{n} s hold {n // b} independent blocks) or evidence.runs.repeat >= 3"
            )
    return default


def judge_latency(
    name: str, family: str, t: LatencyTarget, ev: EvidenceSet, cmp: Comparison | None, rel: Rel
) -> Criterion:
    """Candidate ``family`` (frame | inference) p95 vs ``t.p95_below_ms`` and vs the baseline."""
    title = f"{family} latency"
    target = f"p95 < {t.p95_below_ms:g} ms" + (
        ", not worse than baseline" if t.vs_baseline == "not_worse" else ""
    )
    if not ev.candidates or not ev.baselines:
        return _missing(name, title, target, "baseline and candidate runs", ev.problems.get("runs"))
    paths = [rel(r.path) for r in [*ev.baselines, *ev.candidates]]

    def p95(r: Results) -> float | None:
        fam = r.summary.frame if family == "frame" else r.summary.inference
        return fam.latency_ms.p95

    measured = _mean([p95(c.results) for c in ev.candidates])
    base = _mean([p95(b.results) for b in ev.baselines])
    q = [Quantity(label="p95", value=measured, unit="ms")]
    qb = [Quantity(label="p95", value=base, unit="ms")]
    lim = t.p95_below_ms
    parts = [
        _absolute(
            ev,
            measured,
            None if measured is None else measured < lim,
            f"p95 {measured or 0:.1f} ms < {lim:g} ms",
            f"p95 {measured or 0:.1f} ms >= {lim:g} ms",
            f"no {family} replies measured",
        )
    ]
    compared: list[Compared] = []
    if t.vs_baseline == "not_worse":
        hint = "longer runs (a p95 needs >= 200 replies a side) or evidence.runs.repeat >= 3"
        part, compared = _versus(ev, cmp, f"{family}.latency_ms.p95", "p95", hint)
        parts.append(part)
    return _merge(
        name, title, target, parts,
        measured=q, baseline=qb, compared=compared, evidence=paths, limit=lim,
    )  # fmt: skip


def judge_accuracy(
    t: AccuracyTarget, ev: EvidenceSet, cmp: Comparison | None, rel: Rel
) -> Criterion:
    """Candidate accuracy >= ``t.min`` and not worse than the baseline's."""
    name, title, target = "accuracy", "accuracy parity", f">= {t.min:g}, not worse than baseline"
    if not ev.candidates or not ev.baselines:
        return _missing(name, title, target, "baseline and candidate runs", ev.problems.get("runs"))
    paths = [rel(r.path) for r in [*ev.baselines, *ev.candidates]]
    measured = _mean([c.results.summary.accuracy for c in ev.candidates])
    base = _mean([b.results.summary.accuracy for b in ev.baselines])
    q = [Quantity(label="accuracy", value=measured, unit="share")]
    qb = [Quantity(label="accuracy", value=base, unit="share")]
    parts = [
        _absolute(
            ev,
            measured,
            None if measured is None else measured >= t.min,
            f"accuracy {measured or 0:.3f} >= {t.min:g}",
            f"accuracy {measured or 0:.3f} < {t.min:g}",
            "no signs with ground truth",
        )
    ]
    part, compared = _versus(ev, cmp, "accuracy", "accuracy", "longer runs (more signs)")
    parts.append(part)
    return _merge(
        name, title, target, parts, measured=q, baseline=qb, compared=compared, evidence=paths
    )


def judge_errors(t: ErrorsTarget, ev: EvidenceSet, rel: Rel) -> Criterion:
    """Candidate ``errors.total`` (summed over its runs) at most ``t.max_total``."""
    name, title, target = "errors", "errors", f"errors.total <= {t.max_total}"
    if not ev.candidates:
        return _missing(name, title, target, "candidate runs", ev.problems.get("runs"))
    paths = [rel(r.path) for r in [*ev.baselines, *ev.candidates]]
    totals = [c.results.summary.errors.total for c in ev.candidates]
    total = None if any(x is None for x in totals) else sum(x or 0 for x in totals)
    base = [b.results.summary.errors.total for b in ev.baselines]
    btotal = None if not base or any(x is None for x in base) else sum(x or 0 for x in base)
    q = [Quantity(label="errors", value=total, unit="count")]
    qb = [Quantity(label="errors", value=btotal, unit="count")]
    if problem := _runs_problem(ev, "candidate"):
        part = _Part(Status.UNKNOWN, problem, RERUN)
    elif total is None:
        part = _Part(Status.UNKNOWN, "errors not counted", "rerun the runs")
    elif total <= t.max_total:
        part = _Part(Status.MET, f"{total} errors over {len(totals)} candidate run(s)")
    else:
        part = _Part(Status.NOT_MET, f"{total} errors > {t.max_total}")
    return _merge(name, title, target, [part], measured=q, baseline=qb, evidence=paths)


def judge_gpu(t: GpuTarget, ev: EvidenceSet, rel: Rel) -> Criterion:
    """Mean GPU utilisation of the candidate runs within ``t.util_between``."""
    lo, hi = t.util_between
    name, title, target = "gpu", "GPU utilisation", f"{lo:g}-{hi:g} % mean"
    if not ev.candidates:
        return _missing(name, title, target, "candidate runs", ev.problems.get("runs"))
    paths = [rel(c.path) for c in ev.candidates]
    gpus = [c.results.summary.gpu for c in ev.candidates]
    absent = [g for g in gpus if g is None or not g.present]
    if absent:
        reason = next((g.reason for g in absent if g is not None and g.reason), None)
        return Criterion(
            name=name,
            title=title,
            target=target,
            status=Status.UNKNOWN,
            measured=[Quantity(label="GPU", value=None, unit="%")],
            evidence=paths,
            why=f"no GPU present ({reason or 'none sampled'})",
            settle=GPU_HOST_HINT,
        )
    util = _mean([g.util_mean for g in gpus if g is not None])
    q = [Quantity(label="utilisation", value=util, unit="%")]
    if problem := _runs_problem(ev, "candidate"):
        part = _Part(Status.UNKNOWN, problem, RERUN)
    elif util is None:
        part = _Part(Status.UNKNOWN, "GPU present but utilisation not sampled", GPU_HOST_HINT)
    elif lo <= util <= hi:
        part = _Part(Status.MET, f"mean {util:.0f} % in [{lo:g}, {hi:g}]")
    else:
        part = _Part(Status.NOT_MET, f"mean {util:.0f} % outside [{lo:g}, {hi:g}]")
    return _merge(name, title, target, [part], measured=q, evidence=paths)


# --------------------------------------------------------------------------- fault runs


def judge_gates(
    name: str, title: str, t: GatesTarget, run: RunEvidence | None, problem: str | None, rel: Rel
) -> Criterion:
    """Every gate of ``t`` holds in ``run`` (a null metric is unknown, not a pass)."""
    target = "; ".join(t.gates)
    if run is None:
        return _missing(name, title, target, f"{name} run", problem)
    r = run.results
    results = [
        GateResult.model_validate(g)
        for g in evaluate_gates(
            t.gates,
            r.summary.model_dump(mode="json"),
            [f.model_dump(mode="json") for f in r.faults],
        )
    ]
    measured = [Quantity(label=g.metric, value=g.measured, unit=_unit(g.metric)) for g in results]
    if why := run_problem(run):
        parts = [_Part(Status.UNKNOWN, why, f"rerun {r.name}")]
    else:
        parts = []
        for g in results:
            if g.passed:
                parts.append(_Part(Status.MET, f"{g.expr} ({_num(g.measured)})"))
            elif g.measured is None:
                parts.append(_Part(Status.UNKNOWN, f"{g.expr}: {g.reason}", f"rerun {r.name}"))
            else:
                parts.append(_Part(Status.NOT_MET, f"{g.expr}: {g.reason}"))
    return _merge(name, title, target, parts, measured=measured, evidence=[rel(run.path)])


def _unit(metric: str) -> str:
    from harness.results.model import metric_spec

    spec = metric_spec(metric)
    return spec.unit if spec is not None else ""


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def judge_rollout(
    t: RolloutTarget, run: RunEvidence | None, problem: str | None, rel: Rel
) -> Criterion:
    """The canary's rollout completed up to ``t.to_percent`` %."""
    name, title, target = "rollout", "canary rollout", f"completes to {t.to_percent} %"
    if run is None:
        return _missing(name, title, target, "rollout run", problem)
    r = run.results
    ro = r.rollout
    reached = max((s.percent for s in ro.steps), default=0) if ro is not None else 0
    q = [Quantity(label="reached", value=float(reached), unit="%")]
    kw = {"measured": q, "evidence": [rel(run.path)]}
    settle = f"rerun {r.name} longer (workload.duration_s) or with more sessions"
    if ro is None:
        part = _Part(Status.UNKNOWN, f"{r.name} has no rollout block", "a scenario with rollout:")
    elif why := run_problem(run):  # an INVALID measurement may abort a healthy rollout
        part = _Part(Status.UNKNOWN, why, settle)
    elif str(r.verdict) == "inconclusive" or ro.outcome not in ("completed", "aborted"):
        part = _Part(Status.UNKNOWN, f"rollout {ro.outcome}: {ro.reason or '-'}", settle)
    elif ro.outcome == "aborted":
        step = ro.failed_step
        at = f" at step {step} ({ro.steps[step].percent} %)" if step is not None else ""
        part = _Part(Status.NOT_MET, f"rollout aborted{at}: {ro.reason or '-'}")
    elif reached < t.to_percent:
        part = _Part(Status.NOT_MET, f"completed at {reached} % < {t.to_percent} %")
    else:
        part = _Part(Status.MET, f"completed to {reached} % ({len(ro.steps)} steps)")
    return _merge(name, title, target, [part], **kw)


# --------------------------------------------------------------------------- capacity


@dataclass(frozen=True)
class Bracket:
    """A capacity in sessions: ``passed`` <= true capacity < ``failed`` (None: unbounded
    above, a lower bound only; ``note`` says why)."""

    passed: int | None
    failed: int | None
    note: str

    @property
    def censored(self) -> bool:
        """True when the search found no failing load (a lower bound)."""
        return self.failed is None

    @property
    def upper(self) -> float:
        """The largest capacity the bracket allows (inf when censored)."""
        return math.inf if self.failed is None else float(self.failed - 1)


# What settles a capacity the load machine could not push to its knee.
MORE_LOAD = (
    "more load than this machine can offer: a bigger or quieter load machine, or "
    "workload.engine: locust over several (README, 'More load than one machine')"
)


def bracket(config: SweepConfiguration) -> Bracket:
    """The bracket of a configuration's search (from its levels, in sessions)."""
    passed = [lv.sessions for lv in config.search if lv.outcome == "pass"]
    failed = [lv.sessions for lv in config.search if lv.outcome == "fail"]
    hi = max(passed) if passed else None
    lo_fail = min((f for f in failed if hi is None or f > hi), default=None)
    note = config.capacity_note or config.note or config.status
    return Bracket(hi, lo_fail, note)


def _ratio_range(c: Bracket, b: Bracket) -> tuple[float, float]:
    """(lowest, highest) candidate/baseline capacity ratio the two brackets allow."""
    lo = (c.passed or 0) / b.upper if b.upper > 0 else math.inf
    hi = c.upper / b.passed if b.passed else math.inf
    return lo, hi


def judge_throughput(
    t: ThroughputTarget, ev: EvidenceSet, cand_id: str, base_id: str, rel: Rel
) -> Criterion:
    """Candidate capacity (frames/s and inferences/s at its highest passing load, under the
    sweep's constraints) vs ``t.min_frames_per_s`` and vs the baseline's capacity."""
    lo_r, hi_r = t.design_range
    name, title = "throughput", "throughput capacity"
    target = (
        f">= {t.min_frames_per_s:g} frames/s at the latency constraint (design {lo_r:g}-"
        f"{hi_r:g} req/s), >= {t.min_ratio:g}x baseline capacity"
    )
    if ev.capacity is None:
        return _missing(name, title, target, "capacity sweep", ev.problems.get("capacity"))
    sw: SweepDocument = ev.capacity.sweep
    paths = [rel(ev.capacity.path)]
    cand, base = sw.configuration(cand_id), sw.configuration(base_id)
    if cand is None or base is None:
        why = f"the sweep has no configuration {cand_id if cand is None else base_id}"
        return _missing(name, title, target, "capacity sweep", why)
    res = sw.load.search.resolution if sw.load.search else 0
    raise_max = (
        f"raise search.max above {sw.load.search.max} sessions"
        if sw.load.search
        else "a sweep with load.search"
    )
    cb, bb = bracket(cand), bracket(base)

    def settle_censored(*sides: Bracket) -> str:
        # A side censored by the load machine is not settled by a higher search.max.
        limited = any(b.censored and b.note.startswith(MACHINE_LIMIT_NOTE) for b in sides)
        return MORE_LOAD if limited else raise_max

    def figures(c: SweepConfiguration, b: Bracket) -> list[Quantity]:
        bound = "at_least" if b.censored else "exact"
        pt = sw.point(c.best_point)
        f = pt.figures if pt is not None else None
        return [
            Quantity(
                label="frames/s",
                value=f.frames_per_s if f else None,
                unit="1/s",
                bound=bound,
            ),
            Quantity(
                label="inferences/s",
                value=f.inferences_per_s if f else None,
                unit="1/s",
                bound=bound,
            ),
            Quantity(
                label="sessions",
                value=None if b.passed is None else float(b.passed),
                unit="sessions",
                bound=bound,
            ),
        ]

    measured, baseline = figures(cand, cb), figures(base, bb)
    parts: list[_Part] = []
    fps = measured[0].value
    if cb.passed is None:
        most = (cb.failed - 1) * (cand.fps or 0) if cb.failed is not None else None
        if most is not None and most < t.min_frames_per_s:
            parts.append(
                _Part(
                    Status.NOT_MET,
                    f"fails at {cb.failed} sessions, no load passed: at most {most:.0f} "
                    f"frames/s < {t.min_frames_per_s:g}",
                )
            )
        elif cb.failed is not None:
            parts.append(
                _Part(
                    Status.UNKNOWN,
                    f"candidate fails at {cb.failed} sessions and no lower load passed ({cb.note})",
                    "a lower search.start, on a quieter load machine",
                )
            )
        else:
            parts.append(
                _Part(Status.UNKNOWN, f"candidate: no load measured ({cb.note})", "rerun the sweep")
            )
    elif fps is None:
        parts.append(_Part(Status.UNKNOWN, "no frames/s at the capacity", "rerun the sweep"))
    elif fps >= t.min_frames_per_s:
        at = "at least " if cb.censored else ""
        parts.append(_Part(Status.MET, f"{at}{fps:.0f} frames/s >= {t.min_frames_per_s:g}"))
    elif cb.censored:
        parts.append(
            _Part(
                Status.UNKNOWN,
                f"at least {fps:.0f} frames/s, a lower bound below {t.min_frames_per_s:g} "
                f"({cb.note})",
                settle_censored(cb),
            )
        )
    else:
        parts.append(_Part(Status.NOT_MET, f"{fps:.0f} frames/s < {t.min_frames_per_s:g}"))
    ratio_q: Quantity | None = None
    ratio_range: tuple[float | None, float | None] | None = None
    if cb.passed is not None and bb.passed is not None:
        lo, hi = _ratio_range(cb, bb)
        ratio_range = (lo, None if math.isinf(hi) else hi)
        # A censored side makes the ratio a bound (both censored: no ratio at all).
        if cb.censored and bb.censored:
            ratio_q = Quantity(label="capacity ratio", value=None, unit="ratio")
        elif bb.censored:
            ratio_q = Quantity(label="capacity ratio", value=hi, unit="ratio", bound="at_most")
        elif cb.censored:
            ratio_q = Quantity(label="capacity ratio", value=lo, unit="ratio", bound="at_least")
        else:
            ratio_q = Quantity(label="capacity ratio", value=cb.passed / bb.passed, unit="ratio")
        span = f"{lo:.2f}-{'inf' if math.isinf(hi) else f'{hi:.2f}'}"
        words = (
            f"capacity {_cap(cb)} vs baseline {_cap(bb)} sessions: ratio {span} as the "
            f"brackets allow (resolution {res} sessions)"
        )
        if hi < t.min_ratio:
            parts.append(_lower(t, ev.capacity, cb, bb, cand_id, base_id, res, words))
        elif lo >= t.min_ratio:
            parts.append(_Part(Status.MET, words))
        elif not cb.censored and not bb.censored:
            parts.append(_Part(Status.MET, f"{words}: the same within the sweep's resolution"))
        else:
            which = " and ".join(s for s, b in (("candidate", cb), ("baseline", bb)) if b.censored)
            parts.append(
                _Part(
                    Status.UNKNOWN,
                    f"{words}: the {which} capacity is a lower bound, not comparable",
                    settle_censored(cb, bb),
                )
            )
    elif bb.passed is None:
        parts.append(
            _Part(Status.UNKNOWN, f"baseline: no load passed ({bb.note})", "rerun the sweep")
        )
    return _merge(
        name,
        title,
        target,
        parts,
        measured=measured,
        baseline=baseline,
        ratio=ratio_q,
        ratio_range=ratio_range,
        evidence=paths,
    )


def _lower(
    t: ThroughputTarget,
    cap: SweepEvidence,
    cb: Bracket,
    bb: Bracket,
    cand_id: str,
    base_id: str,
    res: int,
    words: str,
) -> _Part:
    """The brackets put the candidate below the baseline. Beyond one resolution step that is
    the answer; within one step it may be one noisy run at the knee, so the runs at the load
    the candidate failed and the baseline passed are compared (the sweep's constraint metric,
    frame p95, by the comparison statistics): worse settles it, anything else is noise."""
    assert cb.failed is not None and bb.passed is not None  # hi < min_ratio needs both
    if (cb.upper + max(res, 1)) / bb.passed < t.min_ratio:
        return _Part(Status.NOT_MET, f"{words}: lower than the baseline")
    level = cb.failed if cb.failed <= bb.passed else bb.passed
    cand, base = cap.point_run(cand_id, level), cap.point_run(base_id, level)
    if cand is None or base is None:
        return _Part(
            Status.UNKNOWN,
            f"{words}: lower by one resolution step, and the runs at {level} sessions are not "
            "there to compare",
            "a finer search.resolution",
        )
    row = _row(compare_runs([base.document], [cand.document]), "frame.latency_ms.p95")
    if row is not None and row.verdict == Verdict.WORSE:
        p = "" if row.p_value is None else f", p = {row.p_value:.2g}"
        return _Part(
            Status.NOT_MET,
            f"{words}: lower than the baseline; at {level} sessions frame p95 "
            f"{_num(row.run)} vs {_num(row.baseline)} ms is worse{p}",
        )
    verdict = row.verdict if row is not None else "not compared"
    if cb.censored or bb.censored:
        return _Part(
            Status.UNKNOWN,
            f"{words}: within one step, frame p95 at {level} sessions {verdict}",
            f"raise search.max above {level}",
        )
    return _Part(
        Status.MET,
        f"{words}: the same within the sweep's noise (one step; frame p95 at {level} sessions "
        f"{verdict})",
    )


def _cap(b: Bracket) -> str:
    if b.passed is None:
        return "none"
    if b.censored:
        return f">= {b.passed}"
    return f"{b.passed} (fails at {b.failed})"


# --------------------------------------------------------------------------- all


# Criteria judged by gates on one run: criterion -> (its evidence key, its title).
_GATED: dict[str, tuple[EvidenceKey, str]] = {
    "kill": ("fallback_kill", "zero downtime: TorchServe killed"),
    "reload": ("hot_reload", "zero downtime: model reloaded"),
}


def judge_all(spec: DecisionFile, ev: EvidenceSet, rel: Rel) -> list[Criterion]:
    """Every criterion the file names, in the file's criteria order."""
    c = spec.criteria
    cmp = comparison_of(ev)
    out: list[Criterion] = []
    for key in type(c).model_fields:
        target = getattr(c, key)
        if target is None:
            continue
        if key == "throughput":
            cap = spec.evidence.capacity
            assert cap is not None  # the file's validator requires it
            out.append(judge_throughput(target, ev, cap.candidate, cap.baseline, rel))
        elif key in ("frame_latency", "inference_latency"):
            out.append(judge_latency(key, key.split("_")[0], target, ev, cmp, rel))
        elif key == "gpu":
            out.append(judge_gpu(target, ev, rel))
        elif key in _GATED:
            evidence, title = _GATED[key]
            out.append(
                judge_gates(key, title, target, ev.singles.get(evidence),
                            ev.problems.get(evidence), rel)
            )  # fmt: skip
        elif key == "rollout":
            out.append(
                judge_rollout(target, ev.singles.get("rollout"), ev.problems.get("rollout"), rel)
            )
        elif key == "accuracy":
            out.append(judge_accuracy(target, ev, cmp, rel))
        elif key == "errors":
            out.append(judge_errors(target, ev, rel))
    return out
