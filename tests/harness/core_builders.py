"""Builders of real harness data structures (a LoadResult from recorded arrays) for core tests.

Imported as a plain module (pytest puts this directory on sys.path): ``from core_builders import
build_load``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness.load.recording import FRAME_DTYPE, LoadResult

Reply = Callable[[int, float], tuple[float | None, str | None, str | None, str | None]]


def build_load(
    *,
    sessions: int,
    fps: float,
    duration_s: float,
    warmup_s: float = 0.0,
    reply: Reply,
    truth: str | None = "hello",
    prediction: str | None = "hello",
) -> LoadResult:
    """A LoadResult as the generator records it: ``reply(session, t_sched)`` gives
    (latency_s or None for lost, served_by, model_version, error_code)."""
    labels: list[str] = []

    def code(label: str | None) -> int:
        if label is None:
            return -1
        if label not in labels:
            labels.append(label)
        return labels.index(label)

    n_per = round(duration_s * fps)
    frames = np.empty(sessions * n_per, dtype=FRAME_DTYPE)
    i = 0
    for s in range(sessions):
        for k in range(n_per):
            t = k / fps + s * 1e-4
            latency, served_by, version, error = reply(s, t)
            frames[i] = (
                s,
                k,
                t,
                t + 0.0002,
                np.nan if latency is None else t + latency,
                code(served_by if latency is not None else None),
                code(version if latency is not None else None),
                code(prediction if served_by and latency is not None else None),
                code(truth if served_by and latency is not None else None),
                code(error if latency is not None else None),
            )
            i += 1
    return LoadResult(
        frames=frames,
        labels=labels,
        fps=fps,
        duration_s=duration_s,
        warmup_s=warmup_s,
        late_threshold_ms=5.0,
        disconnects=0,
        send_failures=0,
        generator_late_share=0.0,
        generator_cpu_percent=12.0,
        generator_cpu_saturated=False,
    )


def constant_reply(latency_s: float, served_by: str = "torchserve", version: str = "1.0") -> Reply:
    """Every frame answered after ``latency_s`` by ``served_by``."""
    return lambda _s, _t: (latency_s, served_by, version, None)


__all__: Sequence[str] = ("build_load", "constant_reply")


@contextmanager
def served_port(script: Path) -> Iterator[int]:
    """Run ``script`` (a test server that prints its port on its first line) for the block."""
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
