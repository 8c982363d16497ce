"""Distributed load with real Locust processes (master + 2 local workers, ZeroMQ on loopback)
against the known-delay WebSocket server. pytest's process only runs the coordinator: Locust
lives in subprocesses (it monkeypatches the process that imports it)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness import hdr
from harness.analysis import frames as fr
from harness.clock import RunClock
from harness.load import LoadConfig
from harness.load.distributed import WORKER_LOST, DistributedLoad, DistributedLoadError
from harness.load.distributed.coordinator import START_S
from harness.load.trace import synthetic_trace
from harness.scenario.models import LocustSpec, TraceSpec

pytestmark = pytest.mark.timeout(120)
TRACE = TraceSpec.model_validate({"synthetic": {"seed": 1, "signs": 2}})


def _load(url: str, tmp: Path, sessions: int = 4, duration_s: float = 3.0,
          reply_timeout_s: float = 5.0, **spec: object) -> DistributedLoad:  # fmt: skip
    frames = synthetic_trace(1, 2, None, (15, 30))
    config = LoadConfig(ws_url=url, sessions=sessions, fps=30, duration_s=duration_s,
                        warmup_s=1.0, ramp_up_s=0.0, traces=lambda _i: frames,
                        reply_timeout_s=reply_timeout_s)  # fmt: skip
    locust = LocustSpec.model_validate({"workers": 2, "worker_timeout_s": 20, **spec})
    return DistributedLoad(config, RunClock(), locust, TRACE, tmp)


def _children() -> list[str]:
    """Locust/engine processes still below this test process."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "-m locust" in cmd or "distributed.engine" in cmd:
            out.append(f"{p.pid} {cmd}")
    return out


async def _run(gen: DistributedLoad):
    await gen.prepare()
    gen.clock.start()
    return await gen.run()


async def test_two_workers_against_a_known_delay(
    ws_server: Callable[..., str], tmp_path: Path
) -> None:
    url = ws_server(delay_ms=20)
    gen = _load(url, tmp_path)
    res = await _run(gen)
    assert not _children()
    f = res.frames
    # The one-process numbering: 4 sessions, each scheduled from the shared t0 at 30 fps.
    assert sorted(set(f["session"].tolist())) == [0, 1, 2, 3]
    per_session = [int(np.count_nonzero(f["session"] == s)) for s in range(4)]
    starts = [START_S + s * (1 / 30) / 4 for s in range(4)]
    assert per_session == [int(np.ceil((3.0 - st) * 30 - 1e-9)) for st in starts]
    counts = fr.counts(res)
    assert counts["answered"] == counts["scheduled"] and counts["lost"] == 0
    # Every reply took the server's 20 ms at least; the median is the delay plus transport.
    lat = (f["t_reply"] - f["t_scheduled"]) * 1000
    assert lat.min() >= 18.9  # uvloop's 1 ms timers may send up to ~1 ms early
    p = hdr.latency_summary(fr.histograms(res)["frame_latency"])
    assert 20.0 <= p["p50"] <= 23.0, p  # type: ignore[operator]
    ws = res.distribution["workers"]  # type: ignore[attr-defined]
    assert [w["status"] for w in ws] == ["done", "done"]
    assert [(w["session_offset"], w["sessions"]) for w in ws] == [(0, 2), (2, 2)]
    assert all(w["host"] == socket.gethostname() and w["cpu_percent"] is not None for w in ws)
    assert all(w["messages"] >= 3 for w in ws)  # prepared, ticks, done
    assert res.distribution["master"]["messages"] >= 6  # type: ignore[attr-defined]
    # Start-up: no session's first frame went out late (all scheduled from t0).
    first = f[f["frame_idx"] == 0]
    assert np.all((first["t_sent"] - first["t_scheduled"]) * 1000 < res.late_threshold_ms)


async def test_a_worker_killed_mid_run_is_named_and_the_run_ends(
    ws_server: Callable[..., str], tmp_path: Path
) -> None:
    url = ws_server(delay_ms=5)
    gen = _load(url, tmp_path, duration_s=6.0)
    await gen.prepare()
    gen.clock.start()
    task = asyncio.create_task(gen.run())
    await asyncio.sleep(2.5)
    victim = gen.workers[1]
    os.kill(victim.pid, signal.SIGKILL)
    t0 = time.monotonic()
    res = await asyncio.wait_for(task, 30)
    assert time.monotonic() - t0 < 20  # ends on the other worker's done, not a long timer
    lost = [r for r in res.invalid_reasons if r.kind == WORKER_LOST]
    assert len(lost) == 1, res.invalid_reasons
    (dead,) = [w for w in res.distribution["workers"] if w["status"] != "done"]  # type: ignore[attr-defined]
    assert f"pid {victim.pid}" in str(lost[0]) and f"pid {victim.pid}" in dead["name"]
    # Its sessions are counted lost; the other worker's were measured.
    f = res.frames
    lo, hi = dead["session_offset"], dead["session_offset"] + dead["sessions"]
    in_dead = (f["session"] >= lo) & (f["session"] < hi)
    mine, other = f[in_dead], f[~in_dead]
    assert np.isnan(mine["t_reply"]).all() and mine.size > 0
    assert np.count_nonzero(~np.isnan(other["t_reply"])) == other.size
    assert not _children()


async def test_port_taken_is_a_clear_error_and_nothing_is_left(
    ws_server: Callable[..., str], tmp_path: Path
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        gen = _load("ws://127.0.0.1:9/", tmp_path, master_bind={"port": port})
        with pytest.raises(DistributedLoadError, match=f"127.0.0.1:{port}.*already in use"):
            await gen.prepare()
    finally:
        holder.close()
    assert not _children()


async def test_cancel_keeps_what_the_workers_measured(
    ws_server: Callable[..., str], tmp_path: Path
) -> None:
    url = ws_server(delay_ms=5)
    # The partial cut lies reply_timeout_s before the stop: 1 s keeps ~2 s past the warm-up.
    gen = _load(url, tmp_path, duration_s=30.0, reply_timeout_s=1.0)
    await gen.prepare()
    gen.clock.start()
    task = asyncio.create_task(gen.run())
    await asyncio.sleep(4.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    part = gen.partial
    assert part is not None
    assert sorted(set(part.frames["session"].tolist())) == [0, 1, 2, 3]
    assert 1.0 < part.duration_s < 5.0
    assert fr.counts(part)["answered"] > 0
    assert not _children()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("process groups and fork semantics of Linux")
