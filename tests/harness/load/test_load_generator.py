"""The open-loop generator against real WebSocket servers with known behaviour (own processes).

Timing tolerances: 2 ms for the injected delay (as the issue asks); the machine is shared, so
the runs are short and light (a few sessions at 30 fps).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness import hdr
from harness.analysis import frames as fr
from harness.clock import RunClock
from harness.load import LoadConfig, LoadGenerator, LoadResult

FRAME = {"hands": {"left": [[0.1, 0.2, 0.3]] * 21, "right": None}, "pose": [[0.5, 0.5, 0.0]] * 33}
TRACE = [dict(FRAME, timestamp=i / 30) for i in range(60)]


def _config(url: str, **kw: object) -> LoadConfig:
    base: dict[str, object] = {
        "ws_url": url,
        "sessions": 1,
        "fps": 30.0,
        "duration_s": 3.0,
        "warmup_s": 0.0,
        "ramp_up_s": 0.0,
        "traces": lambda i: TRACE,
        "reply_timeout_s": 2.0,
    }
    base.update(kw)
    return LoadConfig(**base)  # type: ignore[arg-type]


async def _run(cfg: LoadConfig) -> tuple[LoadResult, LoadGenerator]:
    gen = LoadGenerator(cfg, RunClock())
    return await gen.run(), gen


def _server_truth(res: LoadResult, clock: RunClock, log: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the server's own receive and send times (on our clock), from its log.

    perf_counter is CLOCK_MONOTONIC on Linux, shared by both processes. Each server
    connection is mapped to the session whose first logged frame it sent last before the
    server received it (sessions start tens of ms apart).
    """
    f = res.frames
    recv = np.full(f.size, np.nan)
    send = np.full(f.size, np.nan)
    by_conn: dict[int, list[tuple[int, float, float]]] = {}
    for line in log.read_text().splitlines():
        conn, idx, r, s = line.split()
        by_conn.setdefault(int(conn), []).append(
            (int(idx), clock.to_clock(float(r)), clock.to_clock(float(s)))
        )
    for rows in by_conn.values():
        idx0, r0, _ = min(rows, key=lambda row: row[1])
        cand = np.flatnonzero(f["frame_idx"] == idx0)
        sent = f["t_sent"][cand]
        session = f["session"][cand[int(np.argmin(np.where(sent <= r0, r0 - sent, np.inf)))]]
        base = int(np.flatnonzero(f["session"] == session)[0])  # rows are per session, by idx
        for idx, r, s in rows:
            recv[base + idx], send[base + idx] = r, s
    return recv, send


async def test_known_delay_percentiles_within_2ms(
    ws_server: Callable[..., str], tmp_path: Path
) -> None:
    """A server holds every reply 20 ms and logs when it really received and answered each
    frame. Every frame's times must be consistent with the server's, and the measured
    p50/p95/p99 must match the server-side truth within 2 ms.

    The cores are shared with other work and noise only ever ADDS latency, so the best of 3
    attempts is the estimate (as pyperf keeps the minimum): one attempt within 2 ms passes.
    A generator that is really off is off in every attempt and fails; the test is skipped,
    saying so, only when every attempt ran on a machine too busy to keep time. The
    invariants are checked on every attempt.
    """
    failures: list[str] = []
    for attempt in range(3):
        log = tmp_path / f"server-{attempt}.log"
        url = ws_server(delay_ms=20, log=str(log))
        clock = RunClock()
        clock.start()
        cfg = _config(url, sessions=4, duration_s=3.0, warmup_s=1.0, ramp_up_s=0.5)
        res = await LoadGenerator(cfg, clock).run()
        counts = fr.counts(res)
        assert counts["scheduled"] > 200
        assert counts["answered"] == counts["scheduled"]
        assert counts["lost"] == 0 and counts["errored"] == 0
        f = res.frames
        recv, send = _server_truth(res, clock, log)
        assert not np.isnan(send).any()
        # Causality on one clock: sent <= server received <= server answered <= reply seen.
        eps = 1e-6
        assert np.all(f["t_sent"] <= recv + eps) and np.all(recv <= send)
        assert np.all(send <= f["t_reply"] + eps)
        assert np.all(send - recv >= 0.020 - eps)  # the delay really was injected
        # Warm-up frames are in the windows (flagged) but not in the measured histograms.
        windows = fr.windows(res)
        assert [w.warmup for w in windows[:2]] == [True, False]
        measured = sum(w.answered for w in windows if not w.warmup)
        assert fr.histograms(res)["frame_latency"].get_total_count() == measured
        m = res.measured_mask()
        off = []
        for name, start in (
            ("frame_latency", "t_scheduled"),
            ("frame_latency_uncorrected", "t_sent"),
        ):
            p = hdr.latency_summary(fr.histograms(res)[name])
            truth = (send - f[start])[m] * 1000
            for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
                t = float(np.percentile(truth, q))
                if abs(p[key] - t) > 2.0:
                    off.append(f"{name} {key}: {p[key]:.2f} vs server {t:.2f}")
        if not off:
            return
        # An attempt only judges the generator when the machine let both sides keep time:
        # the server held replies no longer than it was told to (p99), the generator sent on
        # schedule (its self-check). Otherwise the cores were taken by other work.
        hold_p99 = float(np.percentile((send - recv)[m], 99)) * 1000
        calm = res.valid and hold_p99 <= 22.0
        failures.append(("" if calm else "[machine busy] ") + "; ".join(off))
    if any(not f.startswith("[machine busy]") for f in failures):
        pytest.fail("off by more than 2 ms in every attempt: " + " | ".join(failures))
    pytest.skip("3 attempts spoilt by a busy machine: " + " | ".join(failures))


async def test_server_stall_shows_for_every_frame_scheduled_during_it(
    ws_server: Callable[..., str], tmp_path: Path
) -> None:
    stall_at = 45  # 1.5 s after the first frame
    log = tmp_path / "server.log"
    url = ws_server(stall_at_frame=stall_at, stall_ms=500, log=str(log))
    clock = RunClock()
    clock.start()
    res = await LoadGenerator(_config(url, duration_s=3.5), clock).run()
    f = res.frames
    recv, send = _server_truth(res, clock, log)
    corrected = (f["t_reply"] - f["t_scheduled"]) * 1000
    uncorrected = (f["t_reply"] - f["t_sent"]) * 1000
    # The server froze when it got frame K and woke when it answered it (its own clock; a
    # busy machine can stretch the 500 ms sleep a little).
    t0, t_end = recv[stall_at], send[stall_at]
    assert 0.5 <= t_end - t0 < 0.6
    in_stall = (f["t_scheduled"] > t0) & (f["t_scheduled"] < t_end)
    n = int(in_stall.sum())
    assert abs(n - (t_end - t0) * 30) <= 1.5  # fps * stall
    # Every frame scheduled during the stall waited for its end, not only frame K.
    expected = (t_end - f["t_scheduled"][in_stall]) * 1000
    assert np.all(np.abs(corrected[in_stall] - expected) < 15.0), corrected[in_stall]
    assert np.all(np.diff(corrected[in_stall]) < 0)  # decreasing from ~500 ms
    # The sender is open loop: it went on sending during the stall, about on time (shared
    # cores can delay a send by a few ms, never by the stall).
    assert np.all(np.abs(uncorrected[in_stall] - corrected[in_stall]) < 30.0)
    before = f["t_scheduled"] < f["t_scheduled"][stall_at] - 0.1
    after = f["t_scheduled"] > t_end + 0.1
    assert corrected[before].max() < 100 and corrected[after].max() < 100
    assert hdr.latency_summary(fr.histograms(res)["frame_latency"])["max"] >= 480


async def test_generator_stall_is_corrected_from_the_schedule(
    ws_server: Callable[..., str],
) -> None:
    """Coordinated omission: frames due while the SENDER was blocked are late; the corrected
    latency counts that wait, the uncorrected one (from the actual send) hides it."""
    url = ws_server()
    clock = RunClock()
    gen = LoadGenerator(_config(url, duration_s=3.0), clock)

    async def block_once() -> None:
        await clock.sleep_until(1.5)
        time.sleep(0.5)  # blocks the event loop, like a GC pause in the generator

    clock.start()
    blocker = asyncio.create_task(block_once())
    res = await gen.run()
    await blocker
    f = res.frames
    corrected = (f["t_reply"] - f["t_scheduled"]) * 1000
    uncorrected = (f["t_reply"] - f["t_sent"]) * 1000
    blocked = (f["t_scheduled"] > 1.52) & (f["t_scheduled"] < 1.95)
    assert blocked.sum() >= 12
    assert np.all(corrected[blocked] > 40)
    assert np.all(np.diff(corrected[blocked]) < 0)
    assert np.all(uncorrected[blocked] < 30), uncorrected[blocked]
    assert fr.counts(res)["late"] >= 12
    assert not res.valid
    assert any(r.kind == "fell_behind" for r in res.invalid_reasons)


async def test_overloaded_generator_is_invalid(ws_server: Callable[..., str]) -> None:
    url = ws_server()
    clock = RunClock()
    gen = LoadGenerator(_config(url, sessions=20, duration_s=2.5), clock)

    async def hog() -> None:
        # Keeps the generator's loop (and core) busy: it cannot keep its schedule.
        while True:
            end = time.perf_counter() + 0.03
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    hog_task = asyncio.create_task(hog())
    try:
        res = await gen.run()
    finally:
        hog_task.cancel()
    assert not res.valid
    assert res.generator_late_share > 0.01
    assert any(r.kind == "fell_behind" for r in res.invalid_reasons)
    # The CPU figure depends on what else the shared cores run: only check its reason.
    if res.generator_cpu_saturated:
        assert any(r.kind == "cpu_saturated" for r in res.invalid_reasons)


async def test_one_disconnect_does_not_hurt_the_other_sessions(
    ws_server: Callable[..., str],
) -> None:
    url = ws_server(close_after=20)
    res, _ = await _run(_config(url, sessions=3, duration_s=2.0, ramp_up_s=0.3))
    assert res.disconnects == 1
    f = res.frames
    answered = ~np.isnan(f["t_reply"])
    per_session = {s: int(answered[f["session"] == s].sum()) for s in range(3)}
    totals = {s: int((f["session"] == s).sum()) for s in range(3)}
    dead = [s for s in range(3) if per_session[s] < totals[s]]
    assert len(dead) == 1
    assert per_session[dead[0]] == 20
    assert fr.counts(res)["lost"] == totals[dead[0]] - 20


async def test_error_replies_inference_tags_and_accuracy(ws_server: Callable[..., str]) -> None:
    # Frame j carries sign "a" (sent) and truth "a" (kept); every 4th frame lies ("b").
    trace = [{"pose": [], "sign": "b" if j % 4 == 3 else "a", "truth": "a"} for j in range(40)]
    url = ws_server(error_every=10, tag_inference_every=3)
    res, _ = await _run(_config(url, duration_s=2.0, traces=lambda i: trace))
    f = res.frames
    idx = f["frame_idx"]
    n = len(f)
    assert fr.counts(res)["errored"] == int(np.sum(idx % 10 == 9))
    assert fr.errors_by_code(res) == {"bad_frame": int(np.sum(idx % 10 == 9))}
    inference = (idx % 3 == 0) & (idx % 10 != 9)
    assert fr.counts(res)["inferences"] == int(inference.sum())
    assert fr.served_by_counts(res) == {"torchserve": int(inference.sum())}
    assert fr.model_version_counts(res) == {"1.0": int(inference.sum())}
    acc = fr.accuracy(res)
    lies = inference & (idx % 40 % 4 == 3)
    assert acc["total"] == int(inference.sum())
    assert acc["correct"] == int(inference.sum() - lies.sum())
    assert acc["accuracy"] == pytest.approx(acc["correct"] / acc["total"])
    assert set(acc["by_served_by"]) == {"torchserve"}
    rec = next(r for r in res.records() if r.served_by)
    assert rec.model_version == "1.0" and rec.truth == "a"
    assert n == fr.counts(res)["scheduled"]


async def test_unreachable_server_counts_everything_lost() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    res, _ = await _run(_config(f"ws://127.0.0.1:{port}/", sessions=2, duration_s=1.0))
    assert res.connect_failures == 2
    counts = fr.counts(res)
    assert counts["sent"] == 0 and counts["lost"] == counts["scheduled"] > 0


async def test_live_snapshot_during_a_run(ws_server: Callable[..., str]) -> None:
    url = ws_server(delay_ms=10)
    clock = RunClock()
    gen = LoadGenerator(_config(url, sessions=3, duration_s=3.0), clock)
    task = asyncio.create_task(gen.run())
    await asyncio.sleep(1.5)
    gen.live()
    await asyncio.sleep(1.0)
    snap = gen.live()
    await task
    assert snap.sessions_connected == 3
    assert 0.5 < snap.elapsed < 3.0 and snap.remaining > 0
    assert 60 <= snap.frames_per_s <= 120  # 3 sessions x 30 fps
    assert snap.p95_ms is not None and 9.5 <= snap.p95_ms <= 200  # 10 ms + shared-core noise
    assert snap.errors == 0 and snap.fallback_share is None


async def test_cancelled_run_keeps_what_it_measured(ws_server: Callable[..., str]) -> None:
    """Ctrl-C mid-run: the frames whose reply window had fully passed are kept, all answered."""
    url = ws_server(delay_ms=5)
    clock = RunClock()
    gen = LoadGenerator(_config(url, sessions=2, duration_s=10.0, reply_timeout_s=0.5), clock)
    task = asyncio.create_task(gen.run())
    await asyncio.sleep(2.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    part = gen.partial
    assert part is not None
    # Cut at (cancel time - reply_timeout): about 2 s of the planned 10 s.
    assert 1.5 < part.duration_s < 2.5
    f = part.frames
    assert f.size > 0 and float(f["t_scheduled"].max()) < part.duration_s
    counts = fr.counts(part)
    assert counts["scheduled"] == f.size == counts["answered"]  # nothing in flight counted lost
    assert counts["lost"] == 0 and part.disconnects == 0


async def test_run_cancelled_before_the_warmup_ends_keeps_nothing(
    ws_server: Callable[..., str],
) -> None:
    gen = LoadGenerator(_config(ws_server(), duration_s=10.0, warmup_s=5.0), RunClock())
    task = asyncio.create_task(gen.run())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gen.partial is None


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"LoadConfig\.sessions"):
        LoadGenerator(_config("ws://127.0.0.1:1/", sessions=0), RunClock())
    with pytest.raises(ValueError, match=r"LoadConfig\.warmup_s"):
        LoadGenerator(_config("ws://127.0.0.1:1/", warmup_s=5.0), RunClock())


async def test_one_scheduler_sends_every_frame_on_time_in_order(
    ws_server: Callable[..., str],
) -> None:
    """The process's send scheduler (issue 24): 40 sessions, every frame sent once, never
    before its scheduled time, each session's frames in order; one scheduler task, not a
    task and a timer per session."""
    url = ws_server()
    cfg = _config(url, sessions=40, duration_s=2.0, ramp_up_s=0.5)
    gen = LoadGenerator(cfg, RunClock())
    seen: list[int] = []

    async def count_tasks() -> None:
        await asyncio.sleep(1.0)  # mid-run: every session streaming
        seen.append(sum(t.get_name() == "load-send-scheduler" for t in asyncio.all_tasks()))

    res, _ = await asyncio.gather(gen.run(), count_tasks())
    assert seen == [1]
    f = res.frames
    assert res.unsent == 0 and not np.isnan(f["t_sent"]).any()
    assert (f["t_sent"] >= f["t_scheduled"]).all()
    for s in range(40):
        sent = f["t_sent"][f["session"] == s]
        assert (np.diff(sent) > 0).all()


async def test_first_frames_are_on_time_however_long_the_traces_take_to_serialise(
    ws_server: Callable[..., str],
) -> None:
    """Eight distinct 1,500-frame traces take ~1 s to serialise here. That work happens before
    the schedule's base (in prepare(), or at the top of run()), so every session's first frame
    goes out on time; serialised after the base, the first 0.5-1 s of frames were all late and
    their latency (measured from the schedule) counted against the server."""
    url = ws_server()
    big = [
        [dict(FRAME, timestamp=i / 30, variant=v, pad=[float(v)] * 64) for i in range(1500)]
        for v in range(8)
    ]
    cfg = _config(url, sessions=8, duration_s=1.5, ramp_up_s=0.2, traces=lambda i: big[i])
    res, _ = await _run(cfg)
    f = res.frames
    for s in range(8):
        rows = f[f["session"] == s]
        first = rows[np.argmin(rows["t_scheduled"])]
        late_ms = (first["t_sent"] - first["t_scheduled"]) * 1000
        assert late_ms < 100, f"session {s}: first frame sent {late_ms:.0f} ms late"
