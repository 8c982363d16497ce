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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import hdr

from .compare import Verdict, WindowSeries, compare_windows

COHORTS = ("torchserve", "local")
_PCT = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


@dataclass
class CohortFrames:
    """One cohort's frames in a judgement window (run clock, s).

    ``latency_s``: reply - scheduled (NaN unanswered); ``inference``: the reply carried a
    classification; ``errored``: an error reply; ``lost``: no reply within the reply timeout;
    ``judged``/``correct``: classified frames with a truth, and those classified right.
    """

    sessions: int = 0
    t_scheduled: np.ndarray = field(default_factory=lambda: np.empty(0))
    latency_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    inference: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    errored: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    lost: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    judged: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    correct: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    served_local: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))

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

    def ok(self) -> np.ndarray:
        """Frames answered without an error."""
        return ~np.isnan(self.latency_s) & ~self.errored

    def figures(self) -> dict[str, Any]:
        """The cohort's figures over the window, for the results and the report."""
        ok = self.ok()
        frame = self.latency_s[ok] * 1000.0
        inf = self.latency_s[ok & self.inference] * 1000.0
        n = int(self.t_scheduled.size)
        bad = int(np.count_nonzero(self.errored | self.lost))
        judged = int(np.count_nonzero(self.judged))
        local = self.served_local[:n] if self.served_local.size == n else np.zeros(n, bool)

        def pcts(v: np.ndarray) -> dict[str, float | None]:
            if not v.size:
                return dict.fromkeys(_PCT)
            return {
                k: float(x)
                for k, x in zip(_PCT, np.percentile(v, list(_PCT.values())), strict=True)
            }

        return {
            "sessions": self.sessions,
            "frames": n,
            "inferences": int(inf.size),
            "frame_latency_ms": pcts(frame),
            "inference_latency_ms": pcts(inf),
            "errors": bad,
            "error_share": bad / n if n else None,
            "judged_signs": judged,
            "accuracy": int(np.count_nonzero(self.correct)) / judged if judged else None,
            "local_share": (
                int(np.count_nonzero(local & ok & self.inference)) / int(inf.size)
                if inf.size else None
            ),
        }  # fmt: skip

    def windows(self, t0: float, t1: float, limit_s: float) -> WindowSeries:
        """Per-1-s-window latency histograms (us) of frames and inference replies in [t0, t1)
        (None for a window without such a reply), the comparison statistics' input."""
        ok = self.ok()
        inf = ok & self.inference
        frame: list = []
        infer: list = []
        for w0 in np.arange(t0, t1 - 0.5, 1.0):
            inside = (self.t_scheduled >= w0) & (self.t_scheduled < w0 + 1.0)
            for mask, out in ((ok, frame), (inf, infer)):
                sel = self.latency_s[inside & mask]
                out.append(hdr.histogram_of(sel, limit_s) if sel.size else None)
        return WindowSeries(latency={"frame": frame, "inference": infer})


def compare_cohorts(
    canary: CohortFrames, control: CohortFrames, window: tuple[float, float], limit_s: float
) -> dict[str, dict[str, Any]]:
    """The project's comparison statistics, TorchServe cohort (candidate) against the old one
    (baseline), per-window over ``window``: metric (``frame.latency_ms.p95``...) -> the
    comparison row as a dict (verdict, run, baseline, p_value, ci_run, ci_baseline, note).

    The one call into harness.analysis.compare (its ``compare_windows``)."""
    t0, t1 = window
    cmp = compare_windows(control.windows(t0, t1, limit_s), canary.windows(t0, t1, limit_s))
    return {m.metric: m.model_dump(mode="json") for m in cmp.metrics}


def judge_step(
    canary: CohortFrames,
    control: CohortFrames,
    judge: Any,
    window: tuple[float, float],
    limit_s: float = 5.0,
    final: bool = False,
) -> dict[str, Any]:
    """Judge one step: ``{"decision", "reason", "criteria": [...], "figures": {...}}``.

    ``canary``: the TorchServe cohort, ``control``: the old-pipeline cohort, ``judge``: the
    scenario's ``RolloutJudge``; ``window``: (t0, t1) on the run clock, for the per-window
    histograms; ``limit_s``: the run's latency limit (reply_timeout_s); ``final``: no hold is
    left (see the module docstring).
    """
    figures = {"torchserve": canary.figures(), "local": control.figures()}
    criteria: list[dict[str, Any]] = []
    small = [
        name for name, c in (("torchserve", canary), ("local", control))
        if c.sessions < judge.min_sessions
    ]  # fmt: skip
    rows = compare_cohorts(canary, control, window, limit_s) if judge.latency else {}
    for metric in judge.latency:
        family, key = metric.split(".")
        stats = rows.get(f"{family}.latency_ms.{key}") or {
            "verdict": Verdict.TOO_LITTLE_DATA.value, "note": "no replies in a cohort",
        }  # fmt: skip
        fig_key = f"{family}_latency_ms"
        c_val = figures["torchserve"][fig_key][key]
        b_val = figures["local"][fig_key][key]
        crit: dict[str, Any] = {"criterion": f"{metric} latency", "torchserve": c_val,
                                "local": b_val, "statistics": stats}  # fmt: skip
        if stats["verdict"] != Verdict.WORSE.value and stats["verdict"] not in (
            Verdict.SAME.value,
            Verdict.BETTER.value,
        ):
            crit.update(status="n/a", why=stats.get("note") or "too little data")
        elif c_val is None or b_val is None:
            crit.update(status="n/a", why="no replies in a cohort")
        else:
            allowance = max(judge.latency_allowance_ms, judge.latency_allowance_ratio * b_val)
            crit["allowance_ms"] = allowance
            worse = stats["verdict"] == Verdict.WORSE.value and c_val - b_val > allowance
            crit.update(
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
    c_err, b_err = figures["torchserve"]["error_share"], figures["local"]["error_share"]
    if c_err is None or b_err is None:
        criteria.append({"criterion": "errors", "status": "n/a", "why": "no frames in a cohort"})
    else:
        over = c_err - b_err > judge.max_error_share_increase
        criteria.append({
            "criterion": "errors", "torchserve": c_err, "local": b_err,
            "status": "fail" if over else "pass",
            "why": f"error share {c_err:.2%} vs {b_err:.2%} (allowed +"
                   f"{judge.max_error_share_increase:.2%})",
        })  # fmt: skip
    ts_fig = figures["torchserve"]
    share = ts_fig["local_share"]
    if share is None or ts_fig["inferences"] < judge.min_inferences:
        criteria.append({"criterion": "fallback", "torchserve": share, "status": "n/a",
                         "why": f"{ts_fig['inferences']} classifications in the TorchServe "
                                f"cohort (need {judge.min_inferences})"})  # fmt: skip
    else:
        over = share > judge.max_fallback_share
        criteria.append({
            "criterion": "fallback", "torchserve": share,
            "status": "fail" if over else "pass",
            "why": f"{share:.0%} of the TorchServe cohort's {ts_fig['inferences']} "
                   f"classifications answered locally (allowed {judge.max_fallback_share:.0%})",
        })  # fmt: skip
    c_acc, b_acc = figures["torchserve"]["accuracy"], figures["local"]["accuracy"]
    few = min(figures["torchserve"]["judged_signs"], figures["local"]["judged_signs"])
    if c_acc is None or b_acc is None or few < judge.min_judged_signs:
        criteria.append({"criterion": "accuracy", "torchserve": c_acc, "local": b_acc,
                         "status": "n/a",
                         "why": f"{few} classified signs in a cohort (need "
                                f"{judge.min_judged_signs})"})  # fmt: skip
    else:
        drop = b_acc - c_acc > judge.max_accuracy_drop
        criteria.append({
            "criterion": "accuracy", "torchserve": c_acc, "local": b_acc,
            "status": "fail" if drop else "pass",
            "why": f"accuracy {c_acc:.3f} vs {b_acc:.3f} (allowed -{judge.max_accuracy_drop:g})",
        })  # fmt: skip
    failed = [c for c in criteria if c["status"] == "fail"]
    latency = [c for c in criteria if "latency" in c["criterion"]]
    lacking = [c for c in latency if c["status"] == "n/a"]
    judged = [c for c in latency if c["status"] == "pass"]
    parts = [f"{n} cohort has fewer than {judge.min_sessions} sessions" for n in small]
    parts += [f"{c['criterion']}: {c['why']}" for c in lacking]
    if failed:
        decision = "abort"
        reason = "; ".join(f"{c['criterion']}: {c['why']}" for c in failed)
    elif (small or lacking) and not final:
        decision = "hold"
        reason = "too little data: " + "; ".join(parts)
    elif (small or lacking) and (small or not judged):
        decision = "abort"
        reason = "too little evidence to advance: " + "; ".join(parts)
    elif lacking:
        decision = "advance"
        reason = (
            f"judged on {', '.join(c['criterion'] for c in judged)} (all passed); "
            + "; ".join(parts)
        )
    else:
        decision = "advance"
        reason = "every criterion passed"
    return {"decision": decision, "reason": reason, "criteria": criteria, "figures": figures}


def rollout_gate(rollout: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A gates[] entry for the rollout's outcome (None without a rollout block)."""
    if not rollout:
        return None
    done = rollout.get("outcome") == "completed"
    return {
        "expr": "rollout completes",
        "metric": "rollout",
        "op": "==",
        "threshold": None,
        "threshold_hi": None,
        "relative": False,
        "measured": None,
        "passed": done,
        "reason": None if done else rollout.get("reason"),
    }
