"""Workers' results -> one ordinary LoadResult (what the rest of the harness reads unchanged).

Each worker recorded its sessions as 0..n-1 with label codes from its own intern table. The
merge renumbers sessions (worker's ``session_offset`` + local index, the numbering a one-process
run gives), remaps label codes into one table (first-seen order, worker by worker) and
concatenates the rows; the self-check is judged per worker and the reasons name the worker. A
worker that never reported contributes its planned schedule as frames never sent (counted lost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from harness.load.recording import FRAME_DTYPE, LoadResult
from harness.load.selfcheck import CPU_SATURATED_PERCENT, MAX_LATE_SHARE
from harness.results.model import InvalidKind, InvalidReason

# How an INVALID reason about distribution starts (CLI hints, tests).
WORKER_LOST = InvalidKind.WORKER_LOST
_LABEL_FIELDS = ("served_by", "model_version", "prediction", "truth", "error_code")
_SUM_FIELDS = ("disconnects", "send_failures", "connect_failures", "unmatched_replies", "unsent")

Status = Literal["done", "missing", "exited", "timeout", "failed"]


@dataclass
class WorkerOutcome:
    """What one worker gave: its share and either its result or why it has none."""

    index: int
    name: str
    session_offset: int
    sessions: int
    status: Status
    result: LoadResult | None = None
    host: str | None = None
    engine_cpu_percent: float | None = None
    locust_cpu_percent: float | None = None
    detail: str = ""
    messages: int = 0
    message_bytes: int = 0
    missing_at_s: float | None = None


@dataclass
class DistributedLoadResult(LoadResult):
    """A LoadResult plus the ``load`` section of results.json (per-worker figures)."""

    distribution: dict[str, Any] = field(default_factory=dict)


def _planned_rows(
    offset: int, sessions: int, total: int, fps: float, duration_s: float, ramp_up_s: float,
    start_s: float,
) -> np.ndarray:  # fmt: skip
    """The rows a worker's sessions were scheduled to send (as LoadGenerator plans them)."""
    spread = max(ramp_up_s, 1.0 / fps)
    parts = []
    for g in range(offset, offset + sessions):
        start = start_s + g * spread / total
        n = max(math.ceil((duration_s - start) * fps - 1e-9), 0)
        rows = np.zeros(n, dtype=FRAME_DTYPE)
        rows["session"] = g
        rows["frame_idx"] = np.arange(n)
        rows["t_scheduled"] = start + np.arange(n) / fps
        rows["t_sent"] = np.nan
        rows["t_reply"] = np.nan
        for name in _LABEL_FIELDS:
            rows[name] = -1
        parts.append(rows)
    return np.concatenate(parts) if parts else np.empty(0, dtype=FRAME_DTYPE)


def _remap(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Worker codes -> merged codes (-1 stays -1)."""
    out = codes.astype(np.int64)
    ok = out >= 0
    out[ok] = table[out[ok]]
    return out.astype(codes.dtype)


def _reason_on(reason: InvalidReason, name: str) -> InvalidReason:
    """The worker's reason, its message naming the worker ('what on worker NAME: detail')."""
    what, sep, rest = reason.message.partition(": ")
    text = f"{what} on worker {name}{sep}{rest}" if sep else f"{reason.message} (worker {name})"
    return reason.model_copy(update={"message": text})


def _lost(message: str) -> InvalidReason:
    return InvalidReason(
        kind=WORKER_LOST,
        message=message,
        hint="see the worker's log in the run's logs/ folder; its sessions' frames count as lost",
    )


def merge_worker_results(
    outcomes: list[WorkerOutcome],
    *,
    total_sessions: int,
    fps: float,
    duration_s: float,
    warmup_s: float,
    ramp_up_s: float,
    start_s: float,
    late_threshold_ms: float,
    reply_timeout_s: float,
    master: dict[str, Any] | None = None,
) -> DistributedLoadResult:
    """One LoadResult from every worker's outcome (ordered by index in the result).

    Frames: each worker's rows with ``session += session_offset`` and label codes remapped, in
    worker order; a worker without a result adds its planned rows, never sent. Counters are
    summed; ``generator_late_share`` is recomputed over all measured sent frames;
    ``generator_cpu_percent`` is the busiest worker's; ``duration_s`` the shortest (an
    interrupted worker's cut). INVALID reasons: every worker's own, naming it, plus one per
    worker that did not report (``WORKER_LOST``).
    """
    codes: dict[str, int] = {}  # merged label table, first-seen order
    parts: list[np.ndarray] = []
    reasons: list[InvalidReason] = []
    sums = dict.fromkeys(_SUM_FIELDS, 0)
    cpus: list[float] = []
    durations: list[float] = []
    silent: list[float] = []
    workers_doc: list[dict[str, Any]] = []
    for o in sorted(outcomes, key=lambda o: o.index):
        r = o.result
        if r is None:
            rows = _planned_rows(
                o.session_offset, o.sessions, total_sessions, fps, duration_s, ramp_up_s, start_s
            )
            parts.append(rows)
            reasons.append(
                _lost(
                    f"load worker lost: worker {o.name} {o.detail or o.status}; its "
                    f"{o.sessions} sessions ({rows.size} frames) are counted lost"
                )
            )
        else:
            table = np.array([codes.setdefault(lb, len(codes)) for lb in r.labels], dtype=np.int64)
            rows = r.frames.copy()
            rows["session"] += o.session_offset
            for name in _LABEL_FIELDS:
                rows[name] = _remap(rows[name], table)
            parts.append(rows)
            reasons.extend(_reason_on(x, o.name) for x in r.invalid_reasons)
            if o.status == "missing" and o.missing_at_s is not None:
                reasons.append(
                    _lost(
                        f"load worker lost: worker {o.name} went missing (no heartbeat) at "
                        f"t={o.missing_at_s:.1f} s; its figures arrived later but the worker "
                        "stalled"
                    )
                )
            for k in _SUM_FIELDS:
                sums[k] += int(getattr(r, k))
            cpus.append(float(r.generator_cpu_percent))
            durations.append(float(r.duration_s))
            if r.silent_from_s is not None:
                silent.append(float(r.silent_from_s))
        workers_doc.append(_worker_doc(o, rows, warmup_s, late_threshold_ms))
    frames = np.concatenate(parts) if parts else np.empty(0, dtype=FRAME_DTYPE)
    cpu = max(cpus, default=0.0)
    result = DistributedLoadResult(
        frames=frames,
        labels=list(codes),
        fps=fps,
        duration_s=min(durations, default=duration_s),
        warmup_s=warmup_s,
        late_threshold_ms=late_threshold_ms,
        generator_late_share=0.0,
        generator_cpu_percent=cpu,
        generator_cpu_saturated=cpu >= CPU_SATURATED_PERCENT,
        latency_limit_s=reply_timeout_s,
        silent_from_s=min(silent) if silent else None,
        invalid_reasons=reasons,
        disconnects=sums["disconnects"],
        send_failures=sums["send_failures"],
        connect_failures=sums["connect_failures"],
        unmatched_replies=sums["unmatched_replies"],
        unsent=sums["unsent"],
    )
    sent = ~np.isnan(frames["t_sent"])
    scope = sent & result.measured_mask()
    if not scope.any():
        scope = sent
    n = int(np.count_nonzero(scope))
    late = int(np.count_nonzero(result.late_mask() & scope))
    result.generator_late_share = late / n if n else 0.0
    result.distribution = {
        "engine": "locust",
        "workers": workers_doc,
        "late_share": result.generator_late_share,
        "max_late_share": MAX_LATE_SHARE,
        "master": master or {},
    }
    return result


def _worker_doc(
    o: WorkerOutcome, rows: np.ndarray, warmup_s: float, late_threshold_ms: float
) -> dict[str, Any]:
    """The worker's line in results.json ``load.workers``."""
    measured = rows["t_scheduled"] >= warmup_s
    with np.errstate(invalid="ignore"):
        late = (rows["t_sent"] - rows["t_scheduled"]) > late_threshold_ms / 1000.0
    sent = ~np.isnan(rows["t_sent"]) & measured
    n_sent = int(np.count_nonzero(sent))
    return {
        "index": o.index,
        "name": o.name,
        "host": o.host,
        "status": o.status,
        "detail": o.detail or None,
        "session_offset": o.session_offset,
        "sessions": o.sessions,
        "frames": int(np.count_nonzero(measured)),
        "sent": n_sent,
        "answered": int(np.count_nonzero(~np.isnan(rows["t_reply"]) & measured)),
        "late_share": int(np.count_nonzero(late & sent)) / n_sent if n_sent else None,
        "cpu_percent": o.engine_cpu_percent,
        "locust_cpu_percent": o.locust_cpu_percent,
        "messages": o.messages,
        "message_bytes": o.message_bytes,
    }
