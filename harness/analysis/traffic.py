"""Session traffic figures of a run: sessions started, ended, refused, lifetimes and the cost of
connecting and disconnecting (from ``LoadResult.sessions``, harness.load.generator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.results.model import CostSpread, LifetimeSpread, Traffic


def _spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """p50/p95/max/mean/count of the non-None values (None figures when there is none)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not v.size:
        return {"p50": None, "p95": None, "max": None, "mean": None, "count": 0}
    p50, p95 = np.percentile(v, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(v.max()),
            "mean": float(v.mean()), "count": int(v.size)}  # fmt: skip


def traffic_summary(sessions: Sequence[Mapping[str, Any]]) -> Traffic:
    """Counts by outcome, the cohorts, and lifetime (s) / connect and close cost (ms) spreads
    of ``sessions`` (``SessionRecord`` mappings, as ``LoadResult.sessions`` holds them).

    ``started``: sessions whose WebSocket opened; ``refused``: whose connect failed;
    ``ended``: closed by the harness at the end of their length or of the run;
    ``disconnected``: dropped by the server.
    """
    outcomes: dict[str, int] = {}
    cohorts: dict[str, int] = {}
    for s in sessions:
        outcomes[s["outcome"]] = outcomes.get(s["outcome"], 0) + 1
        if s.get("connected_s") is not None:
            key = s.get("cohort") or "unknown"
            cohorts[key] = cohorts.get(key, 0) + 1
    return Traffic(
        planned=len(sessions),
        started=sum(1 for s in sessions if s.get("connected_s") is not None),
        ended=outcomes.get("ended", 0),
        refused=outcomes.get("refused", 0),
        disconnected=outcomes.get("disconnected", 0),
        cohorts=cohorts,
        lifetime_s=LifetimeSpread.model_validate(_spread([s.get("lifetime_s") for s in sessions])),
        connect_ms=CostSpread.model_validate(_spread([s.get("connect_ms") for s in sessions])),
        close_ms=CostSpread.model_validate(_spread([s.get("close_ms") for s in sessions])),
    )
