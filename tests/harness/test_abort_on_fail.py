"""The abort-on-fail check while the run goes (issue 20 item 5), on real summaries.

- The metrics validation refuses for abort-on-fail (``COLLECTOR_METRICS``) are exactly those a
  summary without collectors leaves null: the check sees no more and no less.
- The check's summary runs in a process of its own (prepared before t=0), and finds the same
  lost gate as the summary in this process.
- The line said when a lost gate stops the run names the gate, the figures' end and the
  reply_timeout_s lag between them and the stop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from core_builders import build_load

from harness.analysis.summary import summarize
from harness.results.model import ANY, METRICS
from harness.runner.watch import AbortWatcher, judge_partial, stop_line
from harness.scenario import load_scenario
from harness.scenario.loader import COLLECTOR_METRICS

REPO = Path(__file__).resolve().parents[2]


def _scenario(*sets: str) -> Any:
    return load_scenario(REPO / "scenarios" / "baseline-quick.yaml", list(sets))


def _load() -> Any:
    return build_load(
        sessions=2, fps=30, duration_s=6, warmup_s=0,
        reply=lambda s, t: (0.004 + 0.001 * s, "local", None, None),
    )  # fmt: skip


def _value(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_collector_metrics_are_the_ones_a_mid_run_summary_cannot_see() -> None:
    summary, _series, _hists, _faults = summarize(_load(), {}, [], _scenario())
    fixed = [m.pattern for m in METRICS if ANY not in m.pattern]
    blind = [p for p in fixed if p.startswith(COLLECTOR_METRICS)]
    assert len(blind) >= 10, blind
    seen = {p: _value(summary, p) for p in blind}
    assert all(v is None for v in seen.values()), seen
    # ...and the generator's own figures, whose collector reading has a fallback, are seen.
    assert _value(summary, "generator.cpu_percent_mean") is not None


class _Gen:
    """The generator's view the watcher reads: a real LoadResult, cut as partial_now cuts."""

    def __init__(self, load: Any) -> None:
        self.load = load

    def partial_now(self) -> Any:
        return self.load


class _Clock:
    def now(self) -> float:
        return 11.0


def test_the_check_runs_in_its_own_process_and_finds_the_lost_gate() -> None:
    scenario = _scenario(
        "abort_on_fail={gates: ['errors.total == 0', 'frame.latency_ms.p50 < 0.001'], "
        "min_measured_s: 1}"
    )
    load = _load()
    here = judge_partial(load, scenario, scenario.abort_on_fail.gates)
    assert here is not None and here["gate"] == "frame.latency_ms.p50 < 0.001"
    watcher = AbortWatcher(scenario.abort_on_fail, scenario, _Gen(load), _Clock())
    watcher.prepare()
    try:
        assert watcher._pool is not None
        assert watcher._pool.submit(os.getpid).result(timeout=30) != os.getpid()
        lost = asyncio.run(watcher.check_async())
    finally:
        watcher.close()
    assert lost is not None
    assert {k: lost[k] for k in ("gate", "measured", "reason")} == here
    assert lost["at_s"] == 11.0 and lost["measured_until_s"] == load.duration_s


def test_the_stop_line_says_what_was_judged_and_the_lag() -> None:
    line = stop_line(
        {"gate": "errors.total == 0", "reason": "measured 3, needs == 0", "at_s": 12.04,
         "measured_until_s": 7.0, "measured": 3},
        5.0,
    )  # fmt: skip
    assert line.startswith("abort-on-fail: gate 'errors.total == 0' lost (measured 3")
    assert "figures up to t=7.0 s; stopping the run at t=12.0 s" in line
    assert "reply_timeout_s = 5 s" in line
