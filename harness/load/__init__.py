"""Load: traces, open-loop WebSocket sessions, raw per-frame recording and the generator's
self-check (histograms, counts and windows are analysis: ``harness.analysis.frames``)."""

from harness.load.generator import LiveStats, LoadConfig, LoadGenerator, run_with_best_loop
from harness.load.recording import FrameRecord, LoadResult
from harness.load.trace import TraceError, load_trace_file, synthetic_trace

__all__ = [
    "FrameRecord",
    "LiveStats",
    "LoadConfig",
    "LoadGenerator",
    "LoadResult",
    "TraceError",
    "load_trace_file",
    "run_with_best_loop",
    "synthetic_trace",
]
