"""compute_enriched_features, temporal_resample and build_window on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend_patch.app.ml import feature_engineering as FE
from backend_patch.app.ml.dataset import temporal_resample


def blank(t: int = 2) -> np.ndarray:
    return np.zeros((t, 225), dtype=np.float32)


def put(seq: np.ndarray, frame: int, part: str, idx: int, xyz: tuple[float, float, float]) -> None:
    base = {"left": 0, "right": 63, "pose": 126}[part]
    seq[frame, base + 3 * idx : base + 3 * idx + 3] = xyz


def test_layout_constants() -> None:
    assert FE.FEATURE_DIM == 469 and FE.SEQ_LEN == 64
    assert FE.SHAPE.stop == 469


def test_coords_and_velocities() -> None:
    seq = blank(3)
    seq[:, 126:] = np.arange(99, dtype=np.float32)
    seq[1, 126] += 0.5
    seq[2, 126] += 2.0
    out = FE.compute_enriched_features(seq)
    assert out.shape == (3, 469) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :225], seq)
    assert not out[0, 225:450].any()  # first frame velocity is zero
    assert out[1, 225 + 126] == pytest.approx(0.5)
    assert out[2, 225 + 126] == pytest.approx(1.5)


def test_velocity_zero_when_hand_appears() -> None:
    seq = blank(2)
    put(seq, 1, "left", 0, (1.0, 1.0, 0.0))
    out = FE.compute_enriched_features(seq)
    assert not out[1, 225:288].any()


def test_inter_hand_distance_and_missing_hand() -> None:
    seq = blank(1)
    for i in range(21):
        put(seq, 0, "left", i, (1.0, 0.0, 0.0))
        put(seq, 0, "right", i, (-2.0, 0.0, 0.0))
    put(seq, 0, "right", 0, (1.0, 4.0, 0.0))  # wrist-wrist distance 4
    out = FE.compute_enriched_features(seq)
    np.testing.assert_allclose(out[0, FE.DISTANCES], [4.0, 3.0, 3.0, 3.0, 3.0], atol=1e-6)
    seq[0, 63:126] = 0.0
    assert not FE.compute_enriched_features(seq)[0, FE.DISTANCES].any()


def test_right_angle_at_the_elbow() -> None:
    seq = blank(1)
    put(seq, 0, "pose", 11, (0.0, 1.0, 0.0))  # shoulder
    put(seq, 0, "pose", 13, (0.0, 0.0, 0.0))  # elbow
    put(seq, 0, "pose", 15, (2.0, 0.0, 0.0))  # wrist
    put(seq, 0, "pose", 19, (4.0, 0.0, 0.0))  # index: straight wrist
    out = FE.compute_enriched_features(seq)[0, FE.ANGLES]
    assert out[0] == pytest.approx(math.pi / 2)
    assert out[2] == pytest.approx(math.pi)  # elbow-wrist-index in a line
    assert out[1] == 0.0  # right arm has zero-length limbs


def test_hand_shape_by_hand() -> None:
    seq = blank(1)
    for i in range(21):
        put(seq, 0, "right", i, (0.0, 0.0, 0.0))
    # Palm centre = mean of wrist and MCPs (all at origin) except wrist at (0, 0.5)
    put(seq, 0, "right", 0, (0.0, 0.5, 0.0))
    for tip in (4, 8, 12, 16, 20):
        put(seq, 0, "right", tip, (0.0, -1.0, 0.0))
    out = FE.compute_enriched_features(seq)[0, FE.SHAPE]
    assert not out[:5].any()  # left hand missing
    assert out[5] == pytest.approx(1.1)  # tips at distance 1.1 from palm centre (0, 0.1)
    np.testing.assert_allclose(out[6:], [1.5] * 4, atol=1e-6)


def test_enrichment_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="225"):
        FE.compute_enriched_features(np.zeros((4, 224)))


def test_resample_endpoints_midpoint_and_lengths() -> None:
    seq = np.arange(10, dtype=np.float32).reshape(5, 2) * np.float32(1.1)
    out = temporal_resample(seq, 9)
    assert out.shape == (9, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], seq[0])
    np.testing.assert_array_equal(out[-1], seq[-1])
    np.testing.assert_allclose(out[1], (seq[0] + seq[1]) / 2, rtol=1e-6)
    long = np.random.default_rng(0).normal(size=(100, 3))
    down = temporal_resample(long, 64)
    assert down.shape == (64, 3)
    np.testing.assert_array_equal(down[[0, -1]], long[[0, -1]])
    one = temporal_resample(np.ones((1, 4)), 64)
    assert one.shape == (64, 4) and (one == 1).all()
    same = temporal_resample(long[:64], 64)
    np.testing.assert_array_equal(same, long[:64])
    with pytest.raises(ValueError, match="empty"):
        temporal_resample(np.zeros((0, 3)), 64)


def test_build_window_is_enrich_of_resample() -> None:
    seq = np.random.default_rng(1).normal(size=(40, 225)).astype(np.float32)
    win = FE.build_window(seq)
    assert win.shape == (64, 469) and win.dtype == np.float32
    np.testing.assert_array_equal(win, FE.compute_enriched_features(temporal_resample(seq, 64)))
