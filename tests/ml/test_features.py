"""normalize_landmarks and hand_motion_energy against values computed by hand."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from backend_patch.app.ml import features as F


def make_frame(left: bool = True, right: bool = True) -> dict:
    """A frame whose hips are at (0.5, 0.8), shoulders 0.2 apart at y=0.5."""
    pose = [[0.5, 0.5, 0.0] for _ in range(33)]
    pose[11] = [0.6, 0.5, 0.0]
    pose[12] = [0.4, 0.5, 0.0]
    pose[23] = [0.55, 0.8, 0.1]
    pose[24] = [0.45, 0.8, -0.1]
    hand = [[0.3 + 0.01 * i, 0.4, 0.0] for i in range(21)]
    return {
        "frame_idx": 0,
        "timestamp": 0.0,
        "hands": {"left": hand if left else None, "right": copy.deepcopy(hand) if right else None},
        "pose": pose,
    }


def test_centre_and_scale_by_hand() -> None:
    out = F.normalize_landmarks(make_frame())
    assert out.dtype == np.float32 and out.shape == (F.RAW_DIM,)
    # centre (0.5, 0.8, 0.0), scale 0.2: hand point 0 (0.3, 0.4, 0) -> (-1, -2, 0)
    np.testing.assert_allclose(out[0:3], [-1.0, -2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[63 + 3 : 63 + 6], [-0.95, -2.0, 0.0], atol=1e-6)
    pose = out[126:].reshape(33, 3)
    np.testing.assert_allclose(pose[11], [0.5, -1.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(pose[23], [0.25, 0.0, 0.5], atol=1e-6)


def test_missing_hips_fall_back_to_shoulders() -> None:
    frame = make_frame()
    frame["pose"][23] = [0.0, 0.0, 0.0]
    frame["pose"][24] = [0.0, 0.0, 0.0]
    out = F.normalize_landmarks(frame)
    # centre = shoulder centre (0.5, 0.5, 0)
    np.testing.assert_allclose(out[0:3], [-1.0, -0.5, 0.0], atol=1e-6)


def test_degenerate_shoulders_use_the_floor() -> None:
    frame = make_frame()
    frame["pose"][11] = [0.5, 0.5, 0.0]
    frame["pose"][12] = [0.5, 0.5, 0.0]
    out = F.normalize_landmarks(frame)
    np.testing.assert_allclose(out[0:2], np.array([-0.2, -0.4]) / F.MIN_BODY_SCALE, rtol=1e-5)


def test_missing_hand_is_zeros_and_json_roundtrip_is_identical() -> None:
    frame = make_frame(left=False)
    out = F.normalize_landmarks(frame)
    assert not out[F.LEFT_HAND].any() and out[F.RIGHT_HAND].any()
    np.testing.assert_array_equal(out, F.normalize_landmarks(json.loads(json.dumps(frame))))


def test_numpy_arrays_and_tuples_are_accepted() -> None:
    frame = make_frame()
    ref = F.normalize_landmarks(frame)
    frame["pose"] = np.array(frame["pose"])
    frame["hands"]["left"] = tuple(tuple(p) for p in frame["hands"]["left"])
    np.testing.assert_allclose(F.normalize_landmarks(frame), ref, atol=1e-6)


def _set(frame: dict, path: tuple, value: object) -> dict:
    target = frame
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return frame


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (("hands", "left", 3, 1), float("nan"), "hands.left[3][1]", "not a finite number"),
        (("hands", "right", 0, 2), float("inf"), "hands.right[0][2]", "not a finite number"),
        (("pose", 5, 0), 11.0, "pose[5][0]", "out of range"),
        (("pose", 5, 0), -1e300, "pose[5][0]", "out of range"),
        (("pose", 7, 1), True, "pose[7][1]", "not a number"),
        (("pose", 7, 1), "0.5", "pose[7][1]", "not a number"),
        (("pose", 7, 1), None, "pose[7][1]", "not a number"),
        (("pose", 7, 1), [0.1], "pose[7][1]", "not a number"),
        (("hands", "left", 2), [0.1, 0.2], "hands.left[2]", "3 coordinates"),
        (("hands", "left", 2), "abc", "hands.left[2]", "expected [x, y, z]"),
        (("hands", "left", 2), 0.5, "hands.left[2]", "expected [x, y, z]"),
        (("hands", "left", 2), {"x": 1, "y": 2, "z": 3}, "hands.left[2]", "expected [x, y, z]"),
        (("pose", 32), [0.1, 0.2, 0.3, 0.4], "pose[32]", "3 coordinates"),
        (("hands", "right"), "none", "hands.right", "expected a list"),
        (("hands", "right"), [], "hands.right", "expected 21 landmarks, got 0"),
        (("pose",), None, "pose", "got null"),
        (("hands",), [], "hands", "expected an object"),
    ],
)
def test_every_validation_failure_names_its_field(
    path: tuple, value: object, field: str, words: str
) -> None:
    frame = _set(make_frame(), path, value)
    with pytest.raises(F.LandmarkError) as info:
        F.normalize_landmarks(frame)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_wrong_counts_and_missing_keys() -> None:
    frame = make_frame()
    frame["pose"] = frame["pose"][:32]
    with pytest.raises(F.LandmarkError, match=r"^pose: expected 33 landmarks, got 32"):
        F.normalize_landmarks(frame)
    with pytest.raises(F.LandmarkError, match=r"^hands: missing"):
        F.normalize_landmarks({"pose": make_frame()["pose"]})
    with pytest.raises(F.LandmarkError, match=r"^pose: missing"):
        F.normalize_landmarks({"hands": {"left": None, "right": None}})
    with pytest.raises(F.LandmarkError, match=r"^frame: expected an object"):
        F.normalize_landmarks([1, 2, 3])  # type: ignore[arg-type]


def test_hand_motion_energy_by_hand() -> None:
    a = F.normalize_landmarks(make_frame())
    b = a.copy()
    b[0:63] += np.tile([0.3, 0.4, 0.0], 21)  # left hand moves by 0.5, right still
    assert math.isclose(F.hand_motion_energy(a, b), 0.5, rel_tol=1e-6)
    assert F.hand_motion_energy(a, a) == 0.0
    none = a.copy()
    none[:126] = 0.0
    assert F.hand_motion_energy(none, a) == 0.0  # a hand appearing is not motion
