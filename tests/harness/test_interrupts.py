"""SIGTERM and SIGHUP take Ctrl-C's path (harness.runner.interrupts), with real signals to a child.

The child runs the same pieces the harness does: the asyncio runner (which turns SIGINT into a
cancellation of the measurement, so partial results are kept) and the stack's teardown
deferral. The whole harness under SIGTERM is tested in tests/harness/e2e/test_e2e_signals.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from harness.runner.interrupts import TerminationSignals, interrupt_name
    from harness.runner.loop import run_async
    from harness.stack.base import DeferSigint

    async def measure():
        print("ready", flush=True)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            print("measurement cancelled", flush=True)  # where partial results are taken
            raise

    with TerminationSignals() as term:
        try:
            run_async(measure())
        except KeyboardInterrupt:
            print("interrupted by", interrupt_name(), flush=True)
        # A second signal during the teardown waits for the teardown to finish.
        try:
            with DeferSigint():
                print("tearing down", flush=True)
                time.sleep(1.0)
                print("teardown complete", flush=True)
        except KeyboardInterrupt:
            print("re-raised after teardown", flush=True)
    sys.exit(term.exit_code())
    """
)


def _terminal_defaults() -> None:
    """What a process started from a terminal meets, whatever started the suite: a suite under
    ``nohup`` or in the background inherits SIGHUP/SIGINT ignored, and an inherited ignore is
    kept on purpose (see the nohup test below)."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _measuring_child(preexec: Callable[[], None]) -> subprocess.Popen[str]:
    """CHILD started with the signal dispositions ``preexec`` sets, once it is measuring."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_termination_signal_is_handled_like_ctrl_c(sig: signal.Signals, code: int) -> None:
    proc = _measuring_child(_terminal_defaults)
    assert proc.stdout is not None
    os.kill(proc.pid, sig)
    assert proc.stdout.readline().strip() == "measurement cancelled"
    assert proc.stdout.readline().strip() == f"interrupted by {sig.name}"
    assert proc.stdout.readline().strip() == "tearing down"
    os.kill(proc.pid, sig)  # during the teardown: deferred, not cutting it short
    rest, _ = proc.communicate(timeout=20)
    assert rest.split() == ["teardown", "complete", "re-raised", "after", "teardown"]
    assert proc.returncode == code


def test_ctrl_c_keeps_exit_130() -> None:
    proc = _measuring_child(_terminal_defaults)
    assert proc.stdout is not None
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert "interrupted by SIGINT" in out
    assert proc.returncode == 130


def _nohup() -> None:
    _terminal_defaults()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does


def test_an_inherited_ignore_is_kept_as_nohup_asks() -> None:
    """``nohup harness run ...`` ignores SIGHUP: closing the terminal must not stop the run."""
    proc = _measuring_child(_nohup)
    assert proc.stdout is not None
    os.kill(proc.pid, signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):  # still measuring: the hang-up was ignored
        proc.communicate(timeout=1.5)
    os.kill(proc.pid, signal.SIGTERM)  # SIGTERM, not ignored, still stops it like Ctrl-C
    out, _ = proc.communicate(timeout=20)
    assert "interrupted by SIGTERM" in out
    assert proc.returncode == 143
