"""The harness side of a distributed load run: owns the Locust master and the local workers.

:class:`DistributedLoad` has the LoadGenerator's interface (``prepare``/``run``/``live``/
``partial``), so the runner treats both alike. It never imports locust: the master and the
local workers are subprocesses in their own sessions (a Ctrl-C at the terminal reaches the
harness only, which then stops them in order), stopped on every exit path by :meth:`close`.

Life of a run:

1. ``prepare()``: write the RunPlan, start the master (``locust --master`` with this package's
   locustfile, ZeroMQ port chosen free unless fixed) and ``workers`` local ``locust --worker``
   processes; wait until every expected worker (local + remote) connected and prepared its
   sessions (``worker_timeout_s``). A master that cannot bind its port or workers that never
   come raise :class:`DistributedLoadError` (a StackError: exit 3) with everything stopped.
2. ``run()`` (the runner has started the RunClock): send t0 as a wall-clock epoch; workers
   schedule from it. Per-second ticks feed ``live()``. The run ends when every worker reported
   "done" (or was lost: process exited, heartbeat missing, or silent past the planned end +
   ``worker_timeout_s``), never on a timer alone. The workers' rows are merged into one
   LoadResult (merge.py). Cancelled (Ctrl-C): workers are told to stop, their partial results
   are merged into ``partial``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

import harness.hdr as hdr
from harness.clock import RunClock
from harness.load.distributed.merge import (
    DistributedLoadResult,
    WorkerOutcome,
    merge_worker_results,
)
from harness.load.distributed.messages import (
    EV_CONNECTED,
    EV_DONE,
    EV_ERROR,
    EV_FAILED,
    EV_MASTER,
    EV_MISSING,
    EV_READY,
    EV_TICK,
    RunPlan,
    WorkerDone,
    WorkerTick,
    result_from_wire,
)
from harness.load.generator import END_GRACE_S, LiveStats, LoadConfig
from harness.load.recording import LoadResult
from harness.load.trace import load_trace_file
from harness.scenario.models import LocustSpec, TraceSpec
from harness.stack.base import StackError
from harness.stack.procs import (
    LOAD_PIDS_FILE,
    ProcessRecord,
    free_port,
    guard_group,
    release_group,
)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Sessions of a distributed run start here on the run clock (a native run: ~0.5 s): room for
# the "go" to reach every worker before the first sessions connect (CONNECT_LEAD_S earlier).
START_S = 1.0
STOP_GRACE_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DistributedLoadError(StackError):
    """The distributed load could not start (port taken, workers missing): exit 3."""


@dataclass
class WorkerLive:
    """One worker in the live view."""

    index: int
    name: str
    frames_per_s: float
    cpu_percent: float | None
    status: str


@dataclass
class DistributedLiveStats(LiveStats):
    """LiveStats plus workers connected/expected and each worker's rate."""

    workers_connected: int = 0
    workers_expected: int = 0
    workers: list[WorkerLive] | None = None

    def workers_line(self) -> str:
        """``workers 2/2: #0 1500/s, #1 1498/s`` (a lost worker shows its status)."""
        rates = ", ".join(
            f"#{w.index} {w.frames_per_s:.0f}/s" if w.status in ("running", "done")
            else f"#{w.index} {w.status.upper()}"
            for w in self.workers or []
        )  # fmt: skip
        return f"workers {self.workers_connected}/{self.workers_expected}: {rates}"


class _Child:
    """One Locust process: own session, output to a log file, stopped by its process group."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, fds: Sequence[int] = ()
    ) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=tuple(fds),
            )
        self.pid = self.popen.pid
        # Stopped by the lifeline's watchdog if the harness dies first (harness.stack.procs).
        guard_group(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 15) -> str:
        with contextlib.suppress(OSError):
            lines = self.log.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        return ""

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the group, SIGKILL after ``grace_s``; the group's stragglers too. Idempotent."""
        if self.popen.poll() is None:
            self._group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._group(signal.SIGKILL)
        release_group(self.pid)

    def _group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def trace_plan(trace_spec: TraceSpec) -> dict[str, Any]:
    """The scenario's TraceSpec as a plan entry: synthetic settings, or a file's frames (read
    here, so a remote worker needs no copy of the file). Raises TraceError (file)."""
    if trace_spec.file:
        return {"frames": load_trace_file(Path(trace_spec.file))}
    assert trace_spec.synthetic is not None  # exactly one of file / synthetic
    return {"synthetic": trace_spec.synthetic.model_dump(mode="json")}


class DistributedLoad:
    """A LoadConfig run by Locust workers; see the module docstring for the life of a run."""

    def __init__(
        self,
        config: LoadConfig,
        clock: RunClock,
        spec: LocustSpec,
        trace_spec: TraceSpec,
        run_dir: Path,
    ) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.spec = spec
        self.trace_spec = trace_spec
        self.dir = Path(run_dir) / "load-workers"
        self.log_dir = Path(run_dir) / "logs"
        self.local = spec.local_workers()
        self.expected = spec.total_workers()
        self.partial: LoadResult | None = None
        self.master: _Child | None = None
        self.workers: list[_Child] = []
        self.bind: tuple[str, int] | None = None
        self._events: asyncio.StreamReader | None = None
        self._commands: int | None = None
        self._connected = 0
        self._info: dict[int, dict[str, Any]] = {}
        self._ticks: dict[int, WorkerTick] = {}
        self._outcomes: dict[int, WorkerOutcome] = {}
        self._missing_at: dict[int, float] = {}
        self._master_stats: dict[str, Any] = {}
        self._master_cpu_percent: float | None = None
        self._master_proc: psutil.Process | None = None
        self._master_cpu: tuple[float, float] | None = None
        self._plans = self._plan().split()
        self._closed = False
        self._pending: asyncio.Future[bytes] | None = None
        # What this run started, for the next run if this harness is SIGKILLed (stack.procs).
        self._record: ProcessRecord | None = None

    # --- set-up ---------------------------------------------------------------------------
    def _plan(self) -> RunPlan:
        c = self.config
        return RunPlan(
            ws_url=c.ws_url,
            total_sessions=c.sessions,
            fps=c.fps,
            duration_s=c.duration_s,
            warmup_s=c.warmup_s,
            ramp_up_s=c.ramp_up_s,
            late_threshold_ms=c.late_threshold_ms,
            reply_timeout_s=c.reply_timeout_s,
            start_s=START_S,
            trace=trace_plan(self.trace_spec),
            workers=self.expected,
            worker_timeout_s=float(self.spec.worker_timeout_s),
            results_dir=str(self.dir),
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The workers and engines import the harness from wherever this process did.
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def prepare(self) -> None:
        """Start the master and the local workers, wait until every worker is ready."""
        try:
            await self._start()
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._record = ProcessRecord(self.log_dir / LOAD_PIDS_FILE)
        if self.config.sessions < self.expected:
            raise DistributedLoadError(
                f"{self.expected} Locust workers for {self.config.sessions} sessions"
            )
        plan_path = self.dir / "plan.json"
        plan_path.write_text(json.dumps(asdict(self._plan())))
        host = self.spec.master_bind.host
        port = int(self.spec.master_bind.port) or free_port()
        if host not in LOOPBACK:
            print(
                f"locust master: listening on {host}:{port} beyond this machine; ZeroMQ has no "
                "authentication, so open this port to the worker hosts only",
                file=sys.stderr,
            )
        self.bind = (host, port)
        ev_r, ev_w = os.pipe()
        cmd_r, cmd_w = os.pipe()
        env = self._env() | {
            "HARNESS_LOCUST_PLAN": str(plan_path),
            "HARNESS_LOCUST_EVENTS_FD": str(ev_w),
            "HARNESS_LOCUST_COMMANDS_FD": str(cmd_r),
        }
        argv = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master",
            "--master-bind-host", host, "--master-bind-port", str(port),
            "--expect-workers", str(self.expected),
            "--expect-workers-max-wait", str(math.ceil(self.spec.worker_timeout_s) + 30),
            "-u", "0", "-r", "1", "--only-summary", "--loglevel", "INFO",
        ]  # fmt: skip
        if self.spec.web:
            web = self.spec.web_bind
            argv += ["--autostart", "--web-host", web.host, "--web-port", str(web.port or 8089)]
        else:
            argv += ["--headless"]
        try:
            self.master = _Child(
                "locust-master", argv, env, self.log_dir / "locust-master.log", (ev_w, cmd_r)
            )
        finally:
            os.close(ev_w)
            os.close(cmd_r)
        self._commands = cmd_w
        self._record.add("locust-master", [self.master.pid])
        loop = asyncio.get_running_loop()
        self._events = asyncio.StreamReader(limit=64 * 1024 * 1024)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self._events),  # type: ignore[arg-type]
            os.fdopen(ev_r, "rb", buffering=0),
        )
        with contextlib.suppress(psutil.Error):
            self._master_proc = psutil.Process(self.master.pid)
        dial = "127.0.0.1" if host in ("0.0.0.0", "*", "", "::") else host
        worker_argv = worker_command(f"{dial}:{port}")
        for i in range(self.local):
            self.workers.append(
                _Child(f"locust-worker-{i}", worker_argv, self._env(),
                       self.log_dir / f"locust-worker-{i}.log")
            )  # fmt: skip
            self._record.add("locust-worker", [self.workers[-1].pid])
        deadline = time.monotonic() + float(self.spec.worker_timeout_s) + 30.0
        while True:
            for child in self.workers:
                if not child.alive():  # a local worker that cannot start: say why, now
                    raise DistributedLoadError(
                        f"local Locust worker {child.name} exited (code "
                        f"{child.popen.returncode}) before the run; its log ({child.log}):\n"
                        f"{child.tail()}"
                    )
            if time.monotonic() > deadline:
                raise DistributedLoadError(self._start_failure())
            ev = await self._next_event(0.5)
            if ev is None:
                if self.master is not None and self.master.alive():
                    await asyncio.sleep(0.05)
                    continue
                raise DistributedLoadError(self._start_failure())
            kind = ev["ev"]
            if kind == EV_CONNECTED:
                self._connected = int(ev["connected"])
            elif kind == EV_ERROR:
                raise DistributedLoadError(f"Locust master: {ev['message']}")
            elif kind == EV_READY:
                for w in ev["workers"]:
                    self._info[int(w["index"])] = w
                self._connected = self.expected
                break
        self._record_engines()

    def _record_engines(self) -> None:
        """The local workers' generator processes (each worker started its own on the plan),
        recorded too: one whose worker died would otherwise outlive a killed harness unseen."""
        assert self._record is not None
        for child in self.workers:
            with contextlib.suppress(psutil.Error):
                kids = psutil.Process(child.pid).children(recursive=True)
                self._record.add("load-engine", [k.pid for k in kids])

    def _start_failure(self) -> str:
        """Why the master ended (or never got ready), from its log."""
        assert self.master is not None
        tail = self.master.tail()
        host, port = self.bind or ("?", 0)
        if "Address already in use" in tail:
            return (
                f"Locust master could not bind {host}:{port} (address already in use): set "
                "workload.locust.master_bind.port to a free port, or 0 for any"
            )
        state = "exited" if not self.master.alive() else "did not get ready"
        return (
            f"Locust master {state} before its workers were ready "
            f"({self._connected} of {self.expected} connected); its log "
            f"({self.master.log}):\n{tail}"
        )

    async def _next_event(self, timeout: float) -> dict[str, Any] | None:
        """The master's next event; None at end of stream or timeout.

        One pending readline is kept across calls and awaited with asyncio.wait, not wait_for:
        on Python 3.11 wait_for can swallow a cancellation (Ctrl-C) that arrives as the line
        does, and the run would then go on to its planned end.
        """
        assert self._events is not None
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._events.readline())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return None
        fut, self._pending = self._pending, None
        line = fut.result()
        if not line:
            return None
        event: dict[str, Any] = json.loads(line)
        return event

    def _command(self, doc: dict[str, Any]) -> None:
        if self._commands is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._commands, (json.dumps(doc) + "\n").encode())

    # --- run ------------------------------------------------------------------------------
    async def run(self) -> LoadResult:
        """Send t0, collect every worker's outcome, merge; see the module docstring."""
        try:
            if not self.clock.started:
                self.clock.start()
            self._master_cpu = self._master_cpu_now()
            # t0 as a wall-clock epoch: the workers convert it once to their own clocks.
            self._command({"go": time.time() - self.clock.now()})
            planned_end = self.config.duration_s + self.config.reply_timeout_s + END_GRACE_S
            deadline = planned_end + float(self.spec.worker_timeout_s)
            try:
                await self._collect(deadline)
            except asyncio.CancelledError:
                # Ctrl-C: each worker keeps what it measured (as a native run does) and sends it.
                self._command({"stop": True})
                stop_by = self.clock.now() + self.config.reply_timeout_s + STOP_GRACE_S
                with contextlib.suppress(BaseException):
                    await self._collect(stop_by)
                    await self._quit_master()
                self.partial = self._merge(interrupted=True)
                raise
            await self._quit_master()
            merged = self._merge(interrupted=False)
            assert merged is not None
            return merged
        finally:
            self.close()

    async def _collect(self, deadline: float) -> None:
        """Read events until every worker has an outcome or the run clock passes ``deadline``."""
        while len(self._outcomes) < self.expected:
            self._check_local_workers()
            if len(self._outcomes) >= self.expected:
                break
            if self.clock.now() > deadline:
                for p in self._plans:
                    if p.index not in self._outcomes:
                        self._lost(p.index, "timeout", "never reported done within "
                                   f"worker_timeout_s {self.spec.worker_timeout_s:g} s after "
                                   "the planned end")  # fmt: skip
                break
            ev = await self._next_event(0.5)
            if ev is None:
                if self.master is not None and not self.master.alive():
                    for p in self._plans:
                        if p.index not in self._outcomes:
                            self._lost(p.index, "failed", "was cut off: the Locust master exited")
                else:
                    await asyncio.sleep(0.05)  # end of stream while the master exits: no spin
                continue
            self._handle(ev)

    def _handle(self, ev: dict[str, Any]) -> None:
        kind = ev.pop("ev")
        if kind == EV_TICK:
            tick = WorkerTick.from_dict(ev)
            self._ticks[tick.index] = tick
        elif kind == EV_DONE:
            done = WorkerDone.from_dict(ev["done"])
            path = Path(ev["frames_path"])
            rows = path.read_bytes()
            path.unlink(missing_ok=True)  # merged into the run's result; no second copy on disk
            result = None
            if done.result is not None:
                result = result_from_wire(done.result, done.labels, rows)
            if result is None:
                detail = "measured nothing (stopped before its warm-up ended)"
            else:
                detail = "interrupted" if done.interrupted else ""
            status = "done" if done.index not in self._missing_at else "missing"
            self._finish(done.index, status, result=result, done=done, detail=detail)
        elif kind == EV_FAILED:
            self._lost(int(ev["index"]), "failed", str(ev.get("error")))
        elif kind == EV_MISSING:
            index = int(ev["index"])
            self._missing_at[index] = self.clock.now()
            # A missing worker may come back; it is lost unless its "done" still arrives.
            self._lost(index, "missing", "went missing (no heartbeat for ~3 s)")
        elif kind == EV_MASTER:
            self._master_stats = ev
        elif kind == EV_CONNECTED:
            self._connected = int(ev["connected"])

    def _check_local_workers(self) -> None:
        """A local worker process that exited before its "done": lost at once (no need to wait
        for the heartbeat)."""
        by_pid = {int(i.get("pid", -1)): idx for idx, i in self._info.items()}
        for child in self.workers:
            if child.alive():
                continue
            index = by_pid.get(child.pid)
            if index is not None and index not in self._outcomes:
                self._lost(index, "exited", f"exited (code {child.popen.returncode}) mid-run")

    def _name(self, index: int) -> str:
        info = self._info.get(index, {})
        return f"{index} ({info.get('host', '?')} pid {info.get('pid', '?')})"

    def _lost(self, index: int, status: str, detail: str) -> None:
        """A worker without (or before) its figures; a later "done" still replaces this."""
        if index in self._outcomes:
            return
        self._finish(index, status, detail=detail)

    def _finish(
        self,
        index: int,
        status: str,
        result: LoadResult | None = None,
        done: WorkerDone | None = None,
        detail: str = "",
    ) -> None:
        plan = self._plans[index]
        info = self._info.get(index, {})
        self._outcomes[index] = WorkerOutcome(
            index=index,
            name=self._name(index),
            session_offset=plan.session_offset,
            sessions=plan.sessions,
            status=status,  # type: ignore[arg-type]
            result=result,
            host=(done.host if done else info.get("host")),
            engine_cpu_percent=done.engine_cpu_percent if done else None,
            locust_cpu_percent=done.locust_cpu_percent if done else None,
            detail=detail,
            missing_at_s=self._missing_at.get(index),
        )

    def _master_cpu_now(self) -> tuple[float, float] | None:
        proc = self._master_proc
        if proc is None:
            return None
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            return (t.user + t.system, time.perf_counter())
        return None

    async def _quit_master(self) -> None:
        """Take the master's CPU, tell it to quit and read its last event (its message counters),
        at most 3 s; it is stopped by close() anyway."""
        cpu = self._master_cpu_now()
        if cpu and self._master_cpu and cpu[1] > self._master_cpu[1]:
            wall = cpu[1] - self._master_cpu[1]
            self._master_cpu_percent = 100.0 * (cpu[0] - self._master_cpu[0]) / wall
        self._command({"quit": True})
        end = time.monotonic() + 3.0
        while not self._master_stats:
            ev = await self._next_event(max(end - time.monotonic(), 0.01))
            if ev is None:
                break
            self._handle(ev)

    def _merge(self, interrupted: bool) -> DistributedLoadResult | None:
        """One LoadResult from the outcomes (None: interrupted before the warm-up ended)."""
        for p in self._plans:
            if p.index not in self._outcomes:
                self._lost(p.index, "failed", "had not reported when the run was interrupted")
        ms = self._master_stats
        for key, (n, size) in (ms.get("per_worker") or {}).items():
            if int(key) in self._outcomes:
                self._outcomes[int(key)].messages = int(n)
                self._outcomes[int(key)].message_bytes = int(size)
        master: dict[str, Any] = {
            "bind": f"{self.bind[0]}:{self.bind[1]}" if self.bind else None,
            "messages": ms.get("messages"),
            "message_bytes": ms.get("message_bytes"),
            "handler_cpu_s": ms.get("handler_cpu_s"),
            "cpu_percent": self._master_cpu_percent,
        }
        c = self.config
        merged = merge_worker_results(
            list(self._outcomes.values()),
            total_sessions=c.sessions,
            fps=c.fps,
            duration_s=c.duration_s,
            warmup_s=c.warmup_s,
            ramp_up_s=c.ramp_up_s,
            start_s=START_S,
            late_threshold_ms=c.late_threshold_ms,
            reply_timeout_s=c.reply_timeout_s,
            master=master,
        )
        if interrupted and merged.duration_s <= c.warmup_s:
            return None
        return merged

    # --- teardown ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the master and every local worker (SIGTERM, then SIGKILL). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
        if self._commands is not None:
            self._command({"quit": True})
            with contextlib.suppress(OSError):
                os.close(self._commands)
            self._commands = None
        # Workers first: a worker whose master is gone would retry for minutes.
        for child in [*self.workers, *([self.master] if self.master else [])]:
            with contextlib.suppress(Exception):
                child.stop()

    # --- live -------------------------------------------------------------------------------
    def live(self) -> DistributedLiveStats:
        """Progress: summed rates, p95 over every worker's last tick, workers and their rates."""
        try:
            now = self.clock.now()
        except RuntimeError:
            now = 0.0
        hist = hdr.new_histogram(self.config.reply_timeout_s)
        for tick in self._ticks.values():
            with contextlib.suppress(Exception):
                hist.decode_and_add(tick.hist.encode("ascii"))
        p95 = hdr.latency_summary(hist)["p95"] if hist.get_total_count() else None
        workers = [
            WorkerLive(
                index=p.index,
                name=self._name(p.index),
                frames_per_s=self._ticks[p.index].frames_per_s if p.index in self._ticks else 0.0,
                cpu_percent=self._ticks[p.index].cpu_percent if p.index in self._ticks else None,
                status=self._outcomes[p.index].status if p.index in self._outcomes else "running",
            )
            for p in self._plans
        ]
        cpus = [w.cpu_percent for w in workers if w.cpu_percent is not None]
        return DistributedLiveStats(
            elapsed=now,
            remaining=max(self.config.duration_s - now, 0.0),
            frames_per_s=sum(w.frames_per_s for w in workers),
            p95_ms=p95,
            errors=sum(t.errors for t in self._ticks.values()),
            fallback_share=None,
            sessions_connected=sum(t.sessions_connected for t in self._ticks.values()),
            generator_cpu_percent=max(cpus) if cpus else None,
            workers_connected=self._connected
            - sum(1 for o in self._outcomes.values() if o.status != "done"),
            workers_expected=self.expected,
            workers=workers,
        )


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def worker_command(master: str) -> list[str]:
    """``locust --worker`` argv for the harness's locustfile, dialling ``HOST[:PORT]``
    (port 5557, Locust's default, when omitted). ValueError on a malformed address."""
    host, sep, port = master.rpartition(":")
    if not sep or "]" in port or _is_ipv6(master):  # "::1" is a host, not host ":" port "1"
        host, port = master, "5557"
    elif ":" in host and not host.startswith("["):
        raise ValueError(f"--master: an IPv6 address with a port is [ADDR]:PORT, got {master!r}")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--master must be HOST[:PORT], got {master!r}")
    return [
        sys.executable, "-m", "locust", "--worker", "-f", str(LOCUSTFILE),
        "--master-host", host, "--master-port", port, "--loglevel", "INFO",
    ]  # fmt: skip
