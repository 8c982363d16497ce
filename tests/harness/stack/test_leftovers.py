"""What a killed harness leaves behind is found and stopped by the next run (issue 11, item 11).

Real processes: a stand-in "harness" (a Python process that registers a run and starts a stack
child in its own session, as ManagedProcess does) is SIGKILLed; its child keeps running, and
``find_leftovers`` / ``stop_leftovers`` must find exactly it and stop it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.stack.procs import (
    PIDS_FILE,
    STATE_DIR_ENV,
    ProcessRecord,
    RunRegistration,
    find_leftovers,
    stop_leftovers,
    surviving_processes,
)

HARNESS_STANDIN = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from harness.stack.procs import PIDS_FILE, ProcessRecord, RunRegistration

    run_dir = Path(sys.argv[1])
    (run_dir / "logs").mkdir(parents=True)
    with RunRegistration(run_dir):
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
        )
        ProcessRecord(run_dir / "logs" / PIDS_FILE).add("backend", [child.pid])
        print(child.pid, flush=True)
        time.sleep(300)
    """
)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(d))
    return d


@pytest.fixture
def killed_run(tmp_path: Path, state: Path) -> Iterator[tuple[Path, int]]:
    """(run_dir, pid of the stack child left running) after SIGKILL of its harness."""
    run_dir = tmp_path / "run"
    env = {**os.environ, STATE_DIR_ENV: str(state)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HARNESS_STANDIN, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    try:
        yield run_dir, child
    finally:
        if psutil.pid_exists(child):
            os.kill(child, signal.SIGKILL)


def test_a_killed_run_is_found_reported_and_stopped(killed_run: tuple[Path, int]) -> None:
    run_dir, child = killed_run
    assert psutil.Process(child).is_running()  # SIGKILL left it behind
    (left,) = find_leftovers()
    assert left.run_dir == run_dir.resolve()
    assert [(c, p.pid) for c, p in left.processes] == [("backend", child)]
    assert f"backend pid {child}" in left.describe()
    assert stop_leftovers([left], grace_s=2.0) == 1
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    assert surviving_processes(run_dir / "logs" / PIDS_FILE) == []
    assert find_leftovers() == []  # the registration is gone too


def test_a_running_harness_is_never_a_leftover(tmp_path: Path, state: Path) -> None:
    """A concurrent run (its harness alive: here, this test process) is left alone."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "logs").mkdir()
        with RunRegistration(tmp_path):
            ProcessRecord(tmp_path / "logs" / PIDS_FILE).add("backend", [sleeper.pid])
            assert find_leftovers() == []
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_reused_pid_is_not_ours(tmp_path: Path, state: Path) -> None:
    """A record naming a live pid with another start time (the pid was recycled) is never
    reported nor signalled, and neither is a dead harness whose pid now runs something else."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / PIDS_FILE).write_text(
            json.dumps({"backend": [{"pid": bystander.pid, "create_time": started - 50}]})
        )
        state.mkdir()
        me = psutil.Process()
        (state / "run-1-1.json").write_text(
            json.dumps(
                {
                    # Our own pid, a different start time: a dead harness whose pid was reused.
                    "owner": {"pid": me.pid, "create_time": me.create_time() - 100, "cmdline": []},
                    "run_dir": str(tmp_path),
                }
            )
        )
        (left,) = find_leftovers()
        assert left.processes == []
        assert stop_leftovers([left]) == 0
        time.sleep(0.2)
        assert bystander.poll() is None
        assert not (state / "run-1-1.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_killed_compose_run_is_named_with_the_command_that_removes_it(
    tmp_path: Path, state: Path
) -> None:
    """Containers are not in the process record: the leftover line names the project."""
    state.mkdir()
    me = psutil.Process()
    (state / "run-2-2.json").write_text(
        json.dumps(
            {
                "owner": {"pid": me.pid, "create_time": me.create_time() - 100, "cmdline": []},
                "run_dir": str(tmp_path),
                "compose_project": "signflow-0123abcd",
            }
        )
    )
    (left,) = find_leftovers()
    assert left.compose_project == "signflow-0123abcd"
    assert "docker compose -p signflow-0123abcd down -v" in left.describe()


def test_an_unwritable_state_dir_warns_and_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(STATE_DIR_ENV, str(blocker / "runs"))  # under a file: cannot exist
    with caplog.at_level("WARNING", logger="harness"), RunRegistration(tmp_path) as reg:
        reg.note(compose_project="p")
    # A warning of the harness logger (the CLI prints those on stderr).
    assert any("cannot register the run" in r.getMessage() for r in caplog.records)
