"""Fault analysis on constructed frame arrays with known kill/start/reload times."""

from __future__ import annotations

import pytest
from core_builders import build_load

from harness.analysis.faults import analyze_faults, max_stall_ms, outage_windows, stall_summary
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
    assert fault["first_fallback_after_kill_s"] == pytest.approx(expected, abs=0.06)
    # That window was scheduled after the kill and answered locally in 5 ms: no added wait.
    assert fault["time_to_first_fallback_s"] == pytest.approx(0.005, abs=1e-3)
    assert fault["errors_during_failover"] == 0
    assert fault["local_share_during_outage"] == 1.0
    assert fault["time_to_recover_s"] == pytest.approx(RECOVERED + 0.012 - START, abs=0.06)
    assert fault["time_to_recover_after_ready_s"] == pytest.approx(
        RECOVERED + 0.012 - (START + 1.2), abs=0.06
    )
    assert fault["restart_duration_s"] == pytest.approx(1.2)
    assert fault["restart_s"] == START and fault["ready_s"] == START + 1.2
    assert fault["recovered_s"] == pytest.approx(RECOVERED + 0.012, abs=0.06)
    assert fault["outage_latency_ms"]["p50"] == pytest.approx(5.0, abs=0.1)
    # The frames caught in the failover: scheduled at 3.0..3.15, answered at 3.3.
    assert fault["outage_latency_ms"]["max"] == pytest.approx((FIRST_LOCAL + 0.1 - KILL) * 1000)
    assert fault["outage_max_stall_ms"] == pytest.approx((FIRST_LOCAL + 0.1 - KILL) * 1000)
    # Recovery: restart .. 5 s after the later of READY (7.2) and the first answer (~7.5).
    lo, hi = fault["recovery_window_s"]
    assert lo == START and hi == 10.0  # back at ~7.5 + 5 s, cut at the run's end
    assert fault["recovery_latency_ms"]["p99"] == pytest.approx(12.0, abs=0.1)
    assert fault["recovery_max_stall_ms"] == pytest.approx(12.0, abs=0.1)
    assert fault["recovery_errors"] == 0
    assert "start_torchserve_s" not in fault  # renamed: a duration, not a clock time


def test_recovery_before_ready_is_negative_not_clamped() -> None:
    """TorchServe answers the backend's probe before the harness's poll sees READY."""
    ready = RECOVERED + 0.8  # READY seen after the first TorchServe answer
    load = build_load(sessions=2, fps=20, duration_s=12, reply=outage_reply)
    events = [
        {"at_s": KILL, "action": "kill_torchserve", "params": {}, "started_s": KILL,
         "finished_s": KILL, "ok": True},
        {"at_s": START, "action": "start_torchserve", "params": {}, "started_s": START,
         "finished_s": ready, "ok": True},
    ]  # fmt: skip
    (fault,) = analyze_faults(columns(load), events, "1.0", 12.0)
    assert fault["time_to_recover_after_ready_s"] == pytest.approx(
        RECOVERED + 0.012 - ready, abs=0.06
    )
    assert fault["time_to_recover_after_ready_s"] < -0.7
    # The recovery window runs 5 s past READY, the later of the two, cut at the run's end.
    assert fault["recovery_window_s"] == [START, pytest.approx(min(ready + 5.0, 12.0))]


def test_stall_counts_unanswered_frames_to_the_run_end() -> None:
    """Session 1 gets no reply from 4.0 s on: it waited from 4.0 s to the end of the run."""

    def reply(s: int, t: float) -> tuple:
        if s == 1 and t >= 4.0:
            return None, None, None, None
        if s == 0 and 6.0 <= t < 6.5:
            return 6.8 - t, "local", "1.0", None  # a 0.8 s freeze, answered in order
        return 0.010, "torchserve", "1.0", None

    load = build_load(sessions=3, fps=10, duration_s=10, warmup_s=1.0, reply=reply)
    stall = stall_summary(columns(load), 10.0, 1.0)
    assert stall["sessions"] == 3
    assert stall["max_ms"] == pytest.approx((10.0 - 4.0 - 1e-4) * 1000, abs=0.5)
    assert stall["session"] == 1 and stall["at_s"] == pytest.approx(4.0 + 1e-4)
    # Session maxima: 800 ms, ~6000 ms, 10 ms -> median 800 ms.
    assert stall["p50_ms"] == pytest.approx(800.0, abs=0.5)
    # In a window: the longest wait overlapping it (session 0's freeze for [6.5, 7)).
    cols = columns(load)
    ms, session, at = max_stall_ms(cols, 10.0, 6.5, 7.0)
    assert session == 1 and ms == pytest.approx((10.0 - 4.0 - 1e-4) * 1000, abs=0.5)
    no_lost = columns(build_load(sessions=1, fps=10, duration_s=10, reply=reply))
    ms, session, at = max_stall_ms(no_lost, 10.0, 6.5, 7.0)
    assert session == 0 and at == pytest.approx(6.0) and ms == pytest.approx(800.0, abs=0.5)


def test_outage_windows_one_definition() -> None:
    """The windows every consumer reads: outage to the restart, recovery cut at the next kill."""
    load = build_load(sessions=1, fps=10, duration_s=20, reply=outage_reply)
    events = [
        {"at_s": 3.0, "action": "kill_torchserve", "started_s": 3.0, "finished_s": 3.0, "ok": True},
        {"at_s": 6.0, "action": "start_torchserve", "started_s": 6.0, "finished_s": 7.0,
         "ok": True},
        {"at_s": 9.0, "action": "kill_torchserve", "started_s": 9.0, "finished_s": 9.0, "ok": True},
    ]  # fmt: skip
    w, j = outage_windows(columns(load), events, 0, 20.0)
    assert j == 1 and w.outage == (3.0, 6.0)
    assert w.recovery == (6.0, 9.0)  # back at ~7.5 + 5 s, cut at the second kill
    w2, j2 = outage_windows(columns(load), events, 2, 20.0)
    assert j2 is None and w2.outage == (9.0, 20.0) and w2.recovery is None


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
    assert fault["first_fallback_after_kill_s"] == pytest.approx(1.005, abs=1e-3)
    assert fault["time_to_first_fallback_s"] == pytest.approx(0.005, abs=1e-3)
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
    assert fault["fallbacks"] == 0 and fault["max_stall_ms"] == pytest.approx(10.0, abs=0.1)


def test_reload_counts_fallbacks_in_its_window() -> None:
    """Windows the reload pushed to the local model count; those after its window do not."""

    def reply(_s: int, t: float) -> tuple:
        if 5.2 <= t < 5.4 or 12.0 <= t < 12.2:
            return 2.0, "local", "1.0", None  # a 2 s deadline, then the fallback
        return 0.010, "torchserve", "1.0" if t < 5.5 else "2.0", None

    load = build_load(sessions=1, fps=10, duration_s=14, reply=reply)
    events = [{"at_s": 5.0, "action": "reload_model", "params": {"version": "2.0"},
               "started_s": 5.0, "finished_s": 6.0, "ok": True}]  # fmt: skip
    (fault,) = analyze_faults(columns(load), events, "1.0", 14.0)
    assert fault["fallbacks"] == 2  # 5.2 and 5.3; not 12.0 and 12.1 (the window ends at 8.0)
    assert fault["end_s"] == pytest.approx(6.0 + 2.0)  # reload finished at 6.0, + 2 s
    assert fault["max_stall_ms"] == pytest.approx(2000.0, abs=0.5)
    assert fault["local_replies"] == 2 and fault["local_share_before"] == 0.0


def test_reload_fallbacks_discount_the_steady_hedge_share() -> None:
    """Hedges a healthy TorchServe loses (1 window in 10 here, before and during the reload) are
    not the reload's; a burst beyond that share is."""

    def reply(s: int, t: float) -> tuple:
        k = round(t * 10)
        if k % 10 == 3:
            return 0.25, "local", "1.0", None  # a hedge won locally, all run long
        if s >= 0 and 6.0 <= t < 6.8:
            return 0.25, "local", "1.0", None  # the reload's own burst: 8 windows a session
        return 0.010, "torchserve", "1.0" if t < 5.5 else "2.0", None

    events = [{"at_s": 5.0, "action": "reload_model", "params": {"version": "2.0"},
               "started_s": 5.0, "finished_s": 6.0, "ok": True}]  # fmt: skip
    steady = build_load(sessions=4, fps=10, duration_s=14, reply=lambda _s, t: reply(-1, t))
    (fault,) = analyze_faults(columns(steady), events, "1.0", 14.0)
    assert fault["local_share_before"] == pytest.approx(0.1)
    assert fault["local_replies"] == 12 and fault["fallbacks"] == 0  # 4 sessions x 3 s x 1/s
    burst = build_load(sessions=4, fps=10, duration_s=14, reply=reply)
    (fault,) = analyze_faults(columns(burst), events, "1.0", 14.0)
    # 12 steady + 4 x 7 burst (6.3 is a steady one) of 120 inferences in [5, 8) s: the
    # allowance is floor(0.1 x 120 + 3 x sqrt(0.1 x 0.9 x 120)) = 21, so 40 - 21 = 19.
    assert fault["local_replies"] == 40 and fault["fallbacks"] == 19
