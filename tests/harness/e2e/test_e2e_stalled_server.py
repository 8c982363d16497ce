"""A backend that stops reading mid-run (SIGSTOP), through the real CLI (issue 11, item 5).

Before: the harness waited for the paused backend (it exited only after the backend was
resumed) and blamed this machine. Now the load ends on time, the run is INVALID with a reason
that names the system under test, and the stack (the stopped backend included) is torn down.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.load.generator import END_GRACE_S
from harness.load.selfcheck import FELL_BEHIND, SUT_STOPPED_READING
from harness.stack.local import BACKEND_STOP_GRACE_S, PIDS_FILE, REPO_ROOT, surviving_processes
from harness.stack.procs import STATE_DIR_ENV

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DURATION_S = 8.0
REPLY_TIMEOUT_S = 1.0


def test_backend_paused_mid_run_ends_on_time_and_names_the_server(tmp_path: Path) -> None:
    out = tmp_path / "out"
    scenario = REPO_ROOT / "scenarios" / "baseline-quick.yaml"
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out)]
    for item in (
        "workload.late_threshold_ms=25",
        "workload.warmup_s=0",
        f"workload.duration_s={DURATION_S:g}",
        f"workload.reply_timeout_s={REPLY_TIMEOUT_S:g}",
        "workload.sessions=4",
        "workload.fps=60",
    ):
        argv += ["--set", item]
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, STATE_DIR_ENV: str(tmp_path / "state")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    backend = None
    try:
        deadline = time.monotonic() + 180
        record = None
        while record is None and time.monotonic() < deadline:
            assert proc.poll() is None, "harness exited before the backend came up"
            for path in out.rglob(PIDS_FILE):
                with contextlib.suppress(OSError, ValueError):
                    if json.loads(path.read_text()).get("backend"):
                        record = path
            time.sleep(0.1)
        assert record is not None, "the backend never came up"
        backend = json.loads(record.read_text())["backend"][0]["pid"]
        # The load runs once the harness holds its 4 WebSocket sessions to the backend.
        port: set[int] = set()
        while time.monotonic() < deadline:
            assert proc.poll() is None, "harness exited before the load started"
            port = port or {
                c.laddr.port
                for c in psutil.Process(backend).net_connections("tcp")
                if c.status == psutil.CONN_LISTEN
            }
            sessions = [
                c
                for c in psutil.Process(proc.pid).net_connections("tcp")
                if c.raddr and c.raddr.port in port and c.status == psutil.CONN_ESTABLISHED
            ]
            if len(sessions) >= 4:
                break
            time.sleep(0.1)
        time.sleep(2.0)  # a couple of seconds of normal load first
        os.kill(backend, signal.SIGSTOP)
        stopped_at = time.monotonic()
        output, _ = proc.communicate(timeout=120)
        after_stop = time.monotonic() - stopped_at
    finally:
        if backend is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(backend, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, output[-3000:]
    (path,) = list(out.rglob("results.json"))
    doc = json.loads(path.read_text())
    reasons = doc["invalid_reasons"]
    assert any(r["kind"] == SUT_STOPPED_READING for r in reasons), reasons
    assert not any(r["kind"] == FELL_BEHIND for r in reasons), reasons
    assert "hint: the system under test stopped reading" in output
    silent = doc["summary"]["generator"]["server_silent_from_s"]
    assert silent is not None and 0 < silent < DURATION_S
    assert doc["summary"]["frames"]["lost"] > 0
    # The load ends by duration + reply timeout + grace; then the paused backend is torn down
    # (SIGTERM, SIGKILL after its grace) and the results and report are written.
    bound = DURATION_S + REPLY_TIMEOUT_S + END_GRACE_S + BACKEND_STOP_GRACE_S + 15
    assert after_stop < bound, (after_stop, bound)
    assert surviving_processes(record) == []
    print(f"harness exited {after_stop:.1f} s after SIGSTOP (bound {bound:.1f} s)")
