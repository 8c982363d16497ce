"""Fixtures of the sweep tests: the known-capacity server, sweep files written for it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from known_sweeps import HERE


@pytest.fixture(scope="module")
def known_port() -> Iterator[int]:
    """Port of a running known_server.py (stopped after the module)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "known_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def write_sweep(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write sweep text to ``tmp_path/<name>`` and return the path."""

    def write(text: str, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
