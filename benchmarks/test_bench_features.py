"""Per-frame and per-window feature costs (run with `make bench` or --benchmark-enable).

Targets: normalize_landmarks of one JSON-parsed frame well under 200 us (the whole per-frame
budget, state machine included); build_window of a 40-frame sign under 1 ms.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend_patch.app.ml import synthetic as S
from backend_patch.app.ml.feature_engineering import build_window
from backend_patch.app.ml.features import hand_motion_energy, normalize_landmarks


@pytest.fixture(scope="module")
def frames() -> list[dict]:
    rng = np.random.default_rng(0)
    sign = S.generate_sign("please", rng)
    return [json.loads(json.dumps(f)) for f in sign]


def test_bench_normalize_landmarks(benchmark, frames: list[dict]) -> None:
    out = benchmark(normalize_landmarks, frames[len(frames) // 2])
    assert out.shape == (225,)


def test_bench_motion_energy(benchmark, frames: list[dict]) -> None:
    a, b = normalize_landmarks(frames[10]), normalize_landmarks(frames[11])
    assert benchmark(hand_motion_energy, a, b) > 0


def test_bench_build_window_40_frames(benchmark, frames: list[dict]) -> None:
    seq = np.stack([normalize_landmarks(f) for f in frames])
    seq = np.resize(seq, (40, 225)).astype(np.float32)
    out = benchmark(build_window, seq)
    assert out.shape == (64, 469)
