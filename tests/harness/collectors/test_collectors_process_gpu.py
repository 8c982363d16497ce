"""ProcessCollector on real processes (children included, pids re-queried); GpuCollector."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from harness.collectors import GpuCollector, ProcessCollector

# A parent that only sleeps, with a child that burns CPU: like Java and its Python workers.
PARENT = (
    "import subprocess, sys, time\n"
    "c = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
    "try:\n"
    "    time.sleep(60)\n"
    "finally:\n"
    "    c.kill()\n"
)


@pytest.fixture
def busy_tree() -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping parent process with one busy child; both stopped at teardown."""
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield proc
    finally:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        except psutil.Error:
            pass
        proc.kill()
        proc.wait(5)


async def test_process_collector_sees_children_cpu_and_rss(
    busy_tree: subprocess.Popen[bytes],
) -> None:
    pids = {"torchserve": [busy_tree.pid]}
    c = ProcessCollector(lambda: pids)
    await c.baseline()
    time.sleep(0.6)
    await c.sample(0.0, 0.6)
    # The component's process dies and a "restart" shows up under a new pid.
    pids["torchserve"] = [999_999_999]
    await c.sample(1.0, 0.5)
    s = c.series()
    assert s["t"] == [0.0, 1.0]
    cpu = s["cpu_percent"]["torchserve"]
    # The busy child (not the sleeping parent) is counted: its CPU time, measured by the
    # OS, must show. Loosely: on shared cores it may get a small share of one.
    child = psutil.Process(busy_tree.pid).children()[0]
    assert cpu[0] is not None and cpu[0] > 5, cpu
    assert sum(child.cpu_times()[:2]) > 0.03
    assert s["processes"]["torchserve"] == [2, 0]
    assert cpu[1] is None and s["rss_mb"]["torchserve"][1] is None  # gone: None, not 0
    assert s["rss_mb"]["torchserve"][0] > 5
    assert s["rss_mb"]["harness"][0] > 20 and s["cpu_percent"]["harness"][0] is not None


async def test_process_collector_survives_a_failing_pid_query() -> None:
    def broken() -> dict[str, list[int]]:
        raise RuntimeError("stack is restarting")

    c = ProcessCollector(broken, include_self=False)
    await c.baseline()
    await c.sample(0.0, 1.0)
    s = c.series()
    assert s["t"] == [0.0] and s["cpu_percent"] == {}
    assert s["errors"] == 2 and "stack is restarting" in s["last_error"]


async def test_gpu_collector_reports_absence_with_a_reason() -> None:
    g = GpuCollector()
    await g.baseline()
    await g.sample(0.0, 1.0)
    s = g.series()
    await g.close()
    if g.present:  # a machine with an NVIDIA GPU: real per-second figures
        assert s["util_percent"][0] is not None and 0 <= s["util_percent"][0] <= 100
        assert s["mem_used_mb"][0] > 0 and s["names"]
        assert g.summary()["util_mean"] is not None
    else:
        assert g.reason and isinstance(g.reason, str)
        assert s["util_percent"] == [] and s["t"] == []  # no fake 0 %
        summary = g.summary()
        assert summary["present"] is False and summary["reason"] == g.reason
        assert summary["util_mean"] is None and summary["memory_used_mb_max"] is None
