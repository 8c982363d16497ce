"""What watches a run while it goes: the live outputs and the abort-on-fail gates.

:func:`live_loop` takes one generator snapshot per second (``LoadGenerator.live`` rates are
"since the previous call", so there must be one caller) and hands it to every sink: the
progress display, the live file, the Prometheus exporter. :class:`AbortWatcher` checks the
``abort_on_fail`` gates on what is measured so far and cancels the load when one is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

Sink = Callable[[Any], None]


async def live_loop(gen: Any, sinks: Sequence[Sink], stop: asyncio.Event) -> None:
    """Every second until ``stop``: one ``gen.live()`` snapshot to each sink."""
    with contextlib.suppress(Exception):
        gen.live()  # prime the rate, else the first tick reads 0 frames/s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        try:
            stats = gen.live()
        except Exception:  # a display glitch must never end a run
            continue
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink(stats)


class AbortWatcher:
    """k6's abortOnFail: the first lost ``spec.gates`` gate cancels ``target`` (the load task).

    Checked every ``check_every_s`` once ``min_measured_s`` past the warm-up are judgeable, on
    exactly what an interrupted run keeps (``LoadGenerator.partial_now``: frames scheduled at
    least ``reply_timeout_s`` ago), so the partial results show the lost gate too. ``aborted``:
    None, or ``{"at_s", "gate", "measured", "reason"}``.
    """

    def __init__(self, spec: Any, scenario: Any, gen: Any, clock: Any) -> None:
        self.spec = spec
        self.scenario = scenario
        self.gen = gen
        self.clock = clock
        self.aborted: dict[str, Any] | None = None
        self.checks = 0

    def check(self) -> dict[str, Any] | None:
        """Evaluate the gates on the load so far; the first lost one, or None."""
        from harness.analysis.gates import evaluate_gates
        from harness.analysis.summary import summarize

        load = self.gen.partial_now()
        wl = self.scenario.workload
        if load is None or load.duration_s - wl.warmup_s < self.spec.min_measured_s:
            return None
        self.checks += 1
        summary, _series, _hists, faults = summarize(load, {}, [], self.scenario)
        for gate in evaluate_gates(self.spec.gates, summary, faults):
            if not gate["passed"]:
                return {
                    "at_s": self.clock.now(),
                    "measured_until_s": load.duration_s,
                    "gate": gate["expr"],
                    "measured": gate["measured"],
                    "reason": gate["reason"],
                }
        return None

    async def run(self, target: asyncio.Task[Any], stop: asyncio.Event) -> None:
        """Check until ``stop``; on a lost gate record it and cancel ``target``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.spec.check_every_s)
            if stop.is_set():
                return
            # In a thread: summarising the load so far must not hold the generator's loop.
            lost = await asyncio.to_thread(self.check)
            if lost is not None:
                self.aborted = lost
                target.cancel()
                return


def abort_gate(aborted: dict[str, Any]) -> dict[str, Any]:
    """The gates[] entry of the abort-on-fail gate that stopped the run (always failed)."""
    return {
        "expr": f"abort_on_fail: {aborted['gate']}",
        "metric": "abort_on_fail",
        "op": None,
        "threshold": None,
        "threshold_hi": None,
        "relative": False,
        "measured": aborted.get("measured"),
        "passed": False,
        "reason": f"run stopped at t={aborted['at_s']:.1f} s (figures up to "
        f"{aborted['measured_until_s']:.1f} s): {aborted['reason']}",
    }
