"""What watches a run while it goes: the live outputs and the abort-on-fail gates.

:func:`live_loop` takes one generator snapshot per second (``LoadGenerator.live`` rates are
"since the previous call", so there must be one caller) and hands it to every sink: the
progress display, the live file, the Prometheus exporter. :class:`AbortWatcher` checks the
``abort_on_fail`` gates on what is measured so far and cancels the load when one is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from harness.stack.procs import exit_with_parent, spawn_worker

Sink = Callable[[Any], None]
# The abort-on-fail check's process runs this much nicer than the generator (0..19).
CHECK_NICENESS = 10


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


def _warm() -> bool:
    """Imports of the check's process (run once, before t=0)."""
    import harness.analysis.gates
    import harness.analysis.summary  # noqa: F401

    return True


def _init_check_process() -> None:
    """The check's process: niced (where cores are short, the generator's sends come first),
    and gone within a second of a SIGKILLed harness (it shares the harness's process group)."""
    os.nice(CHECK_NICENESS)
    exit_with_parent()


def judge_partial(load: Any, scenario: Any, gates: Any) -> dict[str, Any] | None:
    """The first of ``gates`` lost on ``load`` (a partial LoadResult), or None; no collectors
    (validation refuses abort-on-fail gates on their metrics). Runs in the check's process."""
    from harness.analysis.gates import evaluate_gates
    from harness.analysis.summary import summarize

    summary, _series, _hists, faults = summarize(load, {}, [], scenario)
    for gate in evaluate_gates(gates, summary, faults):
        if not gate["passed"]:
            return {"gate": gate["expr"], "measured": gate["measured"], "reason": gate["reason"]}
    return None


class AbortWatcher:
    """k6's abortOnFail: the first lost ``spec.gates`` gate cancels ``target`` (the load task).

    Checked every ``check_every_s`` once ``min_measured_s`` past the warm-up are judgeable, on
    exactly what an interrupted run keeps (``LoadGenerator.partial_now``: frames scheduled at
    least ``reply_timeout_s`` ago), so the partial results show the lost gate too. The figures
    judged therefore end ``reply_timeout_s`` before the check (a frame's reply may take that
    long): the run stops ``reply_timeout_s`` (plus up to ``check_every_s``) after the moment
    the lost figures describe. ``aborted``: None, or ``{"at_s", "measured_until_s", "gate",
    "measured", "reason"}``; ``say`` gets one line when a lost gate stops the run.

    The summary of the load so far runs in a niced process of its own (``prepare``), not a
    thread: a thread summarising holds the interpreter lock for tens of milliseconds per check
    (about 90 ms for 72,000 frames), which made the generator's event loop late
    (benchmarks/abort_check_lateness.py, figures in benchmarks/results/). What stays in this
    process is copying the load to the check's process (about 10 ms per 72,000 frames).
    """

    def __init__(
        self,
        spec: Any,
        scenario: Any,
        gen: Any,
        clock: Any,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.scenario = scenario
        self.gen = gen
        self.clock = clock
        self.say = say
        self.aborted: dict[str, Any] | None = None
        self.checks = 0
        self._pool: ProcessPoolExecutor | None = None

    def prepare(self) -> None:
        """Start the check's process before the load starts (spawned, imports done), so that
        neither start-up nor imports land inside the run. ``close()`` stops it."""
        self._pool = spawn_worker(_warm, _init_check_process)

    def close(self) -> None:
        """Stop the check's process (also after a cancelled run)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _partial(self) -> Any | None:
        load = self.gen.partial_now()
        wl = self.scenario.workload
        if load is None or load.duration_s - wl.warmup_s < self.spec.min_measured_s:
            return None
        return load

    def _lost(self, load: Any, found: dict[str, Any] | None) -> dict[str, Any] | None:
        if found is None:
            return None
        return {"at_s": self.clock.now(), "measured_until_s": load.duration_s, **found}

    def check(self) -> dict[str, Any] | None:
        """Evaluate the gates on the load so far, here; the first lost one, or None."""
        load = self._partial()
        if load is None:
            return None
        self.checks += 1
        return self._lost(load, judge_partial(load, self.scenario, self.spec.gates))

    async def check_async(self) -> dict[str, Any] | None:
        """As ``check``, the summary in the check's process (in a thread without ``prepare``)."""
        load = await asyncio.to_thread(self._partial)
        if load is None:
            return None
        self.checks += 1
        args = (load, self.scenario, self.spec.gates)
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self._pool, judge_partial, *args)
        else:
            found = await asyncio.to_thread(judge_partial, *args)
        return self._lost(load, found)

    async def run(self, target: asyncio.Task[Any], stop: asyncio.Event) -> None:
        """Check until ``stop``; on a lost gate record it, say so and cancel ``target``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.spec.check_every_s)
            if stop.is_set():
                return
            lost = await self.check_async()
            if lost is not None:
                self.aborted = lost
                if self.say is not None:
                    self.say(stop_line(lost, self.scenario.workload.reply_timeout_s))
                target.cancel()
                return


def stop_line(aborted: dict[str, Any], reply_timeout_s: float) -> str:
    """The line printed when abort-on-fail stops a run."""
    return (
        f"abort-on-fail: gate {aborted['gate']!r} lost ({aborted['reason']}) on the figures up "
        f"to t={aborted['measured_until_s']:.1f} s; stopping the run at t={aborted['at_s']:.1f} s "
        f"(the check judges frames whose replies had reply_timeout_s = {reply_timeout_s:g} s "
        "to arrive)"
    )


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
