"""Child processes of a stack: spawn with logs to files, wait for HTTP readiness, stop for sure.

Kept apart from the drivers so the local driver (and a future one) share one careful
implementation of the parts that are easy to get wrong: process groups, escalation from SIGTERM
to SIGKILL, and failing fast with the log tail when a child dies while we wait for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import psutil

from serving.local import free_port  # noqa: F401  (one implementation, re-exported)

from .base import StackError


def log_tail(paths: Sequence[Path], lines: int = 40) -> str:
    """The last ``lines`` lines of each existing file, labelled, for error messages."""
    parts: list[str] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        tail = text.splitlines()[-lines:]
        if tail:
            parts.append(f"--- {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
    return "\n".join(parts) if parts else "(no log output)"


class ManagedProcess:
    """One child process in its own session, stdout/stderr to files, stopped by its group.

    The child gets its own session so that a Ctrl-C at the terminal reaches the harness only:
    the harness then tears the stack down in order instead of every process dying at once.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        log_dir: Path,
    ) -> None:
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        # Append: a stack may start the same component more than once in a run.
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self._popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self._popen.pid

    @property
    def log_paths(self) -> list[Path]:
        """The stdout and stderr log files."""
        return [self.stdout_path, self.stderr_path]

    def alive(self) -> bool:
        """True while the process runs (reaps it when it has exited)."""
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once exited, else None."""
        return self._popen.poll()

    def tail(self, lines: int = 40) -> str:
        """The end of its logs."""
        return log_tail(self.log_paths, lines)

    def pids(self) -> list[int]:
        """The process and its descendants that are alive now."""
        if not self.alive():
            return []
        try:
            proc = psutil.Process(self.pid)
            return [self.pid, *(c.pid for c in proc.children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it after ``grace_s``. Safe to call twice."""
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._popen.wait(timeout=10)
        # Grand-children that outlived the leader (the group id is the leader's pid).
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def wait_http_ok(
    url: str,
    proc: ManagedProcess,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited.

    Raises StackError with the log tail as soon as the process dies (no point waiting out the
    deadline for a process that is gone) or when the deadline passes.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if not proc.alive():
                raise StackError(
                    f"{what} exited with status {proc.returncode} before it was ready "
                    f"({url}).\n{proc.tail()}"
                )
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return time.monotonic() - start
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{what} not ready after {timeout_s:.0f} s ({url}: {last}).\n{proc.tail()}"
                )
            time.sleep(interval_s)
