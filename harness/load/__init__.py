"""Load: traces, open-loop WebSocket sessions, HDR recording and the generator's self-check."""

from harness.load.generator import LiveStats, LoadConfig, LoadGenerator, run_with_best_loop
from harness.load.recording import FrameRecord, LoadResult, percentiles_ms
from harness.load.trace import TraceError, load_trace_file, synthetic_trace

__all__ = [
    "FrameRecord",
    "LiveStats",
    "LoadConfig",
    "LoadGenerator",
    "LoadResult",
    "TraceError",
    "load_trace_file",
    "percentiles_ms",
    "run_with_best_loop",
    "synthetic_trace",
]
