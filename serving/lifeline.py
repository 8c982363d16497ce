"""A lifeline for the process groups a process starts: they stop when it dies, however it dies.

The stack's processes run in sessions of their own (a Ctrl-C at the terminal must reach the
harness only, which then stops them in order), so nothing stops them when the harness is
killed with SIGKILL (a CI job's timeout, the OOM killer): the backend, TorchServe's Java
frontend and its Python workers kept running (~760 MB). Linux's parent-death signal
(``prctl(PR_SET_PDEATHSIG)``) cannot cover them: ``torchserve --start`` daemonizes (Java's
parent is the launcher, which exits at once), TorchServe's workers are Java's children, and the
signal fires when the spawning *thread* exits, not the process.

So each owner process holds one end of a pipe whose other end is the stdin of one small
watchdog process (this file run as a script: standard library only, ``python -I -S``, about
10 MB). The owner tells it which process groups to guard (``+<pgid>``) and which it stopped
itself (``-<pgid>``). When the owner dies, the kernel closes its end, the watchdog reads EOF
and stops every group still guarded: SIGTERM, then SIGKILL after ``grace_s`` for what is left
(a whole group: Java and its workers alike). An owner that exits after stopping its groups
leaves nothing to stop. The watchdog runs in its own session, so the Ctrl-C that reaches the
owner's terminal group does not reach it. The registry of what a killed run left
(``harness.stack.procs``) stays as the second line, for a watchdog that was killed too.

Linux and macOS (POSIX pipes and process groups); the write end is not inherited by children
(``os.pipe`` gives non-inheritable descriptors, and ``subprocess`` closes the rest), so only the
owner's death closes it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

__all__ = [
    "GRACE_S",
    "Lifeline",
    "exit_with_parent",
    "group_alive",
    "guard_group",
    "lifeline",
    "release_group",
    "stop_groups",
]

# SIGTERM first (Java runs its shutdown hooks, the backend closes its sockets), SIGKILL after.
GRACE_S = 3.0
_POLL_S = 0.05


class Lifeline:
    """This process's watchdog (started on the first ``guard``); thread-safe.

    ``guard(pgid)``: stop that process group if this process dies first; ``release(pgid)``:
    this process stopped it (or will) itself. ``watchdog_pid``: the watchdog's pid (None
    before the first guard, or when it could not start: then groups are unguarded, the
    registry alone covers them, and a warning went to stderr once).
    """

    def __init__(self, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._write_fd: int | None = None
        self._owner_pid: int | None = None
        self._failed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._guarded: set[int] = set()
        self.watchdog_pid: int | None = None

    def guard(self, pgid: int) -> None:
        """Have the watchdog stop process group ``pgid`` when this process dies."""
        self._guarded.add(int(pgid))
        self._send(f"+{int(pgid)}\n")

    def release(self, pgid: int) -> None:
        """Process group ``pgid`` is stopped by this process: the watchdog forgets it."""
        self._guarded.discard(int(pgid))
        self._send(f"-{int(pgid)}\n")

    def close(self, wait_s: float = 2.0) -> None:
        """This process exits: let the watchdog go (at interpreter exit, via atexit).

        With nothing guarded, wait up to ``wait_s`` for it to exit, so that no process of ours
        outlives a clean exit even for a moment; with groups still guarded (an owner that did
        not stop them), it stops them as on a crash, and this process does not wait for that.
        """
        with self._lock:
            fd, self._write_fd = self._write_fd, None
            proc = self._proc if self._owner_pid == os.getpid() else None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.close(fd)
        if proc is not None and not self._guarded:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)

    def _send(self, line: str) -> None:
        with self._lock:
            if self._owner_pid != os.getpid():  # first use, or a forked child: its own line
                self._write_fd = None
                if self._owner_pid is None:
                    atexit.register(self.close)
                self._start()
            if self._write_fd is None:
                return
            try:
                os.write(self._write_fd, line.encode())
            except OSError:  # the watchdog died: the registry is the line left
                self._write_fd = None

    def _start(self) -> None:
        self._owner_pid = os.getpid()
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(self.grace_s)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(write_fd)
            if not self._failed:
                print(f"warning: no lifeline watchdog ({exc})", file=sys.stderr)
            self._failed = True
            return
        finally:
            os.close(read_fd)
        self._write_fd = write_fd
        self.watchdog_pid = proc.pid
        self._proc = proc  # never waited for: it outlives this process by design


_LIFELINE = Lifeline()


def lifeline() -> Lifeline:
    """The process-wide lifeline."""
    return _LIFELINE


def guard_group(pgid: int) -> None:
    """Stop process group ``pgid`` (SIGTERM, SIGKILL after ``GRACE_S``) if this process dies."""
    _LIFELINE.guard(pgid)


def release_group(pgid: int) -> None:
    """This process stops ``pgid`` itself: no longer the watchdog's."""
    _LIFELINE.release(pgid)


def exit_with_parent(poll_s: float = 0.5) -> None:
    """Exit this process (``os._exit(0)``) within ``poll_s`` of its parent's death.

    For children that share their parent's process group, so no lifeline can stop them without
    stopping the user's shell job: the worker processes of a ``ProcessPoolExecutor`` (pass it as
    the ``initializer``), which otherwise outlive a SIGKILLed parent, blocked on their queue. A
    daemon thread polls the parent pid: a dead parent's children are re-parented (to init or a
    subreaper), so the pid changes. Polling, not ``PR_SET_PDEATHSIG``: that signal follows the
    *thread* that spawned the child, and a pool spawns from whichever thread submits first.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# ---- the watchdog (this file run as a script) ---------------------------------------------


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member (one we may not signal counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_groups(groups: set[int], sig: int) -> None:
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, sig)


def stop_groups(groups: set[int], grace_s: float) -> None:
    """SIGTERM every group, wait up to ``grace_s`` for all to be empty, SIGKILL the rest."""
    _signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = {g for g in groups if group_alive(g)}
    while left and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        left = {g for g in left if group_alive(g)}
    _signal_groups(left, signal.SIGKILL)


def _watch(grace_s: float) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    buffered = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break  # the owner is gone
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                if line.startswith(b"+"):
                    groups.add(int(line[1:]))
                elif line.startswith(b"-"):
                    groups.discard(int(line[1:]))
    stop_groups(groups, grace_s)


if __name__ == "__main__":
    _watch(float(sys.argv[1]) if len(sys.argv) > 1 else GRACE_S)
