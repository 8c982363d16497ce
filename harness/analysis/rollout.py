"""The rollout judge: one step's TorchServe cohort against its old-pipeline cohort.

Sessions are sticky: the backend assigns each one to TorchServe or the old in-process pipeline
at connect, so during a step both cohorts stream under the same load at the same time. A step
is judged on the frames SCHEDULED inside its judgement window, split by the session's cohort
(never by a reply's ``served_by``: a TorchServe-cohort session gets local replies when a
TorchServe call falls back or a local hedge wins, which is exactly what a bad TorchServe looks
like). Criteria (``RolloutJudge`` in the scenario):

- latency (frame and/or inference percentiles): each cohort's per-1-s-window histograms,
  compared with the project's comparison statistics in ONE call (:func:`compare_cohorts` ->
  ``harness.analysis.compare.compare_windows``: block bootstrap over windows, Bonferroni over
  the metrics, "too little data" below its minimums); a criterion FAILS when the statistics say
  ``worse`` AND the TorchServe cohort's figure exceeds the old one's by more than the allowance
  (``max(latency_allowance_ms, ratio * old)``), and is ``n/a`` when they say too little data;
- errors: the TorchServe cohort's share of errored or lost frames may exceed the old one's by
  ``max_error_share_increase``;
- fallback: the share of the TorchServe cohort's classifications answered by the local engine
  (a failed TorchServe call's fallback, or a local hedge that won) may be at most
  ``max_fallback_share`` (judged from ``min_inferences`` classifications). This is what a bad
  TorchServe looks like once hedging hides its latency from the user: the cohort's latency is
  fine, but TorchServe is not serving it;
- accuracy: may fall short by ``max_accuracy_drop`` (``n/a`` below ``min_judged_signs``).

Decision: ``abort`` when any criterion fails; ``hold`` when none fails but a cohort is smaller
than ``min_sessions`` or a latency criterion is ``n/a`` (errors and accuracy lacking data do not
hold a step); else ``advance``. Past ``max_holds`` (``final=True``) a step still short of data
advances on the latency criteria that were judged (all passed), and aborts when none was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

import harness.hdr as hdr
from harness.results.model import (
    CohortFigures,
    CohortLatency,
    CohortPair,
    Document,
    GateResult,
    RolloutCriterion,
    RolloutJudgement,
)
from harness.scenario.models import RolloutJudge

from .compare import MetricComparison, Verdict, WindowSeries, compare_windows

COHORTS = ("torchserve", "local")
_PCT = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
Mask = npt.NDArray[np.bool_]


def _empty_mask() -> Mask:
    return np.empty(0, dtype=bool)


@dataclass
class CohortFrames:
    """One cohort's frames in a judgement window (run clock, s).

    ``latency_s``: reply - scheduled (NaN unanswered); ``inference``: the reply carried a
    classification; ``errored``: an error reply; ``lost``: no reply within the reply timeout;
    ``judged``/``correct``: classified frames with a truth, and those classified right.
    """

    sessions: int = 0
    t_scheduled: hdr.Floats = field(default_factory=lambda: np.empty(0))
    latency_s: hdr.Floats = field(default_factory=lambda: np.empty(0))
    inference: Mask = field(default_factory=_empty_mask)
    errored: Mask = field(default_factory=_empty_mask)
    lost: Mask = field(default_factory=_empty_mask)
    judged: Mask = field(default_factory=_empty_mask)
    correct: Mask = field(default_factory=_empty_mask)
    served_local: Mask = field(default_factory=_empty_mask)

    @classmethod
    def join(cls, parts: Sequence[CohortFrames]) -> CohortFrames:
        """Concatenate per-session parts into one cohort."""
        if not parts:
            return cls()
        cat = np.concatenate
        return cls(
            sessions=sum(p.sessions for p in parts),
            t_scheduled=cat([p.t_scheduled for p in parts]),
            latency_s=cat([p.latency_s for p in parts]),
            inference=cat([p.inference for p in parts]),
            errored=cat([p.errored for p in parts]),
            lost=cat([p.lost for p in parts]),
            judged=cat([p.judged for p in parts]),
            correct=cat([p.correct for p in parts]),
            served_local=cat([p.served_local for p in parts]),
        )

    def ok(self) -> Mask:
        """Frames answered without an error."""
        return np.asarray(~np.isnan(self.latency_s) & ~self.errored, dtype=np.bool_)

    def figures(self) -> CohortFigures:
        """The cohort's figures over the window, for the results and the report."""
        ok = self.ok()
        frame = self.latency_s[ok] * 1000.0
        inf = self.latency_s[ok & self.inference] * 1000.0
        n = int(self.t_scheduled.size)
        bad = int(np.count_nonzero(self.errored | self.lost))
        judged = int(np.count_nonzero(self.judged))
        local = self.served_local[:n] if self.served_local.size == n else np.zeros(n, bool)

        def pcts(v: hdr.Floats) -> CohortLatency:
            if not v.size:
                return CohortLatency.model_validate(dict.fromkeys(_PCT))
            return CohortLatency.model_validate(
                {
                    k: float(x)
                    for k, x in zip(_PCT, np.percentile(v, list(_PCT.values())), strict=True)
                }
            )

        return CohortFigures(
            sessions=self.sessions,
            frames=n,
            inferences=int(inf.size),
            frame_latency_ms=pcts(frame),
            inference_latency_ms=pcts(inf),
            errors=bad,
            error_share=bad / n if n else None,
            judged_signs=judged,
            accuracy=int(np.count_nonzero(self.correct)) / judged if judged else None,
            local_share=(
                int(np.count_nonzero(local & ok & self.inference)) / int(inf.size)
                if inf.size else None
            ),
        )  # fmt: skip

    def windows(self, t0: float, t1: float, limit_s: float) -> WindowSeries:
        """Per-1-s-window latency histograms (us) of frames and inference replies in [t0, t1)
        (None for a window without such a reply), the comparison statistics' input."""
        ok = self.ok()
        inf = ok & self.inference
        frame: list[hdr.Histogram | None] = []
        infer: list[hdr.Histogram | None] = []
        for w0 in np.arange(t0, t1 - 0.5, 1.0):
            inside = (self.t_scheduled >= w0) & (self.t_scheduled < w0 + 1.0)
            for mask, out in ((ok, frame), (inf, infer)):
                sel = self.latency_s[inside & mask]
                out.append(hdr.histogram_of(sel, limit_s) if sel.size else None)
        return WindowSeries(latency={"frame": frame, "inference": infer})


def compare_cohorts(
    canary: CohortFrames, control: CohortFrames, window: tuple[float, float], limit_s: float
) -> dict[str, MetricComparison]:
    """The project's comparison statistics, TorchServe cohort (candidate) against the old one
    (baseline), per-window over ``window``: metric (``frame.latency_ms.p95``...) -> the
    comparison row (verdict, run, baseline, p_value, ci_run, ci_baseline, note).

    The one call into harness.analysis.compare (its ``compare_windows``)."""
    t0, t1 = window
    cmp = compare_windows(control.windows(t0, t1, limit_s), canary.windows(t0, t1, limit_s))
    return {m.metric: m for m in cmp.metrics}


def judge_step(
    canary: CohortFrames,
    control: CohortFrames,
    judge: RolloutJudge,
    window: tuple[float, float],
    limit_s: float = 5.0,
    final: bool = False,
) -> RolloutJudgement:
    """Judge one step: decision, reason, criteria and both cohorts' figures
    (``RolloutJudgement``; ``window_s``/``at_s`` are the caller's to set).

    ``canary``: the TorchServe cohort, ``control``: the old-pipeline cohort, ``judge``: the
    scenario's ``RolloutJudge``; ``window``: (t0, t1) on the run clock, for the per-window
    histograms; ``limit_s``: the run's latency limit (reply_timeout_s); ``final``: no hold is
    left (see the module docstring).
    """
    figures = CohortPair(torchserve=canary.figures(), local=control.figures())
    ts_fig, old_fig = figures.torchserve, figures.local
    criteria: list[RolloutCriterion] = []
    small = [
        name for name, c in (("torchserve", canary), ("local", control))
        if c.sessions < judge.min_sessions
    ]  # fmt: skip
    rows = compare_cohorts(canary, control, window, limit_s) if judge.latency else {}
    for metric in judge.latency:
        family, key = metric.split(".")
        row = rows.get(f"{family}.latency_ms.{key}")
        stats: dict[str, Any] = (
            row.model_dump(mode="json")
            if row is not None
            else {"verdict": Verdict.TOO_LITTLE_DATA.value, "note": "no replies in a cohort"}
        )
        c_val = _latency(ts_fig, family, key)
        b_val = _latency(old_fig, family, key)
        name = f"{metric} latency"
        if stats["verdict"] != Verdict.WORSE.value and stats["verdict"] not in (
            Verdict.SAME.value,
            Verdict.BETTER.value,
        ):
            crit = RolloutCriterion(criterion=name, torchserve=c_val, local=b_val,
                                    statistics=stats, status="n/a",
                                    why=stats.get("note") or "too little data")  # fmt: skip
        elif c_val is None or b_val is None:
            crit = RolloutCriterion(criterion=name, torchserve=c_val, local=b_val,
                                    statistics=stats, status="n/a",
                                    why="no replies in a cohort")  # fmt: skip
        else:
            allowance = max(judge.latency_allowance_ms, judge.latency_allowance_ratio * b_val)
            worse = stats["verdict"] == Verdict.WORSE.value and c_val - b_val > allowance
            crit = RolloutCriterion(
                criterion=name,
                torchserve=c_val,
                local=b_val,
                statistics=stats,
                allowance_ms=allowance,
                status="fail" if worse else "pass",
                why=(
                    f"TorchServe cohort {c_val:.1f} ms vs old {b_val:.1f} ms: significantly "
                    f"worse (p={stats.get('p_value') or 0:.2g}) and {c_val - b_val:.1f} ms "
                    "over, beyond "
                    f"the {allowance:.1f} ms allowance"
                    if worse
                    else f"TorchServe cohort {c_val:.1f} ms vs old {b_val:.1f} ms "
                    f"({stats['verdict']}, allowance {allowance:.1f} ms)"
                ),
            )
        criteria.append(crit)
    c_err, b_err = ts_fig.error_share, old_fig.error_share
    if c_err is None or b_err is None:
        criteria.append(
            RolloutCriterion(criterion="errors", status="n/a", why="no frames in a cohort")
        )
    else:
        over = c_err - b_err > judge.max_error_share_increase
        criteria.append(RolloutCriterion(
            criterion="errors", torchserve=c_err, local=b_err,
            status="fail" if over else "pass",
            why=f"error share {c_err:.2%} vs {b_err:.2%} (allowed +"
                f"{judge.max_error_share_increase:.2%})",
        ))  # fmt: skip
    share = ts_fig.local_share
    if share is None or ts_fig.inferences < judge.min_inferences:
        criteria.append(RolloutCriterion(
            criterion="fallback", torchserve=share, status="n/a",
            why=f"{ts_fig.inferences} classifications in the TorchServe "
                f"cohort (need {judge.min_inferences})",
        ))  # fmt: skip
    else:
        over = share > judge.max_fallback_share
        criteria.append(RolloutCriterion(
            criterion="fallback", torchserve=share,
            status="fail" if over else "pass",
            why=f"{share:.0%} of the TorchServe cohort's {ts_fig.inferences} "
                f"classifications answered locally (allowed {judge.max_fallback_share:.0%})",
        ))  # fmt: skip
    c_acc, b_acc = ts_fig.accuracy, old_fig.accuracy
    few = min(ts_fig.judged_signs, old_fig.judged_signs)
    if c_acc is None or b_acc is None or few < judge.min_judged_signs:
        criteria.append(RolloutCriterion(
            criterion="accuracy", torchserve=c_acc, local=b_acc, status="n/a",
            why=f"{few} classified signs in a cohort (need {judge.min_judged_signs})",
        ))  # fmt: skip
    else:
        drop = b_acc - c_acc > judge.max_accuracy_drop
        criteria.append(RolloutCriterion(
            criterion="accuracy", torchserve=c_acc, local=b_acc,
            status="fail" if drop else "pass",
            why=f"accuracy {c_acc:.3f} vs {b_acc:.3f} (allowed -{judge.max_accuracy_drop:g})",
        ))  # fmt: skip
    failed = [c for c in criteria if c.status == "fail"]
    latency = [c for c in criteria if "latency" in c.criterion]
    lacking = [c for c in latency if c.status == "n/a"]
    judged = [c for c in latency if c.status == "pass"]
    parts = [f"{n} cohort has fewer than {judge.min_sessions} sessions" for n in small]
    parts += [f"{c.criterion}: {c.why}" for c in lacking]
    decision: Literal["advance", "hold", "abort"]
    if failed:
        decision = "abort"
        reason = "; ".join(f"{c.criterion}: {c.why}" for c in failed)
    elif (small or lacking) and not final:
        decision = "hold"
        reason = "too little data: " + "; ".join(parts)
    elif (small or lacking) and (small or not judged):
        decision = "abort"
        reason = "too little evidence to advance: " + "; ".join(parts)
    elif lacking:
        decision = "advance"
        reason = f"judged on {', '.join(c.criterion for c in judged)} (all passed); " + "; ".join(
            parts
        )
    else:
        decision = "advance"
        reason = "every criterion passed"
    return RolloutJudgement(decision=decision, reason=reason, criteria=criteria, figures=figures)


def _latency(figures: CohortFigures, family: str, key: str) -> float | None:
    """A cohort's ``family`` ("frame", "inference") latency percentile ``key`` (ms)."""
    stats = figures.frame_latency_ms if family == "frame" else figures.inference_latency_ms
    value: float | None = getattr(stats, key)
    return value


def rollout_gate(rollout: Document | None) -> dict[str, Any] | None:
    """A gates[] entry for the rollout's outcome (None without a rollout block); ``rollout``:
    the record as harness/rollout.py keeps it (``RolloutRecord`` as JSON)."""
    if not rollout:
        return None
    done = rollout.get("outcome") == "completed"
    gate = GateResult(
        expr="rollout completes",
        metric="rollout",
        op="==",
        threshold=None,
        threshold_hi=None,
        relative=False,
        measured=None,
        passed=done,
        reason=None if done else rollout.get("reason"),
    )
    return gate.model_dump(mode="json")
