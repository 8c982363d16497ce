"""``workload.engine: locust`` through the real CLI: the shipped scenarios/distributed.yaml on the
local stack with the flag off (a real backend, no TorchServe), and a taken master port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.stack.local import REPO_ROOT
from harness.stack.procs import (
    LOAD_PIDS_FILE,
    STATE_DIR_ENV,
    free_port,
    surviving_processes,
)

SCENARIOS = REPO_ROOT / "scenarios"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _locust_processes() -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "-m locust" in cmd or "harness.load.distributed.engine" in cmd:
            out.append(f"{p.info['pid']} {cmd}")
    return out


def _harness(out: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness", "run", str(SCENARIOS / "distributed.yaml"),
            "--out", str(out)]  # fmt: skip
    for item in sets:
        argv += ["--set", item]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
                          check=False, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.skipif(
    not (REPO_ROOT / "build" / "model-store" / "signflow-1.0.mar").is_file(),
    reason="models/archives not built (make setup)",
)
def test_two_workers_against_the_real_backend_flag_off(tmp_path: Path) -> None:
    before = set(_locust_processes())
    proc = _harness(
        tmp_path, "stack.use_torchserve=false", "workload.sessions=4", "workload.duration_s=6",
        "workload.warmup_s=2", "workload.ramp_up_s=0.5", "workload.late_threshold_ms=25",
        "gates=[]",
    )  # fmt: skip
    (run_dir,) = [p for p in tmp_path.iterdir() if not p.is_symlink()]  # and the latest link
    doc = json.loads((run_dir / "results.json").read_text())
    # 0, or 2 when this shared machine made a worker fall behind (named in the reasons).
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    if proc.returncode == 2:
        reasons = doc["invalid_reasons"]
        assert all("on worker" in r["message"] for r in reasons), reasons
    s = doc["summary"]
    assert s["frames"]["scheduled"] == 4 * 4 * 30  # sessions x measured s x fps
    assert s["frames"]["lost"] == 0 and s["errors"]["total"] == 0
    assert s["served_by"]["local"] == 1.0  # flag off: the backend's own model answered
    workers = doc["load"]["workers"]
    assert [w["status"] for w in workers] == ["done", "done"]
    assert sum(w["frames"] for w in workers) == s["frames"]["scheduled"]
    assert doc["load"]["master"]["messages"] > 0
    # The generator's CPU is the workers' (the busiest one), not the harness process's.
    gen_cpu = doc["summary"]["generator"]["cpu_percent_mean"]
    assert gen_cpu == max(w["cpu_percent"] for w in workers)
    assert "workers 2/2" in proc.stderr  # live progress names the workers
    assert set(_locust_processes()) <= before


@pytest.fixture
def fake_backend() -> Iterator[int]:
    """A tiny real backend (tests/harness/fake_backend.py) on a free port."""
    backend = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "harness" / "fake_backend.py")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert backend.stdout is not None
        yield int(backend.stdout.readline())
    finally:
        backend.terminate()
        backend.wait(10)


def _external(path: Path, bport: int, workload: str) -> Path:
    path.write_text(
        f"name: {path.stem}\nstack:\n  driver: external\n  external:\n"
        f"    ws_url: ws://127.0.0.1:{bport}/\n    http_url: http://127.0.0.1:{bport}\n"
        f"workload:\n{workload}report: {{enabled: false}}\n"
    )
    return path


def test_a_remote_worker_started_with_harness_worker(tmp_path: Path, fake_backend: int) -> None:
    """One local worker plus one started by `harness worker --master HOST:PORT`, as on
    another machine: the run waits for both and merges both."""
    port = free_port()
    scenario = _external(
        tmp_path / "remote.yaml", fake_backend,
        "  sessions: 4\n  duration_s: 4\n  warmup_s: 1\n  late_threshold_ms: 25\n"
        "  engine: locust\n"
        f"  locust: {{workers: 1, expect_remote_workers: 1, master_bind: {{port: {port}}}}}\n",
    )  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "o")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    remote = subprocess.Popen(
        [sys.executable, "-m", "harness", "worker", "--master", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = run.communicate(timeout=150)
        remote.wait(30)  # the master's quit ends the remote worker too
    finally:
        for p in (run, remote):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert run.returncode in (0, 2), out
    doc = json.loads((tmp_path / "o" / "latest" / "results.json").read_text())
    workers = doc["load"]["workers"]
    assert [w["status"] for w in workers] == ["done", "done"]
    assert {w["name"].split("pid ")[1].rstrip(")") for w in workers} >= {str(remote.pid)}
    assert doc["summary"]["frames"]["lost"] == 0
    assert remote.returncode is not None


def test_ctrl_c_keeps_the_workers_partial_results(tmp_path: Path, fake_backend: int) -> None:
    scenario = _external(
        tmp_path / "cut.yaml", fake_backend,
        "  sessions: 4\n  duration_s: 60\n  warmup_s: 1\n  reply_timeout_s: 1\n"
        "  engine: locust\n  locust: {workers: 2}\n",
    )  # fmt: skip
    before = set(_locust_processes())
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "o")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert run.stdout is not None
    for line in run.stdout:  # the plain progress line: every worker connected, load running
        if "workers 2/2" in line:
            break
    time.sleep(4)  # past the 1 s warm-up plus reply_timeout_s: something to keep
    run.send_signal(signal.SIGINT)
    try:
        out = run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, out
    doc = json.loads((tmp_path / "o" / "latest" / "results.json").read_text())
    assert doc["verdict"] == "error" and doc["error"] == "interrupted"
    assert doc["summary"]["frames"]["answered"] > 0
    assert [w["status"] for w in doc["load"]["workers"]] == ["done", "done"]
    assert set(_locust_processes()) <= before


def test_master_port_taken_exits_3_with_nothing_left(tmp_path: Path, fake_backend: int) -> None:
    bport = fake_backend
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: taken\nstack:\n  driver: external\n  external:\n"
        f"    ws_url: ws://127.0.0.1:{bport}/\n    http_url: http://127.0.0.1:{bport}\n"
        "workload:\n  sessions: 2\n  duration_s: 3\n  engine: locust\n"
        f"  locust: {{workers: 2, master_bind: {{port: {port}}}}}\n"
    )
    before = set(_locust_processes())
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "o")],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        holder.close()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"could not bind 127.0.0.1:{port} (address already in use)" in proc.stderr
    assert set(_locust_processes()) <= before


def test_next_run_stops_the_locust_processes_a_sigkilled_harness_left(
    tmp_path: Path, fake_backend: int
) -> None:
    """The run's load record names the master, both workers and their generator processes;
    after the harness is SIGKILLed, the next run reports and stops the ones still running."""
    state = tmp_path / "state"
    env = {**os.environ, STATE_DIR_ENV: str(state)}
    scenario = _external(
        tmp_path / "killed.yaml", fake_backend,
        "  sessions: 4\n  duration_s: 60\n  warmup_s: 1\n  engine: locust\n"
        "  locust: {workers: 2}\n",
    )  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "o")],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    recorded: list[dict[str, Any]] = []
    try:
        assert run.stdout is not None
        for line in run.stdout:  # every worker connected and prepared: the record is complete
            if "workers 2/2" in line:
                break
        (record,) = list((tmp_path / "o").rglob(LOAD_PIDS_FILE))
        doc = json.loads(record.read_text())
        assert {k: len(v) for k, v in doc.items()} == {
            "locust-master": 1, "locust-worker": 2, "load-engine": 2,
        }  # fmt: skip
        recorded = surviving_processes(record)
        assert len(recorded) == 5, recorded
        # Frozen first, then the harness killed: left alone, a live master sees its harness go
        # (end of its command pipe) and ends the workers itself; a hung one cannot, and only
        # the registry finds it. SIGSTOP makes that case certain instead of a race.
        for entry in recorded:
            os.kill(entry["pid"], signal.SIGSTOP)
        run.kill()
        run.wait(10)
        assert len(surviving_processes(record)) == 5
        nxt = subprocess.run(
            [sys.executable, "-m", "harness", "run",
             str(_external(tmp_path / "next.yaml", fake_backend,
                           # It runs while the frozen processes are being stopped: its own
                           # timing is not what this test checks.
                           "  sessions: 1\n  duration_s: 2\n  warmup_s: 0\n"
                           "  late_threshold_ms: 100\n")),
             "--out", str(tmp_path / "n")],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        survivors = surviving_processes(record)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for entry in recorded:  # whatever the outcome, nothing of this test keeps running
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry["pid"], signal.SIGKILL)
    output = nxt.stdout + nxt.stderr
    assert nxt.returncode == 0, output[-3000:]
    assert "left over from a killed run" in output, output[-3000:]
    for entry in recorded:
        assert f"{entry['component']} pid {entry['pid']}" in output, output[-3000:]
    stopped = re.search(r"stopped (\d+) left-over processes", output)
    assert stopped and int(stopped.group(1)) >= 5, output[-3000:]
    assert survivors == [], survivors
    assert not list(state.glob("run-*.json"))
