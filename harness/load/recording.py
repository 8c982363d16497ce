"""What a load run recorded: one raw row per scheduled frame, nothing derived.

Times are on the RunClock (seconds). The load package keeps the RAW recording only: counts,
accuracy, latency histograms and 1-s windows are analysis (``harness.analysis.frames`` over
``harness.hdr``). What stays here is what the generator's own self-check needs: the
measured and late masks, and ``over_range`` (replies slower than the run's latency limit,
``latency_limit_s`` = the run's ``reply_timeout_s``; they make the run INVALID because the
histograms, whose range is that limit, cannot hold them). Corrected latency is
``t_reply - t_scheduled`` (coordinated omission corrected, as wrk2); uncorrected is
``t_reply - t_sent``. Frames scheduled before ``warmup_s`` are outside the measured window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from harness.hdr import limit_us

if TYPE_CHECKING:
    from harness.results.model import InvalidReason

# The limit when a LoadResult is built without one: LoadConfig's default reply_timeout_s.
DEFAULT_LATENCY_LIMIT_S = 5.0

FRAME_DTYPE = np.dtype(
    [
        ("session", np.int32),
        ("frame_idx", np.int32),
        ("t_scheduled", np.float64),
        ("t_sent", np.float64),  # NaN: never sent
        ("t_reply", np.float64),  # NaN: no reply
        ("served_by", np.int16),  # codes into LoadResult.labels; -1 = None
        ("model_version", np.int16),
        ("prediction", np.int16),
        ("truth", np.int16),
        ("error_code", np.int16),
    ]
)


# A FRAME_DTYPE array (one row per scheduled frame) and a boolean mask over its rows.
FrameArray = npt.NDArray[np.void]
FrameMask = npt.NDArray[np.bool_]

SessionOutcome = Literal["refused", "disconnected", "ended", "open", "not started"]


class SessionRecord(TypedDict):
    """One session's lifetime (``LoadResult.sessions``): times on the RunClock (s), connect
    and close costs in ms; None where it never got that far. The row as the generator builds
    it; results.json validates it as ``harness.results.model.SessionRecord`` (same fields,
    tests/harness/load/test_load_types.py keeps them so)."""

    session: int
    planned_start_s: float
    frames: int
    sent: int
    connected_s: float | None
    closed_s: float | None
    lifetime_s: float | None
    connect_ms: float | None
    close_ms: float | None
    cohort: str | None  # rollout cohort ("torchserve", "local") or None: not known
    outcome: SessionOutcome


class OverRange(TypedDict):
    """Replies slower than the run's latency limit (``LoadResult.over_range``); results.json
    holds it as ``harness.results.model.OverRange``."""

    count: int
    max_ms: float | None  # the slowest of them; None when there is none
    limit_ms: float


@dataclass
class FrameRecord:
    """One scheduled frame, decoded (times on the RunClock, seconds)."""

    session: int
    frame_idx: int
    t_scheduled: float
    t_sent: float | None
    t_reply: float | None
    served_by: str | None
    model_version: str | None
    prediction: str | None
    truth: str | None
    error_code: str | None


@dataclass
class LoadResult:
    """Everything a load run measured; ``frames`` is a FRAME_DTYPE array, codes in ``labels``."""

    frames: FrameArray
    labels: list[str]
    fps: float
    duration_s: float
    warmup_s: float
    late_threshold_ms: float
    disconnects: int
    send_failures: int
    generator_late_share: float
    generator_cpu_percent: float
    generator_cpu_saturated: bool
    connect_failures: int = 0
    unmatched_replies: int = 0
    latency_limit_s: float = DEFAULT_LATENCY_LIMIT_S
    # Frames never sent because the server had not read the earlier ones (send buffer full),
    # and the run-clock time it went silent (None: it kept answering). See selfcheck.
    unsent: int = 0
    silent_from_s: float | None = None
    invalid_reasons: list[InvalidReason] = field(default_factory=list)
    # Per-session lifetimes (harness.load.generator.session_record), in session order.
    sessions: list[SessionRecord] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """False when the generator itself fell behind (see ``invalid_reasons``)."""
        return not self.invalid_reasons

    def label(self, code: int) -> str | None:
        """Decode a label code (-1 -> None)."""
        return None if code < 0 else self.labels[code]

    def records(self) -> Iterator[FrameRecord]:
        """Iterate decoded rows (slow path, for tests and small exports)."""
        for row in self.frames:
            yield FrameRecord(
                session=int(row["session"]),
                frame_idx=int(row["frame_idx"]),
                t_scheduled=float(row["t_scheduled"]),
                t_sent=None if math.isnan(row["t_sent"]) else float(row["t_sent"]),
                t_reply=None if math.isnan(row["t_reply"]) else float(row["t_reply"]),
                served_by=self.label(int(row["served_by"])),
                model_version=self.label(int(row["model_version"])),
                prediction=self.label(int(row["prediction"])),
                truth=self.label(int(row["truth"])),
                error_code=self.label(int(row["error_code"])),
            )

    # --- masks over the frame array -------------------------------------------------------
    def measured_mask(self) -> FrameMask:
        """Frames scheduled in the measured window [warmup_s, duration_s)."""
        return np.asarray(self.frames["t_scheduled"] >= self.warmup_s, dtype=np.bool_)

    def late_mask(self) -> FrameMask:
        """Frames sent more than ``late_threshold_ms`` after their schedule."""
        f = self.frames
        with np.errstate(invalid="ignore"):
            late = (f["t_sent"] - f["t_scheduled"]) > self.late_threshold_ms / 1000.0
        return np.asarray(late, dtype=np.bool_)

    def over_range(self, mask: FrameMask | None = None) -> OverRange:
        """Replies slower than ``latency_limit_s`` (measured window by default): ``count`` and
        the slowest one, ``max_ms`` (None when there is none). They are left out of the
        histograms, so the run reports them here and is INVALID when any exists."""
        m = self.measured_mask() if mask is None else mask
        f = self.frames[m]
        lat = f["t_reply"] - f["t_scheduled"]
        lat = lat[~np.isnan(lat)]
        over = lat[np.rint(lat * 1e6) > limit_us(self.latency_limit_s)]
        return OverRange(
            count=int(over.size),
            max_ms=float(over.max() * 1000.0) if over.size else None,
            limit_ms=self.latency_limit_s * 1000.0,
        )
