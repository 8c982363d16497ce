"""Fixtures of the load tests: real WebSocket servers with known behaviour, in own processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("ws_test_server.py")


@pytest.fixture
def ws_server() -> Iterator[Callable[..., str]]:
    """Factory: ``ws_server(delay_ms=20, ...)`` starts a test server and returns its ws:// URL.

    Every server started is terminated at teardown, also when the test fails.
    """
    procs: list[subprocess.Popen[str]] = []

    def start(**flags: float | int) -> str:
        argv = [sys.executable, str(SERVER)]
        for key, value in flags.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"test server did not start: {line!r}")
        return f"ws://127.0.0.1:{line}/"

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict:
    """The generator's tests run on uvloop, the loop the harness runs it on."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
