"""The rollout judge: one step's TorchServe cohort against its old-pipeline cohort.

Sessions are sticky: the backend assigns each one to TorchServe or the old in-process pipeline
at connect, so during a step both cohorts stream under the same load at the same time. A step
is judged on the frames SCHEDULED inside its judgement window, split by the session's cohort
(never by a reply's ``served_by``: a TorchServe-cohort session gets local replies when a
TorchServe call falls back or a local hedge wins, which is exactly what a bad TorchServe looks
like). Criteria (``RolloutJudge`` in the scenario):

- latency (frame and/or inference percentiles): per-1-s-window series of each cohort, compared
  with the project's comparison statistics (:func:`compare_series`); a criterion FAILS when
  the statistics say ``worse`` AND the TorchServe cohort's figure over the window exceeds the old
  one's by more than the allowance (``max(latency_allowance_ms, ratio * old)``), and is
  ``n/a`` (too little data) when the statistics cannot tell;
- errors: the TorchServe cohort's share of errored or lost frames may exceed the old one's by
  ``max_error_share_increase``;
- accuracy: may fall short by ``max_accuracy_drop`` (``n/a`` below ``min_judged_signs``).

Decision: ``abort`` when any criterion fails; ``hold`` when none fails but a cohort is smaller
than ``min_sessions`` or a latency criterion is ``n/a`` (errors and accuracy lacking data do not
hold a step); else ``advance``. The caller turns a ``hold`` past ``max_holds`` into an abort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import _latency_verdict

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
        }

    def window_series(self, family: str, pct: float, t0: float, t1: float) -> list[float]:
        """Per-1-s-window percentile (ms) of frame or inference latency; empty windows left out."""
        ok = self.ok() if family == "frame" else self.ok() & self.inference
        t, lat = self.t_scheduled[ok], self.latency_s[ok] * 1000.0
        out: list[float] = []
        for w0 in np.arange(t0, t1 - 0.5, 1.0):
            v = lat[(t >= w0) & (t < w0 + 1.0)]
            if v.size:
                out.append(float(np.percentile(v, pct)))
        return out


def compare_series(canary: Sequence[float], control: Sequence[float]) -> dict[str, Any]:
    """The project's comparison statistics on two per-window series (the one call into them).

    Returns ``{"verdict": "worse" | "better" | "no significant change" | "n/a", "p_value",
    "ci_canary", "ci_control"}`` (ms). Today: harness.analysis.compare's Mann-Whitney U over
    the windows plus non-overlapping bootstrap intervals; n/a below its minimum of windows.
    """
    key = "frame_p50_ms"  # any latency series: the statistic only sees the values
    run = {"series": {key: list(canary), "warmup": [False] * len(canary)}}
    base = {"series": {key: list(control), "warmup": [False] * len(control)}}
    c_med = float(np.median(canary)) if len(canary) else None
    b_med = float(np.median(control)) if len(control) else None
    change = None
    if c_med is not None and b_med is not None:
        change = (c_med - b_med) / b_med if b_med else (0.0 if c_med == 0 else float("inf"))
    out = _latency_verdict(run, base, "frame.latency_ms.p50", change)
    return {
        "verdict": out["verdict"],
        "p_value": out.get("p_value"),
        "ci_canary": out.get("ci_run"),
        "ci_control": out.get("ci_baseline"),
        "windows": [len(canary), len(control)],
    }


def judge_step(
    canary: CohortFrames,
    control: CohortFrames,
    judge: Any,
    window: tuple[float, float],
) -> dict[str, Any]:
    """Judge one step: ``{"decision", "reason", "criteria": [...], "figures": {...}}``.

    ``canary``: the TorchServe cohort, ``control``: the old-pipeline cohort, ``judge``: the
    scenario's ``RolloutJudge``; ``window``: (t0, t1) on the run clock, for the per-window series.
    """
    t0, t1 = window
    figures = {"torchserve": canary.figures(), "local": control.figures()}
    criteria: list[dict[str, Any]] = []
    small = [
        name for name, c in (("torchserve", canary), ("local", control))
        if c.sessions < judge.min_sessions
    ]  # fmt: skip
    for metric in judge.latency:
        family, key = metric.split(".")
        stats = compare_series(
            canary.window_series(family, _PCT[key], t0, t1),
            control.window_series(family, _PCT[key], t0, t1),
        )
        fig_key = f"{family}_latency_ms"
        c_val = figures["torchserve"][fig_key][key]
        b_val = figures["local"][fig_key][key]
        crit: dict[str, Any] = {"criterion": f"{metric} latency", "torchserve": c_val,
                                "local": b_val, "statistics": stats}  # fmt: skip
        if stats["verdict"] == "n/a" or c_val is None or b_val is None:
            crit.update(status="n/a", why="too little data for the statistics")
        else:
            allowance = max(judge.latency_allowance_ms, judge.latency_allowance_ratio * b_val)
            crit["allowance_ms"] = allowance
            worse = stats["verdict"] == "worse" and c_val - b_val > allowance
            crit.update(
                status="fail" if worse else "pass",
                why=(
                    f"TorchServe cohort {c_val:.1f} ms vs old {b_val:.1f} ms: significantly "
                    f"worse (p={stats['p_value']:.2g}) and {c_val - b_val:.1f} ms over, beyond "
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
    lacking = [c for c in criteria if c["status"] == "n/a" and "latency" in c["criterion"]]
    if failed:
        decision = "abort"
        reason = "; ".join(f"{c['criterion']}: {c['why']}" for c in failed)
    elif small or lacking:
        decision = "hold"
        parts = [f"{n} cohort has fewer than {judge.min_sessions} sessions" for n in small]
        parts += [f"{c['criterion']}: {c['why']}" for c in lacking]
        reason = "too little data: " + "; ".join(parts)
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
