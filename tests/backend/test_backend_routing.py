"""Session assignment for the rollout: sticky, deterministic, exactly proportional."""

from __future__ import annotations

import pytest
import structlog

from backend_patch.app.metrics import BackendMetrics
from backend_patch.app.ml.pipeline import InferenceEngine
from backend_patch.app.ml.routing import InferenceRouter
from backend_patch.app.ml.torchserve_client import TorchServeClient


def _router(percent: int, *, with_client: bool = True) -> InferenceRouter:
    # A real client object; assignment never calls it.
    client = TorchServeClient("http://127.0.0.1:9") if with_client else None
    return InferenceRouter(
        InferenceEngine("/nonexistent"),
        BackendMetrics(),
        structlog.get_logger(),
        client=client,
        rollout_percent=percent,
    )


@pytest.mark.parametrize(
    ("percent", "sessions", "expected"),
    [(10, 20, 2), (0, 50, 0), (100, 7, 7), (33, 100, 33), (50, 9, 4)],
)
def test_share_of_sessions(percent: int, sessions: int, expected: int) -> None:
    router = _router(percent)
    assert sum(router.assign_session() for _ in range(sessions)) == expected


def test_assignment_is_spread_not_bunched() -> None:
    router = _router(25)
    picks = [router.assign_session() for _ in range(8)]
    assert picks == [False, False, False, True, False, False, False, True]


def test_flag_off_never_routes_to_torchserve() -> None:
    router = _router(100, with_client=False)
    assert not any(router.assign_session() for _ in range(10))


def test_percent_is_validated_and_exported() -> None:
    router = _router(10)
    router.rollout_percent = 60
    assert router.rollout_percent == 60
    assert b"signflow_rollout_percent 60.0" in router.metrics.render()
    for bad in (-1, 101, True, 5.5):
        with pytest.raises(ValueError, match=r"0\.\.100"):
            router.rollout_percent = bad  # type: ignore[assignment]
