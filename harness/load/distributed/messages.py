"""What crosses the wire in a distributed load run, typed; no Locust import (used on both sides).

Paths (see harness/load/distributed/__init__.py for the whole picture):

- harness -> master: a :class:`RunPlan` (JSON file) and commands on a pipe (``go`` with t0 as a
  wall-clock epoch, ``stop``, ``quit``); master -> harness: :data:`Event` JSON lines on a pipe.
- master -> worker (Locust custom messages): ``plan`` (:class:`WorkerPlan`), ``start`` (t0
  epoch), ``stop``; worker -> master: ``prepared``, ``tick`` (:class:`WorkerTick`), ``done``
  (:class:`WorkerDone` + the frame rows as bytes), ``failed``.

Times inside a tick or a frame row are on the run clock as each worker converted it from t0
(once, at ``start``); no latency is ever computed from two machines' stamps.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from harness.load.recording import FRAME_DTYPE, LoadResult
from harness.results.model import InvalidReason

# Locust custom message types.
MSG_PLAN, MSG_START, MSG_STOP = "harness_plan", "harness_start", "harness_stop"
MSG_PREPARED, MSG_TICK, MSG_DONE, MSG_FAILED = (
    "harness_prepared",
    "harness_tick",
    "harness_done",
    "harness_failed",
)
# Event kinds on the master -> harness pipe ({"ev": KIND, ...} JSON lines).
EV_CONNECTED, EV_READY, EV_TICK, EV_DONE, EV_FAILED, EV_MISSING, EV_ERROR, EV_MASTER = (
    "connected",
    "ready",
    "tick",
    "done",
    "failed",
    "missing",
    "error",
    "master",
)
Event = dict[str, Any]


@dataclass
class RunPlan:
    """The run as the master splits it: workload fields of LoadConfig plus where to put results.

    ``trace`` is ``{"synthetic": {...SyntheticTrace fields}}`` or ``{"frames": [...]}`` (a trace
    file's frames, sent whole so that a remote worker needs no copy of the file).
    """

    ws_url: str
    total_sessions: int
    fps: float
    duration_s: float
    warmup_s: float
    ramp_up_s: float
    late_threshold_ms: float
    reply_timeout_s: float
    start_s: float
    trace: dict[str, Any]
    workers: int
    worker_timeout_s: float
    results_dir: str

    def split(self) -> list[WorkerPlan]:
        """One contiguous block of sessions per worker, sizes differing by at most one."""
        base, extra = divmod(self.total_sessions, self.workers)
        shared = {
            f.name: getattr(self, f.name) for f in fields(WorkerPlan) if hasattr(self, f.name)
        }
        out: list[WorkerPlan] = []
        offset = 0
        for i in range(self.workers):
            n = base + (1 if i < extra else 0)
            out.append(
                WorkerPlan(**{**shared, "index": i, "session_offset": offset, "sessions": n})
            )
            offset += n
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunPlan:
        """Inverse of ``dataclasses.asdict``; KeyError/TypeError on a malformed plan."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class WorkerPlan:
    """One worker's share: sessions ``session_offset .. +sessions`` of ``total_sessions``."""

    index: int
    session_offset: int
    sessions: int
    total_sessions: int
    ws_url: str
    fps: float
    duration_s: float
    warmup_s: float
    ramp_up_s: float
    late_threshold_ms: float
    reply_timeout_s: float
    start_s: float
    trace: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (msgpack/JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class WorkerTick:
    """A worker's last second, for the live view: ``hist`` is the encoded HdrHistogram (us) of
    the corrected latencies of frames scheduled in [t - 1.5, t - 0.5) and answered by now."""

    index: int
    t: float
    answered: int
    frames_per_s: float
    errors: int
    sessions_connected: int
    cpu_percent: float | None
    hist: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (msgpack/JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerTick:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


# LoadResult's scalar fields that travel with the frames (everything but frames and caches).
_RESULT_SCALARS = tuple(
    f.name for f in fields(LoadResult) if f.name not in ("frames", "_cache", "labels")
)


@dataclass
class WorkerDone:
    """A worker's final report. ``result`` holds LoadResult's scalar fields (None: the worker
    measured nothing, e.g. stopped before its warm-up ended); ``engine_cpu_percent`` is the
    generator process's CPU (the self-check's figure), ``locust_cpu_percent`` the Locust worker
    process's own (heartbeats, messages)."""

    index: int
    host: str
    pid: int
    labels: list[str]
    result: dict[str, Any] | None
    engine_cpu_percent: float | None
    locust_cpu_percent: float | None
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (msgpack/JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerDone:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def result_to_wire(result: LoadResult) -> tuple[dict[str, Any], list[str], bytes]:
    """(scalar fields, labels, frame rows as FRAME_DTYPE bytes) of a LoadResult."""
    scalars = {}
    for name in _RESULT_SCALARS:
        v = getattr(result, name)
        scalars[name] = None if isinstance(v, float) and not math.isfinite(v) else v
    scalars["invalid_reasons"] = [r.model_dump(mode="json") for r in result.invalid_reasons]
    frames = np.ascontiguousarray(result.frames, dtype=FRAME_DTYPE)
    return scalars, list(result.labels), frames.tobytes()


def result_from_wire(scalars: dict[str, Any], labels: list[str], frames: bytes) -> LoadResult:
    """Inverse of :func:`result_to_wire`; ValueError when the bytes are not whole rows."""
    if len(frames) % FRAME_DTYPE.itemsize:
        raise ValueError(
            f"frame rows: {len(frames)} bytes is not a multiple of {FRAME_DTYPE.itemsize}"
        )
    rows = np.frombuffer(frames, dtype=FRAME_DTYPE).copy()
    reasons = [InvalidReason.model_validate(r) for r in scalars.get("invalid_reasons") or []]
    return LoadResult(frames=rows, labels=list(labels), **{**scalars, "invalid_reasons": reasons})


def b64(data: bytes) -> str:
    """Bytes as ASCII for JSON lines."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Inverse of :func:`b64`."""
    return base64.b64decode(text.encode("ascii"))
