"""A progressive rollout driven and judged while the run goes (the scenario's ``rollout`` block).

At ``start_s`` the share of new sessions sent to TorchServe becomes the first step's percent
(``Stack.set_rollout``, as the timeline's ``set_rollout`` does). Each step is held ``hold_s``;
then the frames of the step so far (scheduled from ``settle_s`` after the change to one second
before the judgement, so the replies are in) are split by session cohort and judged
(harness.analysis.rollout.judge_step): advance to the next step, hold it again (at most
``max_holds`` times; the window grows), or abort: the rollout is set to 0 at once, and why is
recorded. The last step (100 %) has no old-pipeline cohort of new sessions; it is judged when
enough old sessions are still streaming, else marked ``complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from harness.analysis.rollout import COHORTS, CohortFrames, judge_step
from harness.clock import RunClock
from harness.stack.procs import exit_with_parent


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
    for s in gen.sessions_now():
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
            )
        )
    return {c: CohortFrames.join(p) for c, p in parts.items()}


class RolloutController:
    """Runs a ``RolloutSpec`` against a stack while ``gen`` streams; ``record`` fills as it goes.

    ``record``: ``{"steps": [...], "outcome": "running" | "completed" | "aborted" |
    "incomplete", "reason", "failed_step"}``; each step: percent, set_s, judgements (one per
    hold period: window, decision, reason, criteria, cohort figures side by side).
    """

    def __init__(
        self,
        spec: Any,
        stack: Any,
        clock: RunClock,
        gen: Any,
        reply_timeout_s: float,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.stack = stack
        self.clock = clock
        self.gen = gen
        self.reply_timeout_s = reply_timeout_s
        self.on_event = on_event
        self._pool: ProcessPoolExecutor | None = None
        self.record: dict[str, Any] = {
            "steps": [], "outcome": "running", "reason": None, "failed_step": None,
            "events": [],
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
        """Judge ``step`` on what was measured from its settle time to ``now``.

        The cohorts are cut here (cheap); the statistics (~0.7 s of CPU, measured in
        benchmarks/rollout_judge.py) run in the judge's own process, so they never hold the
        generator's event loop or its GIL (in a thread they made the run's frames late)."""
        t0 = step["set_s"] + self.spec.settle_s
        t1 = now - REPLY_MARGIN_S
        cohorts = cohort_frames(self.gen, t0, t1, self.reply_timeout_s, now)
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

    def prepare(self) -> None:
        """Start the judge's process before the load starts (spawned, its imports done), so
        neither start-up nor imports land inside the run. ``close()`` stops it."""
        ctx = multiprocessing.get_context("spawn")  # never fork a process with live threads
        # Gone within a second of a SIGKILLed harness (it shares the harness's process group).
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=exit_with_parent
        )
        self._pool.submit(_warm).result(timeout=120)

    def close(self) -> None:
        """Stop the judge's process (also after a cancelled run)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def run(self, stop: asyncio.Event) -> dict[str, Any]:
        """Drive every step until done, aborted, or ``stop`` (the load ended)."""
        rec = self.record
        spec = self.spec
        if not await self._wait(spec.start_s, stop):
            rec.update(outcome="incomplete", reason="the load ended before the rollout started")
            return rec
        last = len(spec.steps) - 1
        for i, percent in enumerate(spec.steps):
            set_s, error = await self._set(percent)
            step: dict[str, Any] = {"step": i, "percent": percent, "set_s": set_s,
                                    "judgements": [], "decision": None}  # fmt: skip
            rec["steps"].append(step)
            if error is not None:
                step["decision"] = "abort"
                await self._abort(i, percent, f"set_rollout {percent} failed: {error}")
                return rec
            self._tell(f"t={set_s:.1f}s rollout step {i + 1}/{len(spec.steps)}: {percent} %")
            holds = 0
            while True:
                if not await self._wait(self.clock.now() + spec.hold_s, stop):
                    step["decision"] = "not judged"
                    rec.update(
                        outcome="incomplete",
                        reason=f"the load ended during step {i + 1} ({percent} %)",
                    )
                    return rec
                # In a thread: the statistics must not hold the generator's event loop.
                final = holds >= spec.max_holds and i != last
                verdict = await self.judge(step, self.clock.now(), final)
                step["judgements"].append(verdict)
                decision = verdict["decision"]
                if i == last and decision == "hold":
                    decision = verdict["decision"] = "complete"
                    verdict["reason"] = (
                        f"final step: {verdict['reason']} (nothing left to compare against)"
                    )
                if decision == "hold" and holds < spec.max_holds:
                    holds += 1
                    self._tell(f"t={verdict['at_s']:.1f}s rollout {percent} %: HOLD "
                               f"({verdict['reason']})")  # fmt: skip
                    continue
                if i == last and decision == "advance":
                    decision = verdict["decision"] = "complete"
                step["decision"] = decision
                break
            if decision == "abort":
                await self._abort(i, percent, verdict["reason"])
                return rec
            self._tell(f"t={verdict['at_s']:.1f}s rollout {percent} %: {decision.upper()}")
        rec.update(outcome="completed", reason=f"reached {spec.steps[-1]} %")
        return rec

    async def _abort(self, i: int, percent: int, reason: str) -> None:
        set_s, error = await self._set(0)
        self.record.update(
            outcome="aborted",
            failed_step=i,
            reason=f"step {i + 1} ({percent} %) aborted: {reason}",
            rolled_back_s=set_s,
            rollback_error=error,
        )
        self._tell(f"t={set_s:.1f}s rollout ABORTED at {percent} %, set to 0: {reason}")
