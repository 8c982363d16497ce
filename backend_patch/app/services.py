"""The objects one backend app shares between its endpoints (created by the app factory)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .metrics import BackendMetrics
from .ml.pipeline import InferenceEngine, SegmenterConfig
from .ml.routing import InferenceRouter


@dataclass
class AppServices:
    """Settings, model, router, metrics and logger of one app; stored on ``app.state``."""

    settings: Settings
    engine: InferenceEngine
    router: InferenceRouter
    metrics: BackendMetrics
    log: Any
    segmenter_config: SegmenterConfig
    session_ids: itertools.count[int] = field(default_factory=itertools.count)
    # Builds sign windows off the event loop. One thread: windows are CPU- and GIL-bound, and
    # more threads would only compete harder with the loop for the interpreter.
    window_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="signflow-window")
    )
