"""The one process toolkit: free ports, child processes with logs to files, HTTP readiness,
stopping for sure, and the registry of what a killed run left behind.

Kept apart from the drivers so the local and compose drivers share one careful implementation
of the parts that are easy to get wrong: process groups, escalation from SIGTERM to SIGKILL,
zombies counted as gone, and failing fast with the log tail when a child dies while we wait for
it. The port and pid primitives live one floor down in ``serving.procs`` (TorchServe's launcher,
``serving/local.py``, needs them and imports nothing of the harness); they are handed on here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import httpx
import psutil

from serving.lifeline import exit_with_parent as exit_with_parent
from serving.lifeline import guard_group as guard_group
from serving.lifeline import release_group as release_group
from serving.procs import free_port as free_port
from serving.procs import pid_alive as pid_alive
from serving.procs import port_is_free as port_is_free
from serving.procs import wait_gone as wait_gone

from .base import StackError

logger = logging.getLogger("harness")


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
    the harness then tears the stack down in order instead of every process dying at once. Its
    group is on the lifeline (``serving.lifeline``): stopped within ``GRACE_S`` + a moment if
    the harness dies without stopping it (SIGKILL); the registry below is the second line.
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
        # Its own session escapes a Ctrl-C, and so a SIGKILL of the harness: the lifeline's
        # watchdog stops the group if this process dies without stopping it (serving.lifeline).
        guard_group(self.pid)

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
        release_group(self.pid)

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


# ---- what a killed run left behind ---------------------------------------------------------
#
# A stack's processes run in their own sessions (see ManagedProcess), so a harness killed with
# SIGKILL (or by the OOM killer) leaves them running. Each run registers itself here while its
# stack may be up: a file naming the harness process (pid + start time) and the run folder,
# whose ``logs/stack-processes.json`` lists every process the stack started (pid + start time).
# The registration is removed once the stack is down; one that outlives its harness marks a
# run that never cleaned up, and the next run stops what it left (``stop_leftovers``).
# The load engine keeps its own record next to it (``LOAD_PIDS_FILE``: the Locust master, local
# workers and their generator processes); each record has one writer, so neither overwrites the
# other's entries.

PIDS_FILE = "stack-processes.json"
LOAD_PIDS_FILE = "load-processes.json"
RECORD_FILES = (PIDS_FILE, LOAD_PIDS_FILE)
STATE_DIR_ENV = "SIGNFLOW_HARNESS_STATE_DIR"
LEFTOVER_STOP_GRACE_S = 5.0
# psutil's create_time has 10 ms resolution: two processes with the same pid started within
# it are not told apart, which a recycled pid cannot achieve (the pid space wraps far slower).
SAME_START_S = 0.01


def state_dir() -> Path:
    """Where runs register: ``$SIGNFLOW_HARNESS_STATE_DIR``, else
    ``$XDG_STATE_HOME/signflow-harness/runs`` (``~/.local/state/...``)."""
    explicit = os.environ.get(STATE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "signflow-harness" / "runs"


class ProcessIdentity(TypedDict):
    """A process as recorded on disk: pid, start time (s since the epoch, psutil's) and
    command line; pid + start time tell it from a later process that reuses the pid."""

    pid: int
    create_time: float
    cmdline: list[str]


class SurvivingProcess(TypedDict):
    """A recorded stack process that still runs (``surviving_processes``)."""

    component: str  # "backend", "torchserve", "torchserve-2"...
    pid: int
    name: str


def _identity(proc: psutil.Process) -> ProcessIdentity:
    return {"pid": proc.pid, "create_time": proc.create_time(), "cmdline": proc.cmdline()}


def _same_process(entry: Mapping[str, Any], cmdline: bool = False) -> psutil.Process | None:
    """The live process an identity entry names, or None (gone, zombie or pid reused).

    ``entry`` is a :class:`ProcessIdentity` as read back from JSON, so unchecked: a missing
    or malformed field means None, like a process that is gone.

    Identity is pid + start time; ``cmdline`` also compares the command line, for processes
    that never exec (the harness itself): a stack process may be recorded between ``nice``
    and the exec of what it runs, which keeps pid and start time but not the command line.
    """
    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry["create_time"])) >= SAME_START_S:
            return None
        if cmdline and proc.cmdline() != list(entry["cmdline"]):
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


class RunRegistration:
    """Context manager: registers the current harness process and ``run_dir`` while a stack
    may be running; the registration is removed on exit (whatever happened inside)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        me = psutil.Process()
        self.path = state_dir() / f"run-{me.pid}-{int(me.create_time() * 1000)}.json"
        self._doc = {"owner": _identity(me), "run_dir": str(self.run_dir)}
        self._written = False

    def __enter__(self) -> RunRegistration:
        self._written = self._write()
        return self

    def _write(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._doc, indent=1))
            tmp.replace(self.path)
        except OSError as exc:  # a read-only home must not stop a run; it only loses this
            logger.warning(
                "warning: cannot register the run in %s (%s); if this harness is killed, the "
                "next run will not find what it left running (set %s to a writable folder)",
                self.path.parent,
                exc,
                STATE_DIR_ENV,
            )
            return False
        return True

    def note(self, compose_project: str | None) -> None:
        """Add what the stack runs outside this machine's process table: a compose project
        (containers are not in the process record; a later run names them, see Leftover)."""
        if compose_project and self._written:
            self._doc["compose_project"] = compose_project
            self._written = self._write()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


class ProcessRecord:
    """Every process a stack ran, per component, persisted as JSON (``PIDS_FILE``) when it
    grows: ``{component: [{"pid", "create_time", "cmdline"}]}``. A test or a person checks after
    a run that none survived; the next run stops what a killed one left (``find_leftovers``)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: dict[str, dict[int, ProcessIdentity]] = {}
        self._lock = threading.Lock()

    def add(self, component: str, pids: list[int]) -> None:
        """Record ``pids`` (alive now) under ``component``; known pids are skipped."""
        with self._lock:
            known = self._seen.setdefault(component, {})
            new = [p for p in pids if p not in known]
            for pid in new:
                with contextlib.suppress(psutil.Error):
                    known[pid] = _identity(psutil.Process(pid))
            if new:
                doc = {c: [d[p] for p in sorted(d)] for c, d in self._seen.items()}
                tmp = self._path.with_suffix(".tmp")
                tmp.write_text(json.dumps(doc, indent=1))
                tmp.replace(self._path)


def _surviving(record: Path) -> list[tuple[str, psutil.Process]]:
    doc = json.loads(Path(record).read_text())
    alive: list[tuple[str, psutil.Process]] = []
    for component, entries in doc.items():
        for entry in entries:
            proc = _same_process(entry)
            if proc is not None:
                alive.append((component, proc))
    return alive


def surviving_processes(record: Path) -> list[SurvivingProcess]:
    """Processes listed in a ``stack-processes.json`` record that still run:
    ``[{"component", "pid", "name"}]``.

    A pid counts as the same process only when its start time matches (psutil's 10 ms
    resolution), so a pid reused by an unrelated process is never reported.
    """
    out: list[SurvivingProcess] = []
    for component, proc in _surviving(record):
        with contextlib.suppress(psutil.Error):
            out.append(SurvivingProcess(component=component, pid=proc.pid, name=proc.name()))
    return out


@dataclass
class Leftover:
    """What one dead run left: its run folder and the live, verified processes of its stack."""

    registration: Path
    run_dir: Path
    owner_pid: int
    processes: list[tuple[str, psutil.Process]] = field(default_factory=list)
    compose_project: str | None = None

    def describe(self) -> str:
        """One line for the user: the run and each process (component, pid, name); for a
        compose run, the project and how to remove it (containers are not stopped here: a
        project name may be the user's own, reused by a live project)."""
        names = []
        for component, proc in self.processes:
            try:
                names.append(f"{component} pid {proc.pid} ({proc.name()})")
            except psutil.Error:
                names.append(f"{component} pid {proc.pid}")
        what = ", ".join(names) if names else "no process still running"
        if self.compose_project:
            what += (
                f"; its compose project {self.compose_project} may still run: remove it with "
                f"`docker compose -p {self.compose_project} down -v` (docker-compose on v1)"
            )
        return f"run {self.run_dir} (harness pid {self.owner_pid}, gone): {what}"


def find_leftovers() -> list[Leftover]:
    """Runs registered by a harness process that is gone, with their still-running processes.

    Runs whose harness still runs (a concurrent run) are never touched. A registration that
    cannot be read is reported with no processes (and removed by ``stop_leftovers``).
    """
    root = state_dir()
    found: list[Leftover] = []
    for path in sorted(root.glob("run-*.json")) if root.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
            owner = doc["owner"]
            run_dir = Path(doc["run_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            found.append(Leftover(path, Path("?"), -1))
            continue
        if _same_process(owner, cmdline=True) is not None:
            continue  # its harness still runs: not a leftover
        procs: list[tuple[str, psutil.Process]] = []
        for name in RECORD_FILES:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                procs += _surviving(run_dir / "logs" / name)
        project = doc.get("compose_project")
        found.append(
            Leftover(
                path,
                run_dir,
                int(owner.get("pid", -1)),
                procs,
                str(project) if project else None,
            )
        )
    return found


def stop_leftovers(leftovers: Sequence[Leftover], grace_s: float = LEFTOVER_STOP_GRACE_S) -> int:
    """SIGTERM every verified leftover process and its descendants, SIGKILL what is left
    after ``grace_s``; removes the registrations. Returns how many processes were stopped."""
    targets: dict[int, psutil.Process] = {}
    for left in leftovers:
        # The Process objects were verified (pid + start time) when found; psutil refuses to
        # signal one whose pid was reused since (it checks the start time again).
        for _, proc in left.processes:
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    targets[p.pid] = p
            except psutil.Error:
                continue
    for p in targets.values():
        with contextlib.suppress(psutil.Error):
            if p.is_running():  # False (and no signal) when the pid was reused meanwhile
                p.terminate()
    _, alive = psutil.wait_procs(list(targets.values()), timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5.0)
    for left in leftovers:
        with contextlib.suppress(OSError):
            left.registration.unlink()
    return len(targets)


def spawn_worker(
    warm: Callable[[], object], initializer: Callable[[], None] = exit_with_parent
) -> ProcessPoolExecutor:
    """A one-process pool for work kept off the generator's process (the rollout judge, the
    abort-on-fail check), started before the load: spawned (never fork a process with live
    threads), ``initializer`` run in it (default: gone within a second of a SIGKILLed
    harness, whose process group it shares), ``warm`` run once so its imports are done
    before t=0. The caller shuts it down."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=initializer)
    pool.submit(warm).result(timeout=120)
    return pool
