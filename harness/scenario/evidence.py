"""Evidence planning for a rollout: how long each step needs before its judge can decide.

The judge (harness/analysis/rollout.py) passes a latency criterion once an anytime-valid
interval for the TorchServe cohort's percentile is bounded from above
(harness/analysis/sequential.py); the fewest observations that can do that, all of them below
the bar, is :func:`min_units_above` (closed form below). Observations arrive at

- frames: ``FRAME_UNITS_PER_S`` per TorchServe-cohort session (frames thinned to one every
  0.1 s, so neighbours are close to independent);
- classifications: the trace's sign rate per session (:func:`sign_rate`).

The TorchServe cohort right after a change at ``T`` to share ``s`` (from ``s0``), arrivals at
``lam``/s each streaming ``L`` s (Little's law: ``lam * L`` sessions stream at once): at
``u`` s after the change it holds ``s0 * lam * max(L - u, 0) + s * lam * min(u, L)`` sessions;
:func:`cohort_session_seconds` integrates that from ``settle_s``. A plan is an estimate (Poisson
arrivals vary; a slow TorchServe answers fewer frames): ``harness validate`` warns with it, the
rollout states it at each step start, and the judge says what its own data still lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .models import RolloutSpec, Scenario

# Frames are thinned to one per session every 0.1 s (3 frames at 30 fps) for the sequential
# tests: frames closer than that share a queue (in-order replies), which breaks independence.
FRAME_STRIDE_S = 0.1
FRAME_UNITS_PER_S = 1.0 / FRAME_STRIDE_S
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
# The synthetic trace (backend_patch.app.ml.synthetic): a sign's frames around its class's
# length; a file trace's rate is taken from its frames when known, else this.
DEFAULT_SIGN_RATE = 0.5


def fail_bounds(latency_criteria: int) -> int:
    """One-sided bounds a step's FAIL decisions rest on (Bonferroni over them, so a healthy
    step is aborted with probability <= alpha): two per latency criterion (the TorchServe
    cohort's lower, the old one's upper), errors (two), fallback (one), accuracy (two)."""
    return 2 * latency_criteria + 5


def pass_bounds(latency_criteria: int) -> int:
    """One-sided bounds its PASS decisions rest on: two per latency criterion."""
    return max(2 * latency_criteria, 1)


def fail_alpha(spec: RolloutSpec) -> float:
    """The level of each bound a FAIL rests on (``alpha`` / :func:`fail_bounds`)."""
    return spec.judge.alpha / fail_bounds(len(spec.judge.latency))


def criterion_alpha(spec: RolloutSpec) -> float:
    """The level of each bound a PASS rests on (``alpha`` / :func:`pass_bounds`): the one the
    planner's minimum data follows."""
    return spec.judge.alpha / pass_bounds(len(spec.judge.latency))


def _prior(p: float) -> tuple[float, float]:
    # The same as harness.analysis.sequential.quantile_prior (the layer rule keeps this one
    # in the scenario layer; tests check they agree).
    return (p / (1.0 - p), 1.0) if p >= 0.5 else (1.0, (1.0 - p) / p)


def min_units_above(p: float, alpha: float) -> int:
    """Fewest observations that bound a ``p``-quantile from above: the smallest ``n`` with
    ``B(a + n, b) I'(a + n, b) / (B(a, b) I'(a, b)) / p^n >= 1/alpha`` where ``I'(a, b)`` is
    the Beta(a, b) mass above ``p`` (the one-sided beta-binomial mixture's evidence at
    ``S = n``, prior Beta(a, b) of mean ``p``; harness/analysis/sequential.py)."""
    # Lazy: the scenario layer is imported by `harness worker` in the load-generator image,
    # which has no scipy (tests/serving/test_image_imports.py); only planning needs it.
    from scipy.special import betaincc, betaln

    a, b = _prior(p)
    bar = math.log(1.0 / alpha)
    norm = math.log(float(betaincc(a, b, p)))
    n = 1
    while (
        float(betaln(a + n, b)) - float(betaln(a, b)) + math.log(float(betaincc(a + n, b, p)))
        - norm - n * math.log(p) < bar
    ):  # fmt: skip
        n += 1
    return n


def min_units_below(p: float, alpha: float) -> int:
    """Fewest observations that bound a ``p``-quantile from below (``S = 0``, prior mass
    below ``p``)."""
    from scipy.special import betainc, betaln  # lazy: see min_units_above

    a, b = _prior(p)
    bar = math.log(1.0 / alpha)
    norm = math.log(float(betainc(a, b, p)))
    n = 1
    while (
        float(betaln(a, b + n)) - float(betaln(a, b)) + math.log(float(betainc(a, b + n, p)))
        - norm - n * math.log1p(-p) < bar
    ):  # fmt: skip
        n += 1
    return n


def sign_rate(sc: Scenario) -> float:
    """Classifications per second of one session streaming the scenario's trace: ``fps`` over
    a sign's mean frames plus the mean rest between signs (synthetic traces), else
    ``DEFAULT_SIGN_RATE``."""
    syn = sc.workload.trace.synthetic if sc.workload.trace is not None else None
    if syn is None:
        return DEFAULT_SIGN_RATE
    from backend_patch.app.ml.synthetic import SIGNS

    mix = syn.sign_mix or list(SIGNS)
    sign_frames = sum(SIGNS[s].frames for s in mix if s in SIGNS) / max(len(mix), 1)
    rest = (syn.rest_frames[0] + syn.rest_frames[1]) / 2.0
    return float(sc.workload.fps / (float(sign_frames) + rest))


def cohort_session_seconds(
    rate: float, length_s: float, share0: float, share: float, t0: float, t1: float
) -> float:
    """TorchServe-cohort session-seconds between ``t0`` and ``t1`` s after a change of the
    share of new sessions from ``share0`` to ``share`` (module docstring; closed form)."""

    def cum(u: float) -> float:  # integral from 0 to u of the cohort's sessions
        old = share0 * rate * (length_s * min(u, length_s) - min(u, length_s) ** 2 / 2.0)
        new = share * rate * (min(u, length_s) ** 2 / 2.0 + length_s * max(u - length_s, 0.0))
        return old + new

    return cum(t1) - cum(t0)


@dataclass(frozen=True)
class Need:
    """One criterion's minimum data and when a step reaches it (s after the change; None:
    never within ``horizon_s``)."""

    criterion: str
    units: int
    what: str
    seconds: float | None


@dataclass(frozen=True)
class StepPlan:
    """What one step needs: ``needs`` per latency criterion, ``sessions_s`` (s after the change
    until the TorchServe cohort has ``min_sessions``)."""

    step: int
    percent: int
    sessions_s: float | None
    needs: list[Need]

    @property
    def ready_s(self) -> float | None:
        """When every criterion can first be decided (None: not within the horizon)."""
        times = [n.seconds for n in self.needs] + [self.sessions_s]
        return None if any(t is None for t in times) else max(t for t in times if t is not None)


def _first(f: object, goal: float, start: float, horizon: float) -> float | None:
    """The first u in [start, horizon] (0.1 s steps) with f(u) >= goal."""
    u = start
    while u <= horizon + 1e-9:
        if f(u) >= goal:  # type: ignore[operator]
            return round(u, 1)
        u += 0.1
    return None


def plan_rollout(sc: Scenario, horizon_s: float | None = None) -> list[StepPlan] | None:
    """Each step's plan (None without a rollout or without ``workload.arrivals`` at a fixed
    ``rate_per_s``). ``horizon_s``: how far to look (default: the step's budget)."""
    ro = sc.rollout
    arr = sc.workload.arrivals
    if ro is None or arr is None or arr.rate_per_s is None:
        return None
    length = arr.session_length.seconds or sc.workload.duration_s
    rate = float(arr.rate_per_s)
    alpha = criterion_alpha(ro)
    signs = sign_rate(sc)
    horizon = horizon_s if horizon_s is not None else ro.budget_s
    plans: list[StepPlan] = []
    share0 = sc.stack.rollout_percent / 100.0
    for i, percent in enumerate(ro.steps):
        share = percent / 100.0

        def ss(u: float, s0: float = share0, s: float = share) -> float:
            return cohort_session_seconds(rate, length, s0, s, ro.settle_s, max(u, ro.settle_s))

        def sessions(u: float, s0: float = share0, s: float = share) -> float:
            # sessions of the cohort with frames in [settle, u]: old ones still streaming at
            # settle, plus the new ones since
            return s0 * rate * max(length - ro.settle_s, 0.0) + s * rate * u

        needs: list[Need] = []
        for metric in ro.judge.latency:
            family, key = metric.split(".")
            n = min_units_above(PERCENTILES[key], alpha)
            per_s = FRAME_UNITS_PER_S if family == "frame" else signs
            what = "frames (one per 0.1 s a session)" if family == "frame" else "classifications"
            needs.append(
                Need(f"{metric} latency", n, what,
                     _first(lambda u, r=per_s: ss(u) * r, n, ro.settle_s, horizon))
            )  # fmt: skip
        plans.append(
            StepPlan(
                step=i,
                percent=percent,
                sessions_s=_first(sessions, ro.judge.min_sessions, ro.settle_s, horizon),
                needs=needs,
            )
        )
        share0 = share
    return plans


def plan_warnings(sc: Scenario) -> list[tuple[tuple[str | int, ...], str]]:
    """(field path, message) for each step whose minimum data the scenario cannot reach:
    within its budget (``rollout.hold_s``) or before the run ends (``workload.duration_s``)."""
    ro = sc.rollout
    plans = plan_rollout(sc, horizon_s=sc.workload.duration_s)
    if ro is None or plans is None:
        return []
    out: list[tuple[tuple[str | int, ...], str]] = []
    arr = sc.workload.arrivals
    rate = arr.rate_per_s if arr is not None else None
    t = ro.start_s
    last = len(plans) - 1
    for plan in plans:
        if plan.step == last and plan.percent == 100:
            # The last step at 100 % completes when nothing is left to compare against.
            break
        ready = plan.ready_s
        short = [n for n in plan.needs if n.seconds is None or n.seconds > ro.budget_s]
        if ready is None or ready > ro.budget_s:
            what = (
                "; ".join(
                    f"{n.criterion} needs {n.units} {n.what}"
                    + (f" (~{n.seconds:g} s)" if n.seconds is not None else " (not within the run)")
                    for n in short
                )
                or f"{ro.judge.min_sessions} TorchServe sessions (~{plan.sessions_s} s)"
            )
            out.append(
                (
                    ("rollout", "hold_s"),
                    f"step {plan.step + 1} ({plan.percent} %) cannot reach its minimum data "
                    f"within its {ro.budget_s:g} s budget (hold_s x (1 + max_holds)) at "
                    f"{rate:g} sessions/s: {what}; it will end INCONCLUSIVE",
                )
            )
        t += min(ready if ready is not None else ro.budget_s, ro.budget_s)
        if t > sc.workload.duration_s:
            out.append(
                (
                    ("workload", "duration_s"),
                    f"step {plan.step + 1} ({plan.percent} %) needs until ~{t:.0f} s to reach "
                    f"its minimum data, past workload.duration_s ({sc.workload.duration_s:g} s)",
                )
            )
            break
    return out
