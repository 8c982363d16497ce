"""What a load recording says: counts, accuracy, latency histograms and 1-s windows.

The load package records raw rows (``harness.load.recording.LoadResult``); everything derived
from them is here, once. Histograms come from ``harness.hdr`` (microseconds).

**Frame latency** (one definition, ``latency_population``): the coordinated-omission corrected
latency ``t_reply - t_scheduled`` of every frame answered WITHOUT an error reply (an inference
reply, or a non-inference reply such as a skipped frame). Error replies are left out of every
latency figure (whole-run summary, per-second series, per-window histograms and so the
comparison's intervals): they are counted as errors instead, and a fast error reply would
otherwise make a failing system look quick. ``inference`` latency: the frames of that
population answered with an inference (``served_by`` set); ``non_inference``: the rest of it.
Frames scheduled before ``warmup_s`` are outside the measured window (kept in the windows,
flagged ``warmup``). A frame belongs to the 1-s window of its SCHEDULED time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import numpy.typing as npt

import harness.hdr as hdr
from harness.load.recording import LoadResult

# A FRAME_DTYPE structured array (harness.load.recording), one row per scheduled frame.
FrameRows = npt.NDArray[np.void]
# One flag per frame.
Mask = npt.NDArray[np.bool_]
# One label (str) or None per frame.
Labels = npt.NDArray[np.object_]


@dataclass
class Columns:
    """Per-frame columns on the run clock (s); label columns as object arrays (None = unset)."""

    session: npt.NDArray[np.int64]
    t_scheduled: hdr.Floats
    t_sent: hdr.Floats
    t_reply: hdr.Floats
    served_by: Labels
    model_version: Labels
    error_code: Labels
    # The rollout cohort of the frame's session ("torchserve", "local", None: not known).
    cohort: Labels

    @property
    def fallback(self) -> Mask:
        """Frames of the TorchServe cohort answered by the local engine (a fallback; the
        old-pipeline cohort's local answers are by design, never fallbacks)."""
        return np.asarray(
            (self.served_by == "local") & (self.cohort == "torchserve"), dtype=np.bool_
        )

    @property
    def answered(self) -> Mask:
        """Frames that got any reply (error replies included)."""
        return np.asarray(~np.isnan(self.t_reply))

    @property
    def errored(self) -> Mask:
        """Frames answered with an error reply."""
        return np.asarray(self.error_code != None, dtype=np.bool_)  # noqa: E711 - elementwise

    @property
    def latency_s(self) -> hdr.Floats:
        """Coordinated-omission corrected latency (NaN when unanswered)."""
        return np.asarray(self.t_reply - self.t_scheduled, dtype=np.float64)


def columns(load: LoadResult) -> Columns:
    """Decode ``load.frames`` (FRAME_DTYPE codes into ``load.labels``) into columns."""
    f = load.frames
    labels = np.array([*list(load.labels), None], dtype=object)  # code -1 -> None

    def decode(name: str) -> Labels:
        codes = np.asarray(f[name], dtype=np.int64)
        return np.asarray(labels[np.where(codes < 0, len(labels) - 1, codes)], dtype=object)

    return Columns(
        session=np.asarray(f["session"], dtype=np.int64),
        t_scheduled=np.asarray(f["t_scheduled"], dtype=np.float64),
        t_sent=np.asarray(f["t_sent"], dtype=np.float64),
        t_reply=np.asarray(f["t_reply"], dtype=np.float64),
        served_by=decode("served_by"),
        model_version=decode("model_version"),
        error_code=decode("error_code"),
        cohort=_cohort_labels(torchserve_cohort(load)),
    )


def _cohort_labels(ts: Mask) -> Labels:
    out = np.full(ts.shape, None, dtype=object)
    out[ts] = "torchserve"
    return out


def torchserve_cohort(load: LoadResult) -> Mask:
    """Frames of the sessions the backend routed to TorchServe: ``SessionRecord.cohort`` (its
    x-signflow-route header, else what the session's replies showed); a session without a
    known cohort (no record: a distributed load) by its replies, as the generator does: any
    reply served by TorchServe puts it in the TorchServe cohort (the old pipeline never
    reaches TorchServe)."""
    session = np.asarray(load.frames["session"], dtype=np.int64)
    known = {r["session"]: r["cohort"] for r in getattr(load, "sessions", None) or []}
    ts_cohort = [s for s, c in known.items() if c == "torchserve"]
    if "torchserve" in load.labels:
        served_ts = load.frames["served_by"] == load.labels.index("torchserve")
        evidence = np.unique(session[served_ts]).tolist()
        ts_cohort += [s for s in evidence if known.get(s) is None]
    return np.isin(session, ts_cohort)


class FallbackCounts(TypedDict):
    """Classifications split by cohort: ``fallbacks`` (the TorchServe cohort's answered
    locally), ``torchserve_cohort`` and ``old_pipeline`` (every other classification)."""

    fallbacks: int
    torchserve_cohort: int
    old_pipeline: int


def fallback_counts(load: LoadResult, mask: Mask | None = None) -> FallbackCounts:
    """Classifications by cohort (measured window by default); ``summary.fallback``."""
    m = _measured(load, mask)
    f = load.frames
    inference = m & (f["served_by"] >= 0)
    ts = torchserve_cohort(load)
    local = load.labels.index("local") if "local" in load.labels else -2
    return {
        "fallbacks": int(np.count_nonzero(inference & ts & (f["served_by"] == local))),
        "torchserve_cohort": int(np.count_nonzero(inference & ts)),
        "old_pipeline": int(np.count_nonzero(inference & ~ts)),
    }


# --- populations ------------------------------------------------------------------------------


def latency_population(frames: FrameRows) -> Mask:
    """THE frame-latency population: answered frames without an error reply (bool mask)."""
    return np.asarray(~np.isnan(frames["t_reply"]) & (frames["error_code"] < 0), dtype=np.bool_)


def inference_population(frames: FrameRows) -> Mask:
    """The part of the frame-latency population answered with an inference."""
    return np.asarray(latency_population(frames) & (frames["served_by"] >= 0), dtype=np.bool_)


# --- aggregates --------------------------------------------------------------------------------


def _measured(load: LoadResult, mask: Mask | None) -> Mask:
    return load.measured_mask() if mask is None else mask


def counts(load: LoadResult, mask: Mask | None = None) -> dict[str, int]:
    """scheduled/sent/answered/late/errored/lost/inferences (measured window by default).

    ``answered`` includes error replies; ``lost`` = scheduled - answered (never sent, or no
    reply within reply_timeout_s after the last frame).
    """
    m = _measured(load, mask)
    f = load.frames[m]
    answered = int(np.count_nonzero(~np.isnan(f["t_reply"])))
    return {
        "scheduled": int(f.size),
        "sent": int(np.count_nonzero(~np.isnan(f["t_sent"]))),
        "answered": answered,
        "late": int(np.count_nonzero(load.late_mask()[m])),
        "errored": int(np.count_nonzero(f["error_code"] >= 0)),
        "lost": int(f.size - answered),
        "inferences": int(np.count_nonzero(f["served_by"] >= 0)),
    }


def _tally(load: LoadResult, codes: npt.NDArray[np.integer]) -> dict[str, int]:
    values, n = np.unique(codes[codes >= 0], return_counts=True)
    return {load.labels[v]: int(c) for v, c in zip(values.tolist(), n.tolist(), strict=True)}


def errors_by_code(load: LoadResult, mask: Mask | None = None) -> dict[str, int]:
    """Error replies per error code (measured window by default)."""
    return _tally(load, load.frames["error_code"][_measured(load, mask)])


def served_by_counts(load: LoadResult, mask: Mask | None = None) -> dict[str, int]:
    """Inference replies per ``served_by`` value ("local", "torchserve", ...)."""
    return _tally(load, load.frames["served_by"][_measured(load, mask)])


def model_version_counts(load: LoadResult, mask: Mask | None = None) -> dict[str, int]:
    """Inference replies per ``model_version``."""
    return _tally(load, load.frames["model_version"][_measured(load, mask)])


class Accuracy(TypedDict):
    """Predictions against the trace's truth (``summary.accuracy_detail`` plus the share).

    ``accuracy``: correct / total, a share in [0, 1], None when nothing was judged (no truth
    in the trace); ``correct``, ``total``: counts of judged predictions; ``by_served_by``: the
    share per ``served_by`` value ("none" for a prediction without one), None when it judged
    nothing.
    """

    accuracy: float | None
    correct: int
    total: int
    by_served_by: dict[str, float | None]


def accuracy(load: LoadResult, mask: Mask | None = None) -> Accuracy:
    """Predictions against the trace's truth: inference replies with a prediction and truth
    (:class:`Accuracy`)."""
    f = load.frames[_measured(load, mask)]
    judged = (f["prediction"] >= 0) & (f["truth"] >= 0)
    correct = judged & (f["prediction"] == f["truth"])
    by: dict[str, float | None] = {}
    for code in np.unique(f["served_by"][judged]).tolist():
        sel = judged & (f["served_by"] == code)
        n = int(np.count_nonzero(sel))
        by[load.labels[code] if code >= 0 else "none"] = (
            int(np.count_nonzero(correct & sel)) / n if n else None
        )
    total = int(np.count_nonzero(judged))
    n_correct = int(np.count_nonzero(correct))
    return {
        "accuracy": n_correct / total if total else None,
        "correct": n_correct,
        "total": total,
        "by_served_by": by,
    }


# --- histograms and windows --------------------------------------------------------------------


def histograms(
    load: LoadResult, mask: Mask | None = None, non_inference: bool = True
) -> dict[str, hdr.Histogram]:
    """Latency histograms (us, range = the run's latency limit) of the frame-latency
    population (measured window by default): ``frame_latency`` (corrected),
    ``frame_latency_uncorrected`` (``t_reply - t_sent``), ``inference_latency`` and, with
    ``non_inference``, ``non_inference_latency``. Replies above the limit are not in them
    (``LoadResult.over_range``)."""
    f = load.frames[_measured(load, mask)]
    frame = latency_population(f)
    inference = inference_population(f)
    corrected = f["t_reply"] - f["t_scheduled"]
    limit = load.latency_limit_s
    out = {
        "frame_latency": hdr.histogram_of(corrected[frame], limit),
        "frame_latency_uncorrected": hdr.histogram_of((f["t_reply"] - f["t_sent"])[frame], limit),
        "inference_latency": hdr.histogram_of(corrected[inference], limit),
    }
    if non_inference:
        out["non_inference_latency"] = hdr.histogram_of(corrected[frame & ~inference], limit)
    return out


@dataclass
class Window:
    """One 1-s window of SCHEDULED time. Latency figures (ms) are of the frame-latency
    population (module docstring); None when the window had no such reply."""

    t: float  # window start (s)
    warmup: bool
    scheduled: int
    answered: int  # error replies included
    errors: int  # error replies
    inferences: int
    served_by: dict[str, int] = field(default_factory=dict)
    # The TorchServe cohort's classifications answered locally (``Columns.fallback``).
    fallbacks: int = 0
    model_versions: dict[str, int] = field(default_factory=dict)
    # "frame_latency", "inference_latency" (us)
    hist: dict[str, hdr.Histogram] = field(default_factory=dict)

    @property
    def ok_replies(self) -> int:
        """Answered frames without an error reply."""
        return self.answered - self.errors

    @property
    def lost(self) -> int:
        """Frames without any reply."""
        return self.scheduled - self.answered

    def percentile_ms(self, family: str, p: float) -> float | None:
        """Percentile ``p`` of the window's ``family`` ("frame", "inference") latency."""
        return hdr.percentile_ms(self.hist[f"{family}_latency"], p)


def windows(load: LoadResult) -> list[Window]:
    """Per-1-s windows of scheduled time, every window from 0 to the run's end (the load's own
    duration, or further when frames were scheduled later).

    Linear in the frames: they are put in window order once (a stable sort on the window
    index) and each window reads its own slice, never a full-length mask per window (that was
    O(frames x windows): 2x the duration took 4x the time, issue 23).
    """
    f = load.frames
    t_sched = f["t_scheduled"]
    n = max(math.ceil(load.duration_s), int(np.nanmax(t_sched)) + 1 if t_sched.size else 0)
    which = np.floor(t_sched)
    inside = np.asarray((which >= 0) & (which < n), dtype=np.bool_)  # NaN: in no window
    which = np.where(inside, which, n).astype(np.int64)  # n: a bin past the last window
    frame = latency_population(f)
    inference = inference_population(f)
    corrected = f["t_reply"] - f["t_scheduled"]
    answered = ~np.isnan(f["t_reply"])
    errored = f["error_code"] >= 0
    limit = load.latency_limit_s
    local = load.labels.index("local") if "local" in load.labels else -2
    fallback = inference & torchserve_cohort(load) & (f["served_by"] == local)

    def per_window(mask: Mask) -> list[int]:
        counts: list[int] = np.bincount(which[mask], minlength=n + 1)[:n].tolist()
        return counts

    scheduled = per_window(np.ones(which.shape, dtype=np.bool_))
    n_answered = per_window(answered)
    n_errors = per_window(errored)
    n_inferences = per_window(inference)
    n_fallbacks = per_window(fallback)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(n + 1), side="left")
    out: list[Window] = []
    for w in range(n):
        rows = order[bounds[w] : bounds[w + 1]]
        in_frame = rows[frame[rows]]
        in_inference = rows[inference[rows]]
        out.append(
            Window(
                t=float(w),
                warmup=w < load.warmup_s,
                scheduled=scheduled[w],
                answered=n_answered[w],
                errors=n_errors[w],
                inferences=n_inferences[w],
                served_by=_tally(load, f["served_by"][in_inference]),
                fallbacks=n_fallbacks[w],
                model_versions=_tally(load, f["model_version"][in_inference]),
                hist={
                    "frame_latency": hdr.histogram_of(corrected[in_frame], limit),
                    "inference_latency": hdr.histogram_of(corrected[in_inference], limit),
                },
            )
        )
    return out


def window_percentiles_ms(ws: Sequence[Window], family: str, p: float) -> list[float | None]:
    """One value per window: percentile ``p`` of its ``family`` latency (ms)."""
    return [w.percentile_ms(family, p) for w in ws]
