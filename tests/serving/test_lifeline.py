"""Nothing outlives a SIGKILLed owner for long (issue 20 item 9): serving.lifeline.

Each test starts a real owner process that puts process groups on its lifeline (directly, or
through the harness's ManagedProcess and the Locust coordinator's children), SIGKILLs it, and
checks that every process of those groups is gone within a few seconds. The whole harness
under SIGKILL (backend, TorchServe's Java and its worker) is in
tests/harness/e2e/test_e2e_signals.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
# GRACE_S of SIGTERM, then SIGKILL; a loaded 2-core machine gets a few seconds more.
GONE_WITHIN_S = 8.0

OWNER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    kind, folder = sys.argv[1], Path(sys.argv[2])
    # A child that ignores SIGTERM (the SIGKILL after the grace must get it) with a child.
    stubborn = [sys.executable, "-c",
                "import signal, subprocess, time;"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                "subprocess.Popen(['sleep', '300']); time.sleep(300)"]
    if kind == "lifeline":
        from serving.lifeline import guard_group, lifeline
        p = subprocess.Popen(stubborn, start_new_session=True)
        guard_group(p.pid)
        watchdog = lifeline().watchdog_pid
    elif kind == "managed":
        from serving.lifeline import lifeline
        from harness.stack.procs import ManagedProcess
        p = ManagedProcess("stubborn", stubborn, dict(os.environ), folder, folder / "logs")
        watchdog = lifeline().watchdog_pid
    elif kind == "locust":
        from serving.lifeline import lifeline
        from harness.load.distributed.coordinator import _Child
        p = _Child("locust-worker-0", stubborn, dict(os.environ), folder / "w.log")
        watchdog = lifeline().watchdog_pid
    elif kind == "released":
        from serving.lifeline import guard_group, lifeline, release_group
        p = subprocess.Popen(["sleep", "300"], start_new_session=True)
        guard_group(p.pid)
        release_group(p.pid)
        watchdog = lifeline().watchdog_pid
    elif kind == "clean":  # stops what it started, then exits normally
        from serving.lifeline import guard_group, lifeline, release_group
        p = subprocess.Popen(["sleep", "300"], start_new_session=True)
        guard_group(p.pid)
        p.kill()
        p.wait()
        release_group(p.pid)
        print(json.dumps({"pid": p.pid, "watchdog": lifeline().watchdog_pid}), flush=True)
        sys.exit(0)
    elif kind == "pool":  # the abort-on-fail check's and the rollout judge's processes
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from harness.runner.watch import _init_check_process
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_check_process)
        worker = pool.submit(os.getpid).result(timeout=60)
        print(json.dumps({"pid": worker, "watchdog": None}), flush=True)
        time.sleep(300)
    time.sleep(1.0)  # the stubborn child starts its own child
    print(json.dumps({"pid": p.pid, "watchdog": watchdog}), flush=True)
    time.sleep(300)
    """
)


def _owner(kind: str, folder: Path) -> tuple[subprocess.Popen[str], int, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, kind, str(folder)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, int(info["pid"]), int(info["watchdog"] or 0)


def _group(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _gone_after_kill(kind: str, folder: Path) -> float:
    proc, pgid, watchdog = _owner(kind, folder)
    try:
        members = _group(pgid)
        assert len(members) == 2, members  # the stubborn child and its sleep
        assert watchdog not in {m.pid for m in members}
        killed = time.monotonic()
        proc.kill()
        proc.wait(10)
        while _group(pgid) and time.monotonic() - killed < 30:
            time.sleep(0.05)
        took = time.monotonic() - killed
        assert _group(pgid) == [], f"still running {took:.1f} s after the owner's SIGKILL"
        return took
    finally:
        for p in _group(pgid):
            p.kill()


def test_a_sigkilled_owner_takes_its_groups_with_it(tmp_path: Path) -> None:
    took = _gone_after_kill("lifeline", tmp_path)
    assert took < GONE_WITHIN_S
    print(f"group gone {took:.1f} s after the owner's SIGKILL")


def test_managed_processes_of_a_sigkilled_harness_stop(tmp_path: Path) -> None:
    assert _gone_after_kill("managed", tmp_path) < GONE_WITHIN_S


def test_locust_children_of_a_sigkilled_harness_stop(tmp_path: Path) -> None:
    assert _gone_after_kill("locust", tmp_path) < GONE_WITHIN_S


def test_pool_workers_sharing_the_harness_group_exit_with_it(tmp_path: Path) -> None:
    """A ProcessPoolExecutor's worker (the abort-on-fail check, the rollout judge) is in the
    harness's own process group, which no lifeline may stop: it exits on its own."""
    proc, worker, _ = _owner("pool", tmp_path)
    try:
        tracker = [
            p for p in psutil.Process(proc.pid).children()
            if "resource_tracker" in " ".join(p.cmdline())
        ]  # fmt: skip
        killed = time.monotonic()
        proc.kill()
        proc.wait(10)
        psutil.wait_procs([psutil.Process(worker), *tracker], timeout=GONE_WITHIN_S)
        took = time.monotonic() - killed
        assert not psutil.pid_exists(worker) or not _alive(worker), f"worker alive {took:.1f} s"
        assert all(not _alive(t.pid) for t in tracker), tracker
    finally:
        for pid in (worker,):
            if _alive(pid):
                psutil.Process(pid).kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_clean_exit_leaves_no_watchdog_behind(tmp_path: Path) -> None:
    """Every process started is stopped on any exit: at a normal exit the owner lets its
    watchdog go and waits for it, so not even the watchdog outlives it."""
    proc, _, watchdog = _owner("clean", tmp_path)
    assert proc.wait(30) == 0
    assert not _alive(watchdog)


def test_a_released_group_is_left_alone_and_the_watchdog_exits(tmp_path: Path) -> None:
    proc, pgid, watchdog = _owner("released", tmp_path)
    try:
        proc.kill()
        proc.wait(10)
        psutil.Process(watchdog).wait(10)  # EOF: the watchdog exits at once
        time.sleep(0.5)
        assert len(_group(pgid)) == 1  # released: the owner said it stops it itself
    finally:
        for p in _group(pgid):
            p.kill()
        if proc.poll() is None:
            proc.kill()
