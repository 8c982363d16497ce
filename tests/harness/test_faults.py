"""Fault analysis on constructed frame arrays with known kill/start/reload times."""

from __future__ import annotations

import pytest
from core_builders import build_load

from harness.analysis.faults import analyze_faults
from harness.analysis.frames import columns

KILL, START, RECOVERED, FIRST_LOCAL = 3.0, 6.0, 7.5, 3.2


def outage_reply(_s: int, t: float) -> tuple:
    if t < KILL:
        return 0.010, "torchserve", "1.0", None
    if t < FIRST_LOCAL - 0.05:
        # scheduled at the kill: the in-flight request times out, then falls back locally
        return FIRST_LOCAL + 0.1 - t, "local", "1.0", None
    if t < RECOVERED:
        return 0.005, "local", "1.0", None
    return 0.012, "torchserve", "1.0", None


def test_outage_fallback_and_recovery() -> None:
    load = build_load(sessions=2, fps=20, duration_s=10, reply=outage_reply)
    events = [
        {"at_s": KILL, "action": "kill_torchserve", "params": {}, "started_s": KILL,
         "finished_s": KILL + 0.05, "ok": True},
        {"at_s": START, "action": "start_torchserve", "params": {}, "started_s": START,
         "finished_s": START + 1.2, "ok": True},
    ]  # fmt: skip
    (fault,) = analyze_faults(columns(load), events, "1.0", 10.0)
    assert fault["kind"] == "outage" and fault["event_index"] == 0
    assert fault["start_s"] == KILL and fault["end_s"] == START
    assert fault["recovery_event_index"] == 1
    # The first local reply: the frame scheduled at 3.0 answered at FIRST_LOCAL + 0.1 ... but
    # frames scheduled after FIRST_LOCAL - 0.05 are answered 5 ms later, which comes first.
    expected = FIRST_LOCAL - 0.05 + 0.005 - KILL
    assert fault["time_to_first_fallback_s"] == pytest.approx(expected, abs=0.06)
    assert fault["errors_during_failover"] == 0
    assert fault["local_share_during_outage"] == 1.0
    assert fault["time_to_recover_s"] == pytest.approx(RECOVERED + 0.012 - START, abs=0.06)
    assert fault["time_to_recover_after_ready_s"] == pytest.approx(
        RECOVERED + 0.012 - (START + 1.2), abs=0.06
    )
    assert fault["start_torchserve_s"] == pytest.approx(1.2)
    assert fault["outage_latency_ms"]["p50"] == pytest.approx(5.0, abs=0.1)
    assert fault["outage_latency_ms"]["p99"] > 100  # the frames caught in the failover


def test_outage_counts_lost_and_error_frames_and_no_recovery() -> None:
    def reply(_s: int, t: float) -> tuple:
        if t < KILL:
            return 0.010, "torchserve", "1.0", None
        if t < KILL + 0.5:
            return None, None, None, None  # lost
        if t < KILL + 1.0:
            return 0.002, None, None, "inference_failed"  # error replies
        return 0.005, "local", "1.0", None

    load = build_load(sessions=1, fps=10, duration_s=8, reply=reply)
    events = [{"at_s": KILL, "action": "kill_torchserve", "params": {}, "started_s": KILL,
               "finished_s": KILL, "ok": True}]  # fmt: skip
    (fault,) = analyze_faults(columns(load), events, "1.0", 8.0)
    assert fault["errors_during_failover"] == 10  # 5 lost + 5 error replies at 10 fps
    assert fault["time_to_first_fallback_s"] == pytest.approx(1.005, abs=1e-3)
    assert fault["recovery_event_index"] is None and fault["time_to_recover_s"] is None
    assert fault["time_to_recover_after_ready_s"] is None


def test_reload_switch_and_mixed_window() -> None:
    reload_at, first_new, last_old = 5.0, 5.5, 5.8

    def reply(s: int, t: float) -> tuple:
        if t < first_new or (s == 1 and t < last_old):
            return 0.010, "torchserve", "1.0", None
        return 0.010, "torchserve", "2.0", None

    load = build_load(sessions=2, fps=10, duration_s=10, reply=reply)
    events = [{"at_s": reload_at, "action": "reload_model", "params": {"version": "2.0"},
               "started_s": reload_at, "finished_s": reload_at + 2.0, "ok": True}]  # fmt: skip
    (fault,) = analyze_faults(columns(load), events, "1.0", 10.0)
    assert fault["kind"] == "reload"
    assert fault["from_version"] == "1.0" and fault["to_version"] == "2.0"
    assert fault["time_to_first_new_s"] == pytest.approx(first_new + 0.010 - reload_at, abs=1e-3)
    lo, hi = fault["mixed_window_s"]
    assert lo == pytest.approx(first_new + 0.010, abs=1e-3)
    assert hi == pytest.approx(last_old - 0.1 + 0.010 + 1e-4, abs=2e-3)
    assert fault["mixed_window_len_s"] == pytest.approx(hi - lo)
    assert fault["errors"] == 0
    assert fault["p99_around_switch_ms"] == pytest.approx(10.0, abs=0.1)
    assert fault["reload_s"] == pytest.approx(2.0)
