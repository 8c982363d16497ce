"""The harness under the signals its users' tools send (issue 11, item 11), through the real CLI.

- SIGTERM (``timeout``, CI cancellation, ``docker stop``, systemd) mid-run: the stack with
  TorchServe (Java, its worker) and the backend is stopped, partial results are written, exit 143.
- SIGKILL of the harness (nothing it can handle): the lifeline's watchdog (serving.lifeline)
  stops the stack within seconds; when the watchdog was killed too, the next ``harness run``
  reports what was left and stops it before starting its own stack.

Each test points the run registry (SIGNFLOW_HARNESS_STATE_DIR) at its own folder, so runs of
other suites on the machine are neither seen nor touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.stack.local import PIDS_FILE, REPO_ROOT, surviving_processes
from harness.stack.procs import STATE_DIR_ENV

SCENARIOS = REPO_ROOT / "scenarios"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        not (REPO_ROOT / "build" / "model-store" / "signflow-1.0.mar").is_file(),
        reason="models/archives not built (make setup)",
    ),
]

# Lateness judged at 25 ms as in test_e2e_cli.py (shared 2-core machine); no warm-up and a 1 s
# reply window so that a few seconds of load already leave partial results.
SETS = ["workload.late_threshold_ms=25", "workload.warmup_s=0", "workload.reply_timeout_s=1"]
# torchserve.yaml runs its baseline scenario first and gates the comparison; these tests want
# only a TorchServe stack to interrupt, so they run it alone, ungated.
ALONE = ["baseline=null", "gates=[]"]


def _start(scenario: str, out: Path, state: Path, *sets: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "harness", "run", str(SCENARIOS / scenario), "--out", str(out)]
    for item in (*SETS, *sets):
        argv += ["--set", item]
    return subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, STATE_DIR_ENV: str(state)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _loaded_record(
    out: Path, proc: subprocess.Popen[str], torchserve: bool, settle_s: float
) -> tuple[Path, dict[str, Any]]:
    """The run's process record once its stack is up, after ``settle_s`` s of load."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"harness exited early:\n{output[-3000:]}")
        for record in out.rglob(PIDS_FILE):
            with contextlib.suppress(OSError, ValueError):  # a record being rewritten
                doc = json.loads(record.read_text())
                if doc.get("backend") and (not torchserve or len(doc.get("torchserve", [])) >= 2):
                    time.sleep(settle_s)
                    return record, json.loads(record.read_text())
        time.sleep(0.2)
    raise AssertionError("the stack never came up")


def _results(out: Path) -> dict[str, Any]:
    (path,) = list(out.rglob("results.json"))
    return json.loads(path.read_text())


def _kill_all(record: Path) -> None:
    for entry in surviving_processes(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry["pid"], signal.SIGKILL)


def test_sigterm_mid_run_stops_the_stack_and_keeps_partial_results(tmp_path: Path) -> None:
    proc = _start("torchserve.yaml", tmp_path / "out", tmp_path / "state",
                  "workload.duration_s=60", "workload.sessions=2", *ALONE)  # fmt: skip
    record = None
    try:
        record, recorded = _loaded_record(tmp_path / "out", proc, torchserve=True, settle_s=6)
        children = psutil.Process(proc.pid).children(recursive=True)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if record is not None and proc.returncode != 143:
            _kill_all(record)
    assert proc.returncode == 143, output[-3000:]
    # Java, its worker and the backend: every process recorded, by pid + start time.
    assert len(recorded["torchserve"]) >= 2 and recorded["backend"]
    assert surviving_processes(record) == []
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], alive
    doc = _results(tmp_path / "out")
    assert doc["verdict"] == "error" and doc["error"] == "interrupted" and doc["valid"] is False
    assert any(
        r["kind"] == "interrupted"
        and r["message"].startswith("run interrupted: results cover")
        and r["message"].endswith("(SIGTERM)")
        for r in doc["invalid_reasons"]
    ), doc["invalid_reasons"]
    assert doc["summary"]["frames"]["answered"] > 0
    assert not list((tmp_path / "state").glob("run-*.json"))  # unregistered: clean exit
    print(f"SIGTERM to exit: {took:.1f} s")


def _watchdogs(harness: subprocess.Popen[str]) -> list[psutil.Process]:
    """The harness's lifeline watchdog(s) (serving.lifeline)."""
    out = []
    for child in psutil.Process(harness.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(part.endswith("lifeline.py") for part in child.cmdline()):
                out.append(child)
    return out


def test_a_sigkilled_harness_leaves_nothing_running(tmp_path: Path) -> None:
    """Issue 20 item 9: after ``kill -9`` of a running ``harness run`` (a CI job's timeout),
    the backend, TorchServe's Java frontend and its Python worker stop on their own within a
    few seconds (the lifeline's watchdog: SIGTERM, SIGKILL after 3 s); no later run needed."""
    proc = _start("torchserve.yaml", tmp_path / "out", tmp_path / "state",
                  "workload.duration_s=60", "workload.sessions=2")  # fmt: skip
    record = None
    try:
        record, recorded = _loaded_record(tmp_path / "out", proc, torchserve=True, settle_s=2)
        stack = [
            c for c in psutil.Process(proc.pid).children(recursive=True)
            if not any(part.endswith("lifeline.py") for part in c.cmdline())
        ]  # fmt: skip
        stack_pids = {c.pid for c in stack}
        for entries in recorded.values():
            stack_pids |= {int(e["pid"]) for e in entries}
        assert len(recorded["torchserve"]) >= 2 and recorded["backend"]
        killed = time.monotonic()
        proc.kill()  # SIGKILL: no handler of the harness runs
        proc.wait(10)
        alive = stack_pids
        while alive and time.monotonic() - killed < 30:
            time.sleep(0.1)
            alive = {p for p in alive if psutil.pid_exists(p) and _running(p)}
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if record is not None:
            survivors = surviving_processes(record)
            _kill_all(record)
    assert survivors == [], survivors
    assert alive == set(), f"{len(alive)} stack processes still run {took:.1f} s after SIGKILL"
    assert took < 10.0, took
    print(f"{len(stack_pids)} stack processes gone {took:.1f} s after the harness's SIGKILL")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_next_run_stops_what_a_sigkilled_harness_left(tmp_path: Path) -> None:
    """The second line: when the lifeline's watchdog dies with the harness (killed together),
    the run registry lets the next run find and stop what was left."""
    proc = _start("torchserve.yaml", tmp_path / "killed", tmp_path / "state",
                  "workload.duration_s=60", "workload.sessions=2", *ALONE)  # fmt: skip
    record = None
    try:
        record, _ = _loaded_record(tmp_path / "killed", proc, torchserve=True, settle_s=2)
        watchdogs = _watchdogs(proc)
        assert watchdogs, "the harness runs no lifeline watchdog"
        for watchdog in watchdogs:
            watchdog.kill()  # the first line gone too: only the registry is left
        proc.kill()  # SIGKILL: no handler runs, the stack is orphaned
        proc.wait(10)
        left = surviving_processes(record)
        components = {e["component"] for e in left}
        assert components == {"backend", "torchserve"}, left  # the leftovers are real
        nxt = _start("baseline-quick.yaml", tmp_path / "next", tmp_path / "state",
                     "workload.duration_s=3")  # fmt: skip
        output, _ = nxt.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if record is not None:
            survivors = surviving_processes(record)
            _kill_all(record)
    assert survivors == [], survivors
    assert "left over from a killed run" in output, output[-3000:]
    for entry in left:
        assert f"{entry['component']} pid {entry['pid']}" in output
    stopped = re.search(r"stopped (\d+) left-over processes", output)
    assert stopped and int(stopped.group(1)) >= len(left), output[-3000:]
    assert nxt.returncode == 0, output[-3000:]
    assert not list((tmp_path / "state").glob("run-*.json"))
