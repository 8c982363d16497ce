"""Run the scenario's timeline events on the RunClock against the Stack.

Each event waits for its ``at_s``, then calls the blocking Stack operation in a thread
(``asyncio.to_thread``) so the load generator's event loop never stalls. Events run in order;
one that overruns delays the next (recorded: ``started_s`` > ``at_s``). A failing event is
recorded (``ok: false``, ``error``) and the run goes on: a fault that cannot be injected must
show in the results, not abort the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from harness.clock import RunClock

if TYPE_CHECKING:
    from harness.scenario import Event
    from harness.stack import ReloadResult, Stack


def event_record(event: Event) -> dict[str, Any]:
    """The ``events[]`` entry of an event not run yet."""
    return {
        "at_s": float(event.at_s),
        "action": event.action,
        "params": event.params(),
        "started_s": None,
        "finished_s": None,
        "ok": None,
        "error": None,
        "result": None,
    }


def _call(stack: Stack, event: Event) -> ReloadResult | None:
    """Run one event's Stack operation; only ``reload_model`` returns something (its steps)."""
    if event.action == "kill_torchserve":
        stack.kill_torchserve()
    elif event.action == "start_torchserve":
        stack.start_torchserve()
    elif event.action == "reload_model":
        assert event.version is not None  # Event's validator: reload_model needs a version
        return stack.reload_model(event.version)
    elif event.action == "set_rollout":
        assert event.percent is not None  # Event's validator: set_rollout needs a percent
        stack.set_rollout(event.percent)
    else:
        raise ValueError(f"unknown timeline action {event.action!r}")
    return None


def describe(record: dict[str, Any], phase: str) -> str:
    """A progress line for an event record at ``phase`` "started" or "finished" (t: run clock)."""
    action = record["action"]
    params = record.get("params") or {}
    # A kill takes effect when it is sent (the outage starts there); the rest when they return.
    at_start = phase == "started" or action == "kill_torchserve"
    t = record["started_s"] if at_start else record["finished_s"]
    at = f"t={t:.1f}s" if t is not None else "t=?"
    if phase == "started":
        what = {
            "kill_torchserve": "killing TorchServe",
            "start_torchserve": "starting TorchServe",
            "reload_model": f"reloading the model to {params.get('version')}",
            "set_rollout": f"setting the rollout to {params.get('percent')} %",
        }.get(action, action)
        return f"{at} {what}"
    took = record["finished_s"] - record["started_s"]
    if record.get("ok") is False:
        return f"{at} {action} FAILED after {took:.1f}s: {record.get('error')}"
    what = {
        "kill_torchserve": "TorchServe killed",
        "start_torchserve": "TorchServe READY again",
        "reload_model": f"reload to {params.get('version')} done",
        "set_rollout": f"rollout at {params.get('percent')} %",
    }.get(action, f"{action} done")
    return f"{at} {what} (took {took:.1f}s)"


class Timeline:
    """Executes events; ``records`` is filled as they run (readable after a cancel).

    ``on_event(text)``: called (in the event loop) when an event starts and when it finishes,
    with a line for the live progress; it must not raise.
    """

    def __init__(
        self,
        events: Sequence[Event],
        stack: Stack,
        clock: RunClock,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.events = list(events)
        self.stack = stack
        self.clock = clock
        self.records = [event_record(e) for e in self.events]
        self.on_event = on_event

    def _tell(self, record: dict[str, Any], phase: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a display glitch must never end a run
                self.on_event(describe(record, phase))

    async def run(self, stop: asyncio.Event | None = None) -> list[dict[str, Any]]:
        """Run every event at its time; returns early (events left unrun) when ``stop`` is set."""
        stop = stop or asyncio.Event()
        for event, record in zip(self.events, self.records, strict=True):
            delay = event.at_s - self.clock.now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                await self.clock.sleep_until(event.at_s) if not stop.is_set() else None
            if stop.is_set():
                record["error"] = "not run: the load ended first"
                continue
            record["started_s"] = self.clock.now()
            # Only the slow actions get a "started" line; a kill is one line when it is sent.
            if event.action in ("start_torchserve", "reload_model"):
                self._tell(record, "started")
            try:
                result = await asyncio.to_thread(_call, self.stack, event)
            except Exception as exc:
                record["ok"] = False
                record["error"] = f"{type(exc).__name__}: {exc}"[:500]
            else:
                record["ok"] = True
                record["result"] = result if isinstance(result, dict) else None
            finally:
                record["finished_s"] = self.clock.now()
            self._tell(record, "finished")
        return self.records
