"""Traces: the frames a session streams, from the synthetic generator or a recorded JSONL file.

A trace is a list of frame dicts in the WebSocket protocol's format. An optional ``truth`` key
holds the sign being performed (a label string, or null on rest frames); it is kept by the
generator for accuracy and stripped before sending. ``frame_idx`` is rewritten by the sender.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.scenario.tracefile import TRUTH_KEY, TraceError, load_trace_file, synthetic_trace

if TYPE_CHECKING:
    from harness.scenario.models import TraceSpec

__all__ = [
    "TRUTH_KEY",
    "PreparedTrace",
    "TraceError",
    "TraceFrame",
    "load_trace_file",
    "prepare_trace",
    "synthetic_trace",
    "trace_provider",
]

FRAME_IDX_KEY = "frame_idx"
# One frame of a trace: a JSON object of the WebSocket protocol (plus the optional ``truth``).
TraceFrame = Mapping[str, object]
# Distinct synthetic traces: session i plays variant i % TRACE_VARIANTS (seed + variant), so
# hundreds of sessions do not cost hundreds of trace generations.
TRACE_VARIANTS = 8


def trace_provider(spec: TraceSpec) -> Callable[[int], list[dict[str, Any]]]:
    """Global session index -> its trace: a file's frames for every session, or synthetic
    variant ``i % TRACE_VARIANTS`` (seed + variant), each generated once. The one rule for a
    native run and for every Locust worker's block of sessions. Raises TraceError (file)."""
    if spec.file:
        frames = load_trace_file(Path(spec.file))
        return lambda _i: frames
    syn = spec.synthetic
    assert syn is not None  # TraceSpec holds exactly one of file / synthetic

    @functools.lru_cache(maxsize=TRACE_VARIANTS)
    def variant(v: int) -> list[dict[str, Any]]:
        return synthetic_trace(syn.seed + v, syn.signs, syn.sign_mix, syn.rest_frames)

    return lambda i: variant(i % TRACE_VARIANTS)


@dataclass(frozen=True)
class PreparedTrace:
    """A trace serialised once: each message is ``prefixes[j] + str(frame_idx) + "}"``.

    Truth codes say which sign a reply to frame j is judged against: the last non-null
    ``truth`` at or before frame j (-1: none). ``truth_first`` is for the first pass over the
    trace; ``truth_loop`` for later passes, where frames before the first sign inherit the
    trace's last sign (the trace is looped).
    """

    prefixes: tuple[str, ...]
    truth_first: tuple[int, ...]
    truth_loop: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prefixes)


def prepare_trace(frames: Sequence[TraceFrame], intern: Callable[[str], int]) -> PreparedTrace:
    """Serialise every frame once (without ``truth`` and ``frame_idx``) for cheap patching."""
    if not frames:
        raise TraceError("trace holds no frames")
    prefixes: list[str] = []
    raw_truth: list[int] = []
    for frame in frames:
        body = {k: v for k, v in frame.items() if k not in (TRUTH_KEY, FRAME_IDX_KEY)}
        text = json.dumps(body, separators=(",", ":"))
        # frame_idx goes last so servers and tests can also slice it out cheaply.
        prefixes.append(text[:-1] + ',"frame_idx":' if body else '{"frame_idx":')
        label = frame.get(TRUTH_KEY)
        raw_truth.append(intern(label) if isinstance(label, str) else -1)
    wrap = next((c for c in reversed(raw_truth) if c >= 0), -1)
    return PreparedTrace(
        tuple(prefixes), _carry_forward(raw_truth, -1), _carry_forward(raw_truth, wrap)
    )


def _carry_forward(codes: list[int], start: int) -> tuple[int, ...]:
    out: list[int] = []
    last = start
    for code in codes:
        if code >= 0:
            last = code
        out.append(last)
    return tuple(out)
