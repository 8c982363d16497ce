"""The harness's locustfile: Locust as the control plane of a distributed load run.

Loaded ONLY by Locust processes (``locust -f`` on the master and on every worker): importing it
imports locust, which monkeypatches the whole process with gevent. The harness's own process
and pytest's never import it.

- Master (``--master``, started by harness.load.distributed.coordinator): reads the RunPlan
  (env ``HARNESS_LOCUST_PLAN``), waits for the planned number of workers, gives each an explicit
  block of sessions (custom message, not Locust's user dispatcher), reports to the harness on
  the events pipe (env ``HARNESS_LOCUST_EVENTS_FD``), forwards the harness's ``go``/``stop``/
  ``quit`` commands (env ``HARNESS_LOCUST_COMMANDS_FD``), relays ticks, writes each worker's
  final rows to the plan's ``results_dir`` and reports workers that go missing (heartbeat).
- Worker (``--worker``, local or remote): on its plan it starts the data plane, the harness's
  generator in a plain process (harness.load.distributed.engine), and relays its lines.

Locust's own users are not used: one idle User class exists because Locust requires one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
import msgpack
import psutil
from gevent.fileobject import FileObjectPosix
from locust import User, constant, events, task
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from harness.load.distributed.messages import (
    EV_CONNECTED,
    EV_DONE,
    EV_ERROR,
    EV_FAILED,
    EV_MASTER,
    EV_MISSING,
    EV_READY,
    EV_TICK,
    MSG_DONE,
    MSG_FAILED,
    MSG_PLAN,
    MSG_PREPARED,
    MSG_START,
    MSG_STOP,
    MSG_TICK,
    RunPlan,
    WorkerDone,
)

WATCH_EVERY_S = 0.25
ENGINE_STOP_GRACE_S = 10.0


class HarnessIdle(User):  # type: ignore[misc]  # locust is untyped
    """Locust requires a User class; the load itself is the engine's, not Locust users'."""

    wait_time = constant(3600)

    @task  # type: ignore[untyped-decorator]
    def idle(self) -> None:
        """Nothing: the data plane is harness.load.distributed.engine."""


class _Master:
    def __init__(self, environment: Any) -> None:
        self.env = environment
        self.runner: MasterRunner = environment.runner
        plan_doc = json.loads(Path(os.environ["HARNESS_LOCUST_PLAN"]).read_text())
        self.plan = RunPlan.from_dict(plan_doc)
        self.results = Path(self.plan.results_dir)
        self.events_out = os.fdopen(int(os.environ["HARNESS_LOCUST_EVENTS_FD"]), "w", buffering=1)
        self.commands_fd = int(os.environ["HARNESS_LOCUST_COMMANDS_FD"])
        self.index_of: dict[str, int] = {}
        self.prepared: dict[int, dict[str, Any]] = {}
        self.missing: set[str] = set()
        self.finished: set[int] = set()
        self.messages = 0
        self.per_worker: dict[int, list[int]] = {}  # index -> [messages, bytes]
        self.message_bytes = 0
        self.handler_cpu_s = 0.0
        self.frames_written = 0
        for kind, fn in (
            (MSG_PREPARED, self.on_prepared),
            (MSG_TICK, self.on_tick),
            (MSG_DONE, self.on_done),
            (MSG_FAILED, self.on_failed),
        ):
            self.runner.register_message(kind, fn)
        gevent.spawn(self.orchestrate)
        gevent.spawn(self.commands)

    # --- events to the harness --------------------------------------------------------------
    def emit(self, ev: str, **fields: Any) -> None:
        self.events_out.write(json.dumps({"ev": ev, **fields}, separators=(",", ":")) + "\n")

    def _count(self, data: Any) -> None:
        size = len(msgpack.packb(data, use_bin_type=True))
        self.messages += 1
        self.message_bytes += size
        per = self.per_worker.setdefault(
            int(data.get("index", data.get("done", {}).get("index", -1))), [0, 0]
        )
        per[0] += 1
        per[1] += size

    # --- set-up -------------------------------------------------------------------------
    def orchestrate(self) -> None:
        want = self.plan.workers
        deadline = time.monotonic() + self.plan.worker_timeout_s
        seen = -1
        while True:
            ready = [c.id for c in self.runner.clients.all if c.state != STATE_MISSING]
            if len(ready) != seen:
                seen = len(ready)
                self.emit(EV_CONNECTED, connected=seen, expected=want)
            if len(ready) >= want:
                break
            if time.monotonic() > deadline:
                self.emit(
                    EV_ERROR,
                    message=f"only {len(ready)} of {want} Locust workers connected within "
                    f"worker_timeout_s {self.plan.worker_timeout_s:g} s",
                )
                return
            gevent.sleep(0.1)
        # Connect order: the first `want` workers get the sessions; a surplus one idles.
        ready.sort(key=lambda cid: self.runner.worker_indexes.get(cid, 1 << 30))
        for plan, cid in zip(self.plan.split(), ready[:want], strict=True):
            self.index_of[cid] = plan.index
            self.runner.send_message(MSG_PLAN, plan.to_dict(), client_id=cid)
        while len(self.prepared) < want:
            if time.monotonic() > deadline:
                missing = sorted(set(range(want)) - set(self.prepared))
                self.emit(
                    EV_ERROR,
                    message=f"Locust workers {missing} did not prepare their sessions within "
                    f"worker_timeout_s {self.plan.worker_timeout_s:g} s (see their logs)",
                )
                return
            gevent.sleep(0.05)
        self.emit(EV_READY, workers=[self.prepared[i] for i in range(want)])
        gevent.spawn(self.watch)

    def watch(self) -> None:
        """Workers that stop heartbeating (Locust marks them missing or drops them)."""
        while True:
            for cid, index in self.index_of.items():
                if cid in self.missing or index in self.finished:
                    continue
                node = self.runner.clients.get(cid)
                if node is None or node.state == STATE_MISSING:
                    self.missing.add(cid)
                    self.emit(EV_MISSING, index=index)
            gevent.sleep(WATCH_EVERY_S)

    # --- harness commands -----------------------------------------------------------------
    def commands(self) -> None:
        pipe = FileObjectPosix(self.commands_fd, "rb")
        for line in pipe:
            cmd = json.loads(line)
            if "go" in cmd:
                for cid in self.index_of:
                    self.runner.send_message(MSG_START, {"t0": cmd["go"]}, client_id=cid)
            elif cmd.get("stop"):
                for cid in self.index_of:
                    self.runner.send_message(MSG_STOP, {}, client_id=cid)
            elif cmd.get("quit"):
                break
        # quit, or end of input (the harness is gone): end everything.
        self.emit(
            EV_MASTER,
            messages=self.messages,
            message_bytes=self.message_bytes,
            handler_cpu_s=self.handler_cpu_s,
            frames_written=self.frames_written,
            per_worker={str(k): v for k, v in self.per_worker.items()},
        )
        if getattr(self.env, "web_ui", None) is not None:
            self.env.web_ui.stop()
        self.runner.quit()

    # --- worker messages -------------------------------------------------------------------
    def on_prepared(self, environment: Any, msg: Any, **_: Any) -> None:
        c0 = time.process_time()
        self._count(msg.data)
        self.prepared[int(msg.data["index"])] = {**msg.data, "client_id": msg.node_id}
        self.handler_cpu_s += time.process_time() - c0

    def on_tick(self, environment: Any, msg: Any, **_: Any) -> None:
        c0 = time.process_time()
        self._count(msg.data)
        self.emit(EV_TICK, **msg.data)
        self.handler_cpu_s += time.process_time() - c0

    def on_done(self, environment: Any, msg: Any, **_: Any) -> None:
        c0 = time.process_time()
        self._count(msg.data)
        done = msg.data["done"]
        index = int(done["index"])
        rows: bytes = msg.data["frames"]
        path = self.results / f"worker-{index}.frames"
        self.results.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rows)
        self.finished.add(index)
        self.frames_written += len(rows)
        self.emit(EV_DONE, done=done, frames_path=str(path), frame_bytes=len(rows))
        self.handler_cpu_s += time.process_time() - c0

    def on_failed(self, environment: Any, msg: Any, **_: Any) -> None:
        self._count(msg.data)
        self.finished.add(int(msg.data["index"]))
        self.emit(EV_FAILED, **msg.data)


class _Worker:
    def __init__(self, environment: Any) -> None:
        self.env = environment
        self.runner: WorkerRunner = environment.runner
        self.engine: subprocess.Popen[bytes] | None = None
        self.index = -1
        self.out: Path | None = None
        self.proc = psutil.Process()
        self.cpu0 = (0.0, 0.0)
        for kind, fn in (
            (MSG_PLAN, self.on_plan),
            (MSG_START, self.on_start),
            (MSG_STOP, self.on_stop),
        ):
            self.runner.register_message(kind, fn)
        environment.events.quitting.add_listener(self.on_quitting)

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _send_line(self, doc: dict[str, Any]) -> None:
        if self.engine is not None and self.engine.stdin is not None:
            try:
                self.engine.stdin.write(json.dumps(doc).encode() + b"\n")
                self.engine.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def on_plan(self, environment: Any, msg: Any, **_: Any) -> None:
        if self.engine is not None:
            return  # one plan per worker process
        self.index = int(msg.data["index"])
        self.out = Path(tempfile.mkdtemp(prefix=f"harness-worker-{self.index}-"))
        # A plain interpreter (not this monkeypatched one) runs the generator.
        self.engine = subprocess.Popen(
            [sys.executable, "-m", "harness.load.distributed.engine", "--out", str(self.out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._send_line({"plan": msg.data})
        gevent.spawn(self.relay)

    def on_start(self, environment: Any, msg: Any, **_: Any) -> None:
        self.cpu0 = (self._cpu(), time.perf_counter())
        self._send_line({"start": msg.data["t0"]})

    def on_stop(self, environment: Any, msg: Any, **_: Any) -> None:
        self._send_line({"stop": True})

    def relay(self) -> None:
        assert self.engine is not None and self.engine.stdout is not None
        done = False
        for line in self.engine.stdout:
            ev = json.loads(line)
            kind = ev.pop("ev")
            if kind == "prepared":
                self.runner.send_message(
                    MSG_PREPARED,
                    {"index": self.index, "host": socket.gethostname(), "pid": os.getpid()},
                )
            elif kind == "tick":
                self.runner.send_message(MSG_TICK, ev)
            elif kind == "done":
                self.send_done(Path(ev["dir"]), bool(ev["interrupted"]))
                done = True
        rc = self.engine.wait()
        if not done:
            self.runner.send_message(
                MSG_FAILED,
                {"index": self.index, "error": f"its load engine exited with code {rc}"},
            )

    def send_done(self, out: Path, interrupted: bool) -> None:
        doc = json.loads((out / "result.json").read_text())
        frames_path = out / "frames.bin"
        rows = frames_path.read_bytes() if frames_path.exists() else b""
        cpu0, wall0 = self.cpu0
        wall = time.perf_counter() - wall0
        scalars = doc["result"]
        done = WorkerDone(
            index=self.index,
            host=socket.gethostname(),
            pid=os.getpid(),
            labels=doc["labels"],
            result=scalars,
            engine_cpu_percent=None if scalars is None else scalars["generator_cpu_percent"],
            locust_cpu_percent=100.0 * (self._cpu() - cpu0) / wall if wall0 and wall > 0 else None,
            interrupted=interrupted,
        )
        self.runner.send_message(MSG_DONE, {"done": done.to_dict(), "frames": rows})
        shutil.rmtree(out, ignore_errors=True)

    def on_quitting(self, **_: Any) -> None:
        engine = self.engine
        if engine is None or engine.poll() is not None:
            return
        if engine.stdin is not None:
            engine.stdin.close()  # end of input: the engine cancels and exits
        try:
            engine.wait(timeout=ENGINE_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()
        if self.out is not None:
            shutil.rmtree(self.out, ignore_errors=True)


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _Master(environment)
    elif isinstance(environment.runner, WorkerRunner):
        _Worker(environment)
