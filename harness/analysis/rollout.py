"""The rollout judge: one step's TorchServe cohort against its old-pipeline cohort, judged
sequentially (every second, anytime-valid).

Sessions are sticky: the backend assigns each one to TorchServe or the old in-process pipeline
at connect, so during a step both cohorts stream under the same load at the same time. A step
is judged on the frames SCHEDULED inside its judgement window, split by the session's cohort
(never by a reply's ``served_by``: a TorchServe-cohort session gets local replies when a
TorchServe call falls back or a local hedge wins, which is exactly what a bad TorchServe looks
like).

Each criterion is a pair of confidence sequences (harness/analysis/sequential.py: intervals
that hold at every look at once with probability >= 1 - alpha), so the step may be looked at
every second and decided at the first look where the evidence suffices, without the repeated
looks inflating the false-abort rate. A FAIL rests on one-sided bounds (the TorchServe
cohort's lower, the old one's upper), a PASS on the other sides; the step's ``alpha`` is split
(Bonferroni) over the bounds each kind of decision rests on
(harness.scenario.evidence.fail_bounds, pass_bounds), so a healthy step is aborted with
probability <= alpha, and a criterion wrongly passed with probability <= alpha.
Criteria (``RolloutJudge`` in the scenario):

- latency (frame and/or inference percentiles): observations are inference replies, and
  frames thinned to one per session every 0.1 s (neighbouring frames share an in-order queue).
  FAIL when the TorchServe cohort's percentile is above the old one's by more than the
  allowance (``max(latency_allowance_ms, ratio * old)``) with confidence: its interval's lower
  end above the old interval's upper end plus the allowance; PASS when its upper end is at or
  below the old interval's lower end (latency >= 0) plus the allowance; else not decided (n/a);
- errors (error or lost frames; the same thinned frames): FAIL when the TorchServe cohort's
  share exceeds the old one's by more than ``max_error_share_increase`` with confidence;
- fallback: FAIL when, with confidence, more than ``max_fallback_share`` of the TorchServe
  cohort's classifications were answered by the local engine (a failed call's fallback or a
  local hedge that won; judged from ``min_inferences``): what a bad TorchServe looks like once
  hedging hides its latency;
- accuracy: FAIL when, with confidence, it falls short by more than ``max_accuracy_drop``
  (judged from ``min_judged_signs`` classified signs per cohort).

Decision at each look: ``abort`` when a criterion fails; ``advance`` when every latency
criterion passed (errors, fallback and accuracy can stop a step but need not be proven: showing
an error share under 1 % takes over a thousand frames); ``continue`` otherwise, or while a
cohort has fewer than ``min_sessions`` sessions (one user never decides a step). At the last
look of the budget (``final=True``), ``continue`` becomes ``inconclusive``: nothing failed, but
the evidence ran out; the reason names the criteria short of data and what would settle them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
    RolloutEvidence,
    RolloutJudgement,
)
from harness.scenario.evidence import PERCENTILES, fail_bounds, pass_bounds
from harness.scenario.models import RolloutJudge

from .sequential import quantile_bounds, share_bounds, units_to_bound_above

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
    ``judged``/``correct``: classified frames with a truth, and those classified right;
    ``served_local``: answered by the local engine; ``unit``/``session``: below.
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
    # The frames the sequential tests observe (one per session every 0.1 s; empty: all), and
    # each frame's session (an index, for counting sessions in a window; empty: unknown).
    unit: Mask = field(default_factory=_empty_mask)
    session: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

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
            unit=cat([p.unit for p in parts]),
            session=cat([p.session for p in parts]),
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

    def between(self, t0: float, t1: float) -> CohortFrames:
        """The frames scheduled in [t0, t1) (``sessions``: those with frames there)."""
        keep = (self.t_scheduled >= t0) & (self.t_scheduled < t1)
        if bool(keep.all()):
            return self
        sessions = self.sessions
        if self.session.size == keep.size:
            sessions = int(np.unique(self.session[keep]).size)
        return CohortFrames(
            sessions=sessions,
            t_scheduled=self.t_scheduled[keep],
            latency_s=self.latency_s[keep],
            inference=self.inference[keep],
            errored=self.errored[keep],
            lost=self.lost[keep],
            judged=self.judged[keep],
            correct=self.correct[keep],
            served_local=self.served_local[keep],
            unit=self.unit[keep] if self.unit.size == keep.size else self.unit,
            session=self.session[keep] if self.session.size == keep.size else self.session,
        )

    def _units(self) -> Mask:
        """The frames that are observations of the sequential tests (every frame when the
        cohort came without a thinning mask)."""
        n = self.t_scheduled.size
        return self.unit if self.unit.size == n else np.ones(n, dtype=bool)

    def latency_units(self, family: str) -> hdr.Floats:
        """Latency observations (ms): inference replies, or the thinned frames' latencies;
        lost frames count as the longest latency (they were never answered)."""
        ok = self.ok()
        if family == "inference":
            return np.asarray(self.latency_s[ok & self.inference] * 1000.0, dtype=np.float64)
        units = self._units()
        lat = np.where(self.lost, np.inf, self.latency_s)
        return np.asarray(lat[units & (ok | self.lost)] * 1000.0, dtype=np.float64)

    def error_units(self) -> tuple[int, int]:
        """(errored or lost, all) among the thinned frames."""
        units = self._units()
        return int(np.count_nonzero((self.errored | self.lost) & units)), int(
            np.count_nonzero(units)
        )

    def local_units(self) -> tuple[int, int]:
        """(answered by the local engine, all) of the cohort's classifications."""
        inf = self.ok() & self.inference
        n = self.t_scheduled.size
        local = self.served_local if self.served_local.size == n else np.zeros(n, dtype=bool)
        return int(np.count_nonzero(inf & local)), int(np.count_nonzero(inf))

    def accuracy_units(self) -> tuple[int, int]:
        """(correct, judged) classified signs with a truth."""
        return int(np.count_nonzero(self.correct)), int(np.count_nonzero(self.judged))


class Cohort(Protocol):
    """What the judge reads of one cohort: :class:`CohortFrames` (the harness's own frames,
    in-run) or ``harness.analysis.histogram_cohorts.HistogramCohort`` (a production
    Prometheus's histogram buckets, ``harness judge --prometheus``). Same criteria, same
    statistics, whichever the source."""

    @property
    def sessions(self) -> int:
        """Sessions of the cohort with observations in the window."""
        ...

    def between(self, t0: float, t1: float) -> Cohort:
        """The cohort's observations in [t0, t1) (s, the source's clock)."""
        ...

    def figures(self) -> CohortFigures:
        """The cohort's figures over the window."""
        ...

    def latency_units(self, family: str) -> hdr.Floats:
        """Latency observations (ms) of ``family`` ("frame": thinned frames, lost ones inf;
        "inference": every classification)."""
        ...

    def error_units(self) -> tuple[int, int]:
        """(errored or lost, all) observations (thinned frames)."""
        ...

    def local_units(self) -> tuple[int, int]:
        """(answered by the local engine, all) classifications."""
        ...

    def accuracy_units(self) -> tuple[int, int]:
        """(correct, judged) classified signs with a truth."""
        ...


def _allow(judge: RolloutJudge, base_ms: float) -> float:
    return max(judge.latency_allowance_ms, judge.latency_allowance_ratio * base_ms)


def _bounds(ci: tuple[float, float]) -> list[float | None]:
    return [None if math.isinf(v) else v for v in ci]


def _latency_criterion(
    metric: str,
    canary: Cohort,
    control: Cohort,
    figures: CohortPair,
    judge: RolloutJudge,
    alpha: tuple[float, float],
    final: bool = False,
) -> RolloutCriterion:
    family, key = metric.split(".")
    p = PERCENTILES[key]
    c = canary.latency_units(family)
    b = control.latency_units(family)
    fail, ok = alpha
    c_lo, c_hi = quantile_bounds(c, p, fail, ok)
    b_lo, b_hi = quantile_bounds(b, p, ok, fail)
    base_lo = max(b_lo, 0.0)  # latency is never negative: an unbounded old side starts at 0
    pass_below = base_lo + _allow(judge, base_lo)
    fail_above = b_hi + _allow(judge, b_hi) if not math.isinf(b_hi) else None
    units = "classifications" if family == "inference" else "frames (one per 0.1 s a session)"
    needed = None
    if math.isinf(c_hi):
        needed = max(units_to_bound_above(p, ok) - c.size, 1)
    elif final and not c_hi <= pass_below and not (fail_above is not None and c_lo > fail_above):
        needed = _more_to_settle(c, p, alpha, pass_below, fail_above)
    evidence = RolloutEvidence(
        units=units, n_torchserve=int(c.size), n_local=int(b.size),
        ci_torchserve=_bounds((c_lo, c_hi)), ci_local=_bounds((b_lo, b_hi)),
        fail_above=fail_above, pass_below=pass_below, alpha=fail, alpha_pass=ok, needed=needed,
    )  # fmt: skip
    c_val = _latency(figures.torchserve, family, key)
    b_val = _latency(figures.local, family, key)
    name = f"{metric} latency"
    show = f"TorchServe {_ms(c_lo, c_hi)} vs old {_ms(b_lo, b_hi)}"
    if fail_above is not None and c_lo > fail_above:
        status, why = (
            "fail",
            (
                f"{show}: worse beyond the {_allow(judge, b_hi):.1f} ms allowance with confidence "
                f"({c.size} vs {b.size} {units.split(' ')[0]})"
            ),
        )
    elif c_hi <= pass_below:
        status, why = "pass", f"{show}: within the allowance ({pass_below:.1f} ms) with confidence"
    elif needed is not None:
        status, why = (
            "n/a",
            (
                f"too little data: {c.size} TorchServe {units.split(' ')[0]}, at least "
                f"{c.size + needed} needed to bound its {key}"
            ),
        )
    else:
        status, why = "n/a", f"{show}: not yet within {pass_below:.1f} ms nor beyond the allowance"
    return RolloutCriterion(
        criterion=name, torchserve=c_val, local=b_val, evidence=evidence,
        allowance_ms=_allow(judge, base_lo), status=status, why=why,
    )  # fmt: skip


# How many times the data so far a projection of "what would settle it" considers.
SETTLE_FACTORS = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


def _more_to_settle(
    c: hdr.Floats,
    p: float,
    alpha: tuple[float, float],
    pass_below: float,
    fail_above: float | None,
) -> int | None:
    """More TorchServe observations that would settle a straddling latency criterion if they
    kept the spread seen so far (the sample repeated; the old cohort's bounds held fixed),
    None when not even 16 times the data would (its percentile sits between the bars)."""
    fail, ok = alpha
    for factor in SETTLE_FACTORS:
        more = np.resize(c, round(c.size * factor))
        lo, hi = quantile_bounds(more, p, fail, ok)
        if hi <= pass_below or (fail_above is not None and lo > fail_above):
            return int(more.size - c.size)
    return None


def _ms(lo: float, hi: float) -> str:
    def one(v: float) -> str:
        return "inf" if math.isinf(v) else ("0" if v < 0 else f"{v:.1f}")

    return f"[{one(lo)}, {one(hi)}] ms"


def _share_criteria(
    canary: Cohort, control: Cohort, judge: RolloutJudge, alpha: tuple[float, float]
) -> list[RolloutCriterion]:
    """Errors, fallback and accuracy: each can fail a step, none has to pass. ``alpha``: the
    level of the bounds a fail rests on, and of those a pass does."""
    fail, ok = alpha
    out: list[RolloutCriterion] = []
    ce, cn = canary.error_units()
    be, bn = control.error_units()
    if cn == 0 or bn == 0:
        out.append(RolloutCriterion(criterion="errors", status="n/a", why="no frames in a cohort"))
    else:
        c_lo, c_hi = share_bounds(ce, cn, fail, ok)
        b_lo, b_hi = share_bounds(be, bn, ok, fail)
        over = c_lo - b_hi > judge.max_error_share_increase
        out.append(RolloutCriterion(
            criterion="errors", torchserve=ce / cn, local=be / bn,
            evidence=RolloutEvidence(units="frames (one per 0.1 s a session)", n_torchserve=cn,
                                     n_local=bn, ci_torchserve=[c_lo, c_hi],
                                     ci_local=[b_lo, b_hi], alpha=fail, alpha_pass=ok,
                                     fail_above=b_hi + judge.max_error_share_increase),
            status="fail" if over else "pass" if c_hi - b_lo <= judge.max_error_share_increase
            else "n/a",
            why=f"error share {ce / cn:.2%} [{c_lo:.2%}, {c_hi:.2%}] vs {be / bn:.2%} "
                f"[{b_lo:.2%}, {b_hi:.2%}] (allowed +{judge.max_error_share_increase:.2%})",
        ))  # fmt: skip
    local, inferences = canary.local_units()
    if inferences < judge.min_inferences:
        out.append(RolloutCriterion(
            criterion="fallback", torchserve=local / inferences if inferences else None,
            status="n/a",
            why=f"{inferences} classifications in the TorchServe cohort "
                f"(need {judge.min_inferences})",
        ))  # fmt: skip
    else:
        lo, hi = share_bounds(local, inferences, fail, ok)
        share = local / inferences
        out.append(RolloutCriterion(
            criterion="fallback", torchserve=share,
            evidence=RolloutEvidence(units="classifications", n_torchserve=inferences,
                                     ci_torchserve=[lo, hi], alpha=fail, alpha_pass=ok,
                                     fail_above=judge.max_fallback_share,
                                     pass_below=judge.max_fallback_share),
            status="fail" if lo > judge.max_fallback_share
            else "pass" if hi <= judge.max_fallback_share else "n/a",
            why=f"{share:.0%} [{lo:.0%}, {hi:.0%}] of the TorchServe cohort's {inferences} "
                f"classifications answered locally (allowed {judge.max_fallback_share:.0%})",
        ))  # fmt: skip
    (cc, cj), (bc, bj) = canary.accuracy_units(), control.accuracy_units()
    few = min(cj, bj)
    if few < judge.min_judged_signs:
        out.append(RolloutCriterion(
            criterion="accuracy", torchserve=cc / cj if cj else None,
            local=bc / bj if bj else None, status="n/a",
            why=f"{few} classified signs in a cohort (need {judge.min_judged_signs})",
        ))  # fmt: skip
    else:
        c_lo, c_hi = share_bounds(cc, cj, ok, fail)
        b_lo, b_hi = share_bounds(bc, bj, fail, ok)
        drop = b_lo - c_hi > judge.max_accuracy_drop
        out.append(RolloutCriterion(
            criterion="accuracy", torchserve=cc / cj, local=bc / bj,
            evidence=RolloutEvidence(units="classified signs", n_torchserve=cj, n_local=bj,
                                     ci_torchserve=[c_lo, c_hi], ci_local=[b_lo, b_hi],
                                     alpha=fail, alpha_pass=ok),
            status="fail" if drop else "pass" if b_hi - c_lo <= judge.max_accuracy_drop
            else "n/a",
            why=f"accuracy {cc / cj:.3f} [{c_lo:.3f}, {c_hi:.3f}] vs {bc / bj:.3f} "
                f"[{b_lo:.3f}, {b_hi:.3f}] (allowed -{judge.max_accuracy_drop:g})",
        ))  # fmt: skip
    return out


def judge_step(
    canary: Cohort,
    control: Cohort,
    judge: RolloutJudge,
    window: tuple[float, float],
    limit_s: float = 5.0,
    final: bool = False,
) -> RolloutJudgement:
    """One look at a step: decision, reason, criteria (with their sequential evidence) and both
    cohorts' figures (``RolloutJudgement``; ``window_s``/``at_s``/``look`` are the caller's).

    ``canary``: the TorchServe cohort, ``control``: the old-pipeline cohort (any
    :class:`Cohort`: the run's frames or a Prometheus's buckets; observations outside
    ``window`` = (t0, t1) on the run clock are left out), ``judge``: the scenario's
    ``RolloutJudge``; ``limit_s``: unused (kept for callers); ``final``: the step's evidence
    budget is spent (undecided -> ``inconclusive``). Decision rule: module docstring.
    """
    del limit_s
    canary, control = canary.between(*window), control.between(*window)
    figures = CohortPair(torchserve=canary.figures(), local=control.figures())
    k = len(judge.latency)
    alpha = (judge.alpha / fail_bounds(k), judge.alpha / pass_bounds(k))
    criteria = [
        _latency_criterion(m, canary, control, figures, judge, alpha, final) for m in judge.latency
    ]
    criteria += _share_criteria(canary, control, judge, alpha)
    small = [
        name for name, c in (("torchserve", canary), ("local", control))
        if c.sessions < judge.min_sessions
    ]  # fmt: skip
    failed = [c for c in criteria if c.status == "fail"]
    latency = [c for c in criteria if c.criterion.endswith(" latency")]
    undecided = [c for c in latency if c.status != "pass"]
    if not latency and figures.torchserve.inferences < judge.min_inferences:
        undecided = [c for c in criteria if c.criterion == "fallback"]
    parts = [f"{n} cohort has {'no' if not c.sessions else c.sessions} session"
             f"{'' if c.sessions == 1 else 's'} (need {judge.min_sessions})"
             for n, c in (("torchserve", canary), ("local", control)) if n in small]  # fmt: skip
    parts += [f"{c.criterion}: {c.why}" for c in undecided]
    decision: Literal["advance", "abort", "continue", "inconclusive"]
    if failed and not small:
        decision = "abort"
        reason = "; ".join(f"{c.criterion}: {c.why}" for c in failed)
    elif not small and not undecided:
        decision = "advance"
        reason = "every latency criterion passed" + (
            f" ({', '.join(c.criterion for c in latency)})" if latency else ""
        )
    elif final:
        decision = "inconclusive"
        reason = "the evidence budget ran out with no criterion failed: " + "; ".join(parts)
    else:
        decision = "continue"
        reason = "not decided yet: " + "; ".join(parts)
    return RolloutJudgement(decision=decision, reason=reason, criteria=criteria, figures=figures)


def _latency(figures: CohortFigures, family: str, key: str) -> float | None:
    """A cohort's ``family`` ("frame", "inference") latency percentile ``key`` (ms)."""
    stats = figures.frame_latency_ms if family == "frame" else figures.inference_latency_ms
    value: float | None = getattr(stats, key)
    return value


def rollout_gate(rollout: Document | None) -> dict[str, Any] | None:
    """A gates[] entry for the rollout's outcome (None without a rollout block); ``rollout``:
    the record as harness/runner/controller.py keeps it (``RolloutRecord`` as JSON). Not
    passed unless completed; an ``inconclusive`` rollout makes the run's verdict INCONCLUSIVE
    (exit 4), not FAILED, when this is the only gate lost (harness.runner.execute)."""
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
        reason=None
        if done
        else ("INCONCLUSIVE: " if rollout.get("outcome") == "inconclusive" else "")
        + str(rollout.get("reason")),
    )
    return gate.model_dump(mode="json")
