"""ProcessCollector: CPU (% of one core), RSS (MB), open file descriptors and threads per stack
component, plus the harness (the leak gates fit their slopes: harness/analysis/drift.py).

The pids are re-queried every window (a killed and restarted TorchServe has new ones) and
each pid's descendants are included (TorchServe's Python workers are children of Java). The
reading runs in a worker thread: scanning /proc takes tens of ms, which on the event loop
would delay the generator's sends. CPU
is the delta of user+system CPU time over the window, so short-lived workers are counted; a
process first seen mid-run counts from its creation when it was born in that window.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

HARNESS = "harness"


class Reading(NamedTuple):
    """One component's window: CPU seconds in it, RSS bytes, processes, open fds, threads."""

    cpu_s: float
    rss_bytes: float
    processes: int
    fds: int
    threads: int


class ProcessCollector:
    """Samples psutil per component; series: t, cpu_percent{comp}, rss_mb{comp}, fds{comp},
    threads{comp}, processes{comp}."""

    name = "process"

    def __init__(self, pids: Callable[[], dict[str, list[int]]], include_self: bool = True) -> None:
        self._pids = pids
        self._include_self = include_self
        self._procs: dict[int, psutil.Process] = {}
        self._last_cpu: dict[tuple[int, float], float] = {}
        self._last_wall = time.time()
        self._t: list[float] = []
        self._cpu: dict[str, list[float | None]] = {}
        self._rss: dict[str, list[float | None]] = {}
        self._count: dict[str, list[int | None]] = {}
        self._fds: dict[str, list[int | None]] = {}
        self._threads: dict[str, list[int | None]] = {}
        self.errors = 0
        self.last_error: str | None = None

    def _components(self) -> dict[str, list[int]]:
        comps = {k: list(v) for k, v in self._pids().items()}
        if self._include_self:
            comps[HARNESS] = [os.getpid()]
        return comps

    @staticmethod
    def _children_map() -> dict[int, list[int]]:
        # One scan of the process table per window (psutil's children() rescans it per call).
        children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid is not None:
                children.setdefault(ppid, []).append(proc.pid)
        return children

    def _expand(
        self, comp: str, pids: list[int], children: dict[int, list[int]]
    ) -> list[psutil.Process]:
        wanted: list[int] = []
        seen: set[int] = set()
        stack = list(pids)
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            wanted.append(pid)
            # The harness's children ARE the stack: count only its own process.
            if comp != HARNESS:
                stack.extend(children.get(pid, ()))
        out: list[psutil.Process] = []
        for pid in wanted:
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                except psutil.Error:
                    continue  # gone between the query and now: nothing to sample
                self._procs[pid] = proc
            out.append(proc)
        return out

    def _read(self, comps: dict[str, list[int]]) -> dict[str, Reading]:
        """Per component: its window's reading; updates the CPU baseline."""
        wall = time.time()
        seen: dict[tuple[int, float], float] = {}
        result: dict[str, Reading] = {}
        children = self._children_map()
        for comp, pids in comps.items():
            cpu_s = 0.0
            rss = 0.0
            fds = threads = n = 0
            for proc in self._expand(comp, pids, children):
                try:
                    with proc.oneshot():
                        key = (proc.pid, proc.create_time())
                        times = proc.cpu_times()
                        total = times.user + times.system
                        rss += proc.memory_info().rss
                        fds += proc.num_fds()
                        threads += proc.num_threads()
                except psutil.Error:
                    self._procs.pop(proc.pid, None)
                    continue
                n += 1
                prev = self._last_cpu.get(key)
                if prev is not None:
                    cpu_s += max(total - prev, 0.0)
                elif key[1] >= self._last_wall:
                    cpu_s += total  # born during this window: all its CPU is this window's
                # (a process first seen but older than the window is only a baseline now)
                seen[key] = total
            result[comp] = Reading(cpu_s, rss, n, fds, threads)
        self._last_cpu = seen
        self._last_wall = wall
        live = {pid for pid, _ in seen}
        self._procs = {pid: p for pid, p in self._procs.items() if pid in live}
        return result

    def _sample_now(self) -> dict[str, Reading]:
        return self._read(self._components())

    async def baseline(self) -> None:
        """Prime the CPU-time baseline of every process."""
        try:
            await asyncio.to_thread(self._sample_now)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    async def sample(self, t: float, dt: float) -> None:
        """Record the window [t, t + dt)."""
        idx = len(self._t)
        self._t.append(t)
        try:
            readings = await asyncio.to_thread(self._sample_now)
        except Exception as exc:  # e.g. the stack's pid query failed: a gap, not a crash
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            readings = {}
        stores = (self._cpu, self._rss, self._count, self._fds, self._threads)
        for comp, r in readings.items():
            for store in stores:
                store.setdefault(comp, [None] * idx)
            n = r.processes
            self._cpu[comp].append(100.0 * r.cpu_s / dt if dt > 0 and n else None)
            self._rss[comp].append(r.rss_bytes / 2**20 if n else None)
            self._count[comp].append(n)
            self._fds[comp].append(r.fds if n else None)
            self._threads[comp].append(r.threads if n else None)
        for store in stores:
            for values in store.values():
                if len(values) <= idx:
                    values.append(None)

    def series(self) -> dict[str, Any]:
        """``{"t", "cpu_percent": {comp: [...]}, "rss_mb", "fds", "threads", "processes": {...},
        "errors"}`` (fds: open file descriptors, threads: OS threads, both summed).

        None where a component had no live process in that window (never a fake 0).
        """
        return {
            "t": list(self._t),
            "cpu_percent": {k: list(v) for k, v in self._cpu.items()},
            "rss_mb": {k: list(v) for k, v in self._rss.items()},
            "processes": {k: list(v) for k, v in self._count.items()},
            "fds": {k: list(v) for k, v in self._fds.items()},
            "threads": {k: list(v) for k, v in self._threads.items()},
            "errors": self.errors,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        """Nothing to release."""
