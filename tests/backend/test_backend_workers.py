"""BACKEND_WORKERS > 1: several backend processes on one socket agree on what they must share
(issue 24): metrics add up over the processes, a rollout change made through one process
applies in all of them, and key renewals are serialised across processes."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from backend_server import BackendHandle, run_backend
from backend_streaming import dumps_frames, http_call, metric, run_session, scrape, trace

from backend_patch.app import shared

pytestmark = pytest.mark.slow

ADMIN = "workers-admin-token"


@pytest.fixture(scope="module")
def backend(model_dir) -> Iterator[BackendHandle]:
    env = {
        "USE_TORCHSERVE": "false",
        "MODEL_DIR": str(model_dir),
        "BACKEND_WORKERS": "2",
        "ADMIN_TOKEN": ADMIN,
        "LOG_LEVEL": "warning",
    }
    with run_backend(env) as handle:
        yield handle


def _workers(backend: BackendHandle) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(backend.pid).children()
        if "multiprocessing.spawn" in " ".join(p.cmdline())
        and "resource_tracker" not in " ".join(p.cmdline())
    ]


async def test_workers_serve_sessions_and_metrics_add_up(backend: BackendHandle) -> None:
    """Two worker processes; every frame of 8 sessions is answered and counted once, whichever
    process served it (a single process's registry would show only its own share)."""
    assert len(_workers(backend)) == 2
    messages = dumps_frames(trace(seed=11, signs=2))
    before = metric(scrape(backend.base_url), "signflow_frames_total")
    replies = await asyncio.gather(*(run_session(backend.ws_url, messages) for _ in range(8)))
    assert [len(r) for r in replies] == [len(messages)] * 8
    assert not [r for rs in replies for r in rs if "error" in r]
    # Scraped several times: each scrape may be answered by either process.
    for _ in range(6):
        text = scrape(backend.base_url)
        assert metric(text, "signflow_frames_total") == before + 8 * len(messages)
        assert metric(text, "signflow_sessions_open") == 0


def test_rollout_change_applies_in_every_process(backend: BackendHandle) -> None:
    status, body = http_call(
        backend.base_url,
        "PUT",
        "/admin/rollout",
        json.dumps({"percent": 30}).encode(),
        {"Authorization": f"Bearer {ADMIN}"},
    )
    assert status == 200 and body["percent"] == 30
    seen = set()
    for _ in range(20):  # a new connection each: spread over the processes
        with urllib.request.urlopen(f"{backend.base_url}/ready", timeout=10) as resp:
            seen.add(json.loads(resp.read())["rollout_percent"])
    assert seen == {30}
    assert metric(scrape(backend.base_url), "signflow_rollout_percent") == 30


async def test_key_renewal_lock_is_held_across_processes(tmp_path: Path, monkeypatch) -> None:
    """Two holders of the backend-wide renewal lock (separate open files, as two processes
    have) never hold it at once; with one process the lock is a no-op."""
    monkeypatch.setenv(shared.MULTIPROC_ENV, str(tmp_path))
    order: list[str] = []

    async def renew(name: str, hold_s: float) -> None:
        async with shared.renewal_lock():
            order.append(f"{name} in")
            await asyncio.sleep(hold_s)
            order.append(f"{name} out")

    first = asyncio.create_task(renew("a", 0.3))
    await asyncio.sleep(0.05)
    await asyncio.gather(first, renew("b", 0.0))
    assert order == ["a in", "a out", "b in", "b out"]
    monkeypatch.delenv(shared.MULTIPROC_ENV)
    async with shared.renewal_lock(), shared.renewal_lock():  # one process: no lock at all
        pass


def test_a_worker_that_cannot_start_stops_the_backend_with_status_3(tmp_path: Path) -> None:
    """No model: every worker fails its start-up; the supervisor stops and says so (3), as one
    process does, instead of serving nothing or restarting workers forever."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "BACKEND_WORKERS": "2",
        "MODEL_DIR": str(tmp_path / "missing"),
        "USE_TORCHSERVE": "false",
        "LOG_LEVEL": "warning",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "backend_patch", "--port", "0"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert b"no model artifacts" in proc.stderr
