"""The objects one backend app shares between its endpoints (created by the app factory)."""

from __future__ import annotations

import itertools
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
    session_ids: itertools.count = field(default_factory=itertools.count)
