"""A progressive rollout driven and judged while the run goes (the scenario's ``rollout`` block).

At ``start_s`` the share of new sessions sent to TorchServe becomes the first step's percent
(``Stack.set_rollout``, as the timeline's ``set_rollout`` does). Every ``look_every_s`` the
frames of the step so far (scheduled from ``settle_s`` after the change to one second before
the look, so the replies are in) are split by session cohort and judged sequentially
(harness.analysis.rollout.judge_step, anytime-valid): the first look that decides ends the
step: ADVANCE to the next step (the last one: ``complete``) or ABORT (the rollout is set to 0
at once). When the step's budget (``hold_s`` x (1 + ``max_holds``)) runs out undecided with
nothing failed, the rollout is INCONCLUSIVE: it stops there, keeps the share
(``on_inconclusive: hold``) or returns to 0 (``rollback``), and says what would settle it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from harness.analysis.rollout import COHORTS, CohortFrames, judge_step
from harness.clock import RunClock
from harness.results.model import RolloutJudgement
from harness.scenario.evidence import FRAME_STRIDE_S, StepPlan
from harness.stack.procs import spawn_worker


def _warm() -> bool:
    """Imports of the judge's process (run once, before t=0)."""
    import harness.analysis.rollout  # noqa: F401

    return True


# Frames scheduled this close to a judgement are left out: their replies may still be coming.
REPLY_MARGIN_S = 1.0


def cohort_frames(
    gen: Any, t0: float, t1: float, reply_timeout_s: float, now: float
) -> dict[str, CohortFrames]:
    """The generator's frames scheduled in [t0, t1), by session cohort (unknown ones left out).

    A frame is lost when unanswered ``reply_timeout_s`` after its schedule; a younger
    unanswered one is left out (its reply may be on the way).
    """
    none = -1
    parts: dict[str, list[CohortFrames]] = {c: [] for c in COHORTS}
    for index, s in enumerate(list(gen.sessions_now())):
        if s.n == 0 or s.connected_at is None:
            continue
        lo, hi = np.searchsorted(s.t_scheduled, (t0, t1))
        if hi <= lo:
            continue
        cohort = gen.cohort_of(s)
        if cohort not in parts:
            continue
        sched = s.t_scheduled[lo:hi]
        reply = s.t_reply[lo:hi]
        unanswered = np.isnan(reply)
        lost = unanswered & (sched + reply_timeout_s <= now)
        keep = ~unanswered | lost
        served = s.served_by[lo:hi]
        local = gen.label_code("local")
        pred, truth = s.prediction[lo:hi], s.truth[lo:hi]
        judged = (pred > none) & (truth > none)
        # One frame per FRAME_STRIDE_S of the session: the sequential tests' observations.
        bins = np.floor(s.t_scheduled[max(lo - 1, 0) : hi] / FRAME_STRIDE_S)
        first = np.r_[True, bins[1:] != bins[:-1]]
        unit = first[1:] if lo > 0 else first
        parts[cohort].append(
            CohortFrames(
                sessions=1,
                t_scheduled=sched[keep],
                latency_s=(reply - sched)[keep],
                inference=(served > none)[keep],
                errored=(s.error_code[lo:hi] > none)[keep],
                lost=lost[keep],
                judged=judged[keep],
                correct=(judged & (pred == truth))[keep],
                served_local=(served == (none if local is None else local))[keep]
                & (served > none)[keep],
                unit=unit[keep],
                session=np.full(int(np.count_nonzero(keep)), index, dtype=np.int64),
            )
        )
    return {c: CohortFrames.join(p) for c, p in parts.items()}


class RolloutController:
    """Runs a ``RolloutSpec`` against a stack while ``gen`` streams; ``record`` fills as it goes.

    ``record``: ``{"steps": [...], "outcome": "running" | "completed" | "aborted" |
    "inconclusive" | "incomplete", "reason", "failed_step", "inconclusive_step"}``; each step:
    percent, set_s, plan, looks (one per look: at_s, decision, each criterion's status),
    judgements (the deciding look's: window, decision, reason, criteria with their evidence,
    cohort figures side by side) (``harness.results.model.RolloutRecord`` as JSON).
    ``plans``: the evidence plan of each step (harness.scenario.evidence.plan_rollout);
    ``arrival_rate``: new sessions per second, for "what would settle it".
    """

    def __init__(
        self,
        spec: Any,
        stack: Any,
        clock: RunClock,
        gen: Any,
        reply_timeout_s: float,
        on_event: Callable[[str], None] | None = None,
        plans: list[StepPlan] | None = None,
        arrival_rate: float | None = None,
    ) -> None:
        self.spec = spec
        self.stack = stack
        self.clock = clock
        self.gen = gen
        self.reply_timeout_s = reply_timeout_s
        self.on_event = on_event
        self.plans = plans
        self.arrival_rate = arrival_rate
        self._pool: ProcessPoolExecutor | None = None
        self.record: dict[str, Any] = {
            "steps": [], "outcome": "running", "reason": None, "failed_step": None,
            "inconclusive_step": None, "events": [],
        }  # fmt: skip

    def _tell(self, text: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a display glitch must never end a run
                self.on_event(text)

    async def _wait(self, until: float, stop: asyncio.Event) -> bool:
        """Sleep to ``until`` on the run clock; False when ``stop`` was set first."""
        delay = until - self.clock.now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return not stop.is_set()

    async def _set(self, percent: int) -> tuple[float, str | None]:
        """Set the rollout; (when it was asked, error or None). Recorded as a timeline event
        (``source: rollout``) so charts and the events table show each step."""
        t = self.clock.now()
        event = {"at_s": t, "action": "set_rollout", "params": {"percent": percent},
                 "started_s": t, "finished_s": None, "ok": None, "error": None,
                 "result": None, "source": "rollout"}  # fmt: skip
        self.record["events"].append(event)
        error = None
        try:
            await asyncio.to_thread(self.stack.set_rollout, percent)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        event.update(finished_s=self.clock.now(), ok=error is None, error=error)
        return t, error

    async def judge(self, step: dict[str, Any], now: float, final: bool = False) -> dict[str, Any]:
        """One look at ``step``: what was measured from its settle time to ``now``.

        The cohorts are cut in a thread (a snapshot of the session list; replies landing
        meanwhile are either in or not); the statistics run in the judge's own process, so
        they never hold the generator's event loop or its GIL."""
        t0 = step["set_s"] + self.spec.settle_s
        if self.spec.judge.source == "prometheus":
            # The stack's Prometheus already holds only what the backend answered: no margin.
            verdict = await asyncio.to_thread(self._from_prometheus, t0, max(now, t0), final)
            verdict.window_s = [t0, max(now, t0)]
            verdict.at_s = now
            return verdict.model_dump(mode="json", exclude_unset=True)
        t1 = max(now - REPLY_MARGIN_S, t0)
        # Cut in a thread: a look comes every second, and the walk over every session so far
        # must not hold the generator's event loop (its frames would go out late).
        cohorts = await asyncio.to_thread(
            cohort_frames, self.gen, t0, t1, self.reply_timeout_s, now
        )
        args = (cohorts["torchserve"], cohorts["local"], self.spec.judge, (t0, t1),
                self.reply_timeout_s, final)  # fmt: skip
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            verdict = await loop.run_in_executor(self._pool, judge_step, *args)
        else:
            verdict = await asyncio.to_thread(judge_step, *args)
        verdict.window_s = [t0, t1]
        verdict.at_s = now
        # The record is JSON (results.json ``rollout``); keys the judge left unset stay out.
        return verdict.model_dump(mode="json", exclude_unset=True)

    def _from_prometheus(self, t0: float, t1: float, final: bool) -> RolloutJudgement:
        """The look with ``judge.source: prometheus``: the cohorts' histogram buckets from
        the stack's Prometheus over [t0, t1] of the run clock (harness judge's reading)."""
        from harness.analysis.prometheus_judge import judge_window

        url = getattr(self.stack.endpoints, "prometheus_url", None)
        wall0 = time.time() - self.clock.now()  # the run clock's t = 0 on the wall clock
        fps = getattr(getattr(self.gen, "config", None), "fps", None)
        return judge_window(
            str(url), (wall0 + t0, wall0 + t1), self.spec.judge, final=final, fps=fps
        )

    def prepare(self) -> None:
        """Start the judge's process before the load starts (spawned, its imports done), so
        neither start-up nor imports land inside the run. ``close()`` stops it."""
        self._pool = spawn_worker(_warm)

    def close(self) -> None:
        """Stop the judge's process (also after a cancelled run)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _plan_text(self, i: int) -> str | None:
        if not self.plans or i >= len(self.plans):
            return None
        plan = self.plans[i]
        needs = ", ".join(
            f"{n.criterion} {n.units} {n.what.split(' ')[0]} (~{n.seconds:g} s)"
            if n.seconds is not None
            else f"{n.criterion} {n.units} {n.what.split(' ')[0]} (not within the budget)"
            for n in plan.needs
        )
        return (
            f"evidence plan: {needs}; decided at the earliest ~{plan.ready_s} s in"
            if (plan.ready_s is not None)
            else f"evidence plan: {needs}; the budget may run out first"
        )

    def _settle(self, verdict: dict[str, Any], percent: int) -> str:
        """What would settle an undecided step: per criterion short of data, how many more
        observations at the rate seen so far, and how long that takes."""
        t0, t1 = verdict.get("window_s") or [0.0, 0.0]
        span = max(t1 - t0, 1e-9)
        rate = f"{self.arrival_rate:g} sessions/s and " if self.arrival_rate else ""
        out = []
        for c in verdict["criteria"]:
            ev = c.get("evidence") or {}
            if c["status"] != "n/a" or not c["criterion"].endswith("latency"):
                continue
            needed, seen = ev.get("needed"), ev.get("n_torchserve", 0)
            units = (ev.get("units") or "observations").split(" ")[0]
            bounded = ev.get("ci_torchserve", [None, None])[1] is not None
            if needed and seen:
                out.append(
                    f"{c['criterion']}: at {rate}{percent} %, {needed} more {units} "
                    f"need ~{needed * span / seen:.0f} s more"
                    + (" if they keep the spread seen so far" if bounded else "")
                )
            elif needed:
                out.append(f"{c['criterion']}: {needed} {units}, none seen yet at {percent} %")
            else:
                out.append(
                    f"{c['criterion']}: the TorchServe cohort sits between the pass and fail "
                    "bars: even 16x the data at this spread would not decide it; a looser "
                    "allowance (or a quieter machine) would"
                )
        figs = verdict["figures"]
        small = self.spec.judge.min_sessions
        for name in ("torchserve", "local"):
            has = figs[name]["sessions"]
            if has < small:
                out.append(f"the {name} cohort needs {small} sessions (has {has})")
        return "; ".join(out) or "a longer budget (hold_s, max_holds)"

    async def run(self, stop: asyncio.Event) -> dict[str, Any]:
        """Drive every step until done, aborted, inconclusive, or ``stop`` (the load ended)."""
        rec = self.record
        spec = self.spec
        if not await self._wait(spec.start_s, stop):
            rec.update(outcome="incomplete", reason="the load ended before the rollout started")
            return rec
        last = len(spec.steps) - 1
        for i, percent in enumerate(spec.steps):
            set_s, error = await self._set(percent)
            step: dict[str, Any] = {"step": i, "percent": percent, "set_s": set_s,
                                    "judgements": [], "looks": [], "plan": self._plan_text(i),
                                    "decision": None}  # fmt: skip
            rec["steps"].append(step)
            if error is not None:
                step["decision"] = "abort"
                await self._abort(i, percent, f"set_rollout {percent} failed: {error}")
                return rec
            self._tell(f"t={set_s:.1f}s rollout step {i + 1}/{len(spec.steps)}: {percent} %"
                       + (f" ({step['plan']})" if step["plan"] else ""))  # fmt: skip
            budget_end = set_s + spec.budget_s
            at = set_s + spec.settle_s + REPLY_MARGIN_S
            while True:
                at = min(max(at + spec.look_every_s, self.clock.now()), budget_end)
                if not await self._wait(at, stop):
                    step["decision"] = "not judged"
                    rec.update(
                        outcome="incomplete",
                        reason=f"the load ended during step {i + 1} ({percent} %)",
                    )
                    return rec
                final = at >= budget_end
                verdict = await self.judge(step, self.clock.now(), final)
                verdict["look"] = len(step["looks"]) + 1
                decision = verdict["decision"]
                if i == last and decision == "advance":
                    decision = verdict["decision"] = "complete"
                step["looks"].append({
                    "at_s": verdict["at_s"], "decision": decision,
                    "status": {c["criterion"]: c["status"] for c in verdict["criteria"]},
                })  # fmt: skip
                if decision != "continue":
                    break
            if decision == "inconclusive":
                verdict["settle"] = self._settle(verdict, percent)
            step["judgements"].append(verdict)
            step["decision"] = decision
            if decision == "abort":
                await self._abort(i, percent, verdict["reason"], verdict["look"])
                return rec
            if decision == "inconclusive":
                await self._inconclusive(i, percent, verdict)
                return rec
            self._tell(f"t={verdict['at_s']:.1f}s rollout {percent} %: {decision.upper()} "
                       f"at look {verdict['look']}")  # fmt: skip
        rec.update(outcome="completed", reason=f"reached {spec.steps[-1]} %")
        return rec

    async def _abort(self, i: int, percent: int, reason: str, look: int | None = None) -> None:
        set_s, error = await self._set(0)
        at = f" at look {look}" if look is not None else ""
        self.record.update(
            outcome="aborted",
            failed_step=i,
            reason=f"step {i + 1} ({percent} %) aborted{at}: {reason}",
            rolled_back_s=set_s,
            rollback_error=error,
        )
        self._tell(f"t={set_s:.1f}s rollout ABORTED at {percent} %, set to 0: {reason}")

    async def _inconclusive(self, i: int, percent: int, verdict: dict[str, Any]) -> None:
        """Too little evidence, nothing failed: stop advancing; keep the share or go to 0."""
        rollback = self.spec.on_inconclusive == "rollback"
        kept = "set back to 0 %" if rollback else f"kept at {percent} %"
        self.record.update(
            outcome="inconclusive",
            inconclusive_step=i,
            reason=(
                f"step {i + 1} ({percent} %) inconclusive after {verdict['look']} looks "
                f"({self.spec.budget_s:g} s), {kept}: {verdict['reason']}; to settle it: "
                f"{verdict['settle']}"
            ),
        )
        if rollback:
            set_s, error = await self._set(0)
            self.record.update(rolled_back_s=set_s, rollback_error=error)
        self._tell(f"t={self.clock.now():.1f}s rollout INCONCLUSIVE at {percent} % ({kept})")
