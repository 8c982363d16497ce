"""Landmark validation and normalisation: one MediaPipe-shaped frame -> float32[225].

A frame is the JSON object the client sends per camera frame::

    {"frame_idx": int, "timestamp": float,
     "hands": {"left": [[x, y, z] x 21] | null, "right": [[x, y, z] x 21] | null},
     "pose": [[x, y, z] x 33]}

The output is left hand (63) + right hand (63) + pose (99), centred on the hip centre (the
shoulder centre when the hips are not detected) and divided by the shoulder width, floored so a
degenerate pose cannot blow values up. A hand that is not detected is all zeros.

numpy only: this module is also copied to the top level of the TorchServe archive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

NUM_HAND_LANDMARKS = 21
NUM_POSE_LANDMARKS = 33
HAND_DIM = NUM_HAND_LANDMARKS * 3  # 63
POSE_DIM = NUM_POSE_LANDMARKS * 3  # 99
RAW_DIM = 2 * HAND_DIM + POSE_DIM  # 225

# Slices of the 225-vector.
LEFT_HAND = slice(0, HAND_DIM)
RIGHT_HAND = slice(HAND_DIM, 2 * HAND_DIM)
POSE = slice(2 * HAND_DIM, RAW_DIM)

# MediaPipe pose indices used for the body frame of reference.
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
LEFT_HIP, RIGHT_HIP = 23, 24

# MediaPipe coordinates are normalised to the image (x, y in [0, 1], z of the same scale);
# landmarks slightly out of frame are legitimate, magnitudes above this are garbage.
MAX_ABS_COORD = 10.0
# Shoulder width in image units below which the pose is considered degenerate (a real body
# filling less than 2 % of the image width is not a usable signer).
MIN_BODY_SCALE = 0.02

# Hand motion energy (mean landmark displacement per frame, in shoulder widths) that separates
# signing from rest for the synthetic signers of synthetic.py at 30 fps: rest jitter stays
# below ~0.01, the movement into a sign and most of its frames are well above 0.05.
DEFAULT_MOTION_THRESHOLD = 0.025

_NUMBER_TYPES = frozenset({float, int})


class LandmarkError(ValueError):
    """Invalid landmarks: ``field`` names the bad field (e.g. ``hands.left[3][1]``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def normalize_landmarks(frame: Mapping[str, Any]) -> np.ndarray:
    """Validate one frame and return its normalised landmarks as float32[225].

    Raises LandmarkError (a ValueError) naming the first invalid field: missing keys, wrong
    landmark counts, non-numbers (bools and strings included), NaN/inf, |value| > MAX_ABS_COORD.
    """
    if not isinstance(frame, Mapping):
        raise LandmarkError("frame", f"expected an object, got {_type_name(frame)}")
    hands = frame.get("hands")
    if not isinstance(hands, Mapping):
        if "hands" not in frame:
            raise LandmarkError("hands", "missing")
        raise LandmarkError(
            "hands", f"expected an object with 'left' and 'right', got {_type_name(hands)}"
        )
    if "pose" not in frame:
        raise LandmarkError("pose", "missing")
    left = hands.get("left")
    right = hands.get("right")
    pose = frame["pose"]

    values = _fast_points(left, right, pose)
    if values is None:
        # Slow path, only for bad or unusual input (numpy arrays, numpy scalars): walk the
        # structure so the error names the exact field.
        values = np.concatenate(
            [
                _checked_points(left, NUM_HAND_LANDMARKS, "hands.left", optional=True),
                _checked_points(right, NUM_HAND_LANDMARKS, "hands.right", optional=True),
                _checked_points(pose, NUM_POSE_LANDMARKS, "pose", optional=False),
            ]
        )
    ok = np.abs(values) <= MAX_ABS_COORD  # False for NaN and inf too: one pass checks all three
    if not ok.all():
        _raise_bad_value(values, ok, left is not None, right is not None)
    return _normalise(values, left is not None, right is not None)


def hand_motion_energy(prev: np.ndarray, cur: np.ndarray) -> float:
    """Hand motion between two normalised frames (float[225]), in shoulder widths per frame.

    For each hand detected in both frames: the mean Euclidean displacement of its 21
    landmarks. The result is the larger of the two hands (so a still hand does not dilute a
    moving one) and 0.0 when no hand is seen in both frames: a hand appearing or vanishing is
    a detection event, not motion.
    """
    p = np.asarray(prev, dtype=np.float64)[: 2 * HAND_DIM].reshape(2, NUM_HAND_LANDMARKS, 3)
    c = np.asarray(cur, dtype=np.float64)[: 2 * HAND_DIM].reshape(2, NUM_HAND_LANDMARKS, 3)
    both = p.any(axis=(1, 2)) & c.any(axis=(1, 2))
    if not both.any():
        return 0.0
    disp = np.sqrt(((c[both] - p[both]) ** 2).sum(axis=2))  # [hands, 21]
    return float(disp.mean(axis=1).max())


def _fast_points(left: Any, right: Any, pose: Any) -> np.ndarray | None:
    """Flatten well-formed JSON lists into float64[225] with C-level checks, else None."""
    flat: list[Any] = []
    for part, count in ((left, NUM_HAND_LANDMARKS), (right, NUM_HAND_LANDMARKS)):
        if part is None:
            flat.extend(_ZERO_HAND)
            continue
        got = _flat_list(part, count)
        if got is None:
            return None
        flat.extend(got)
    got = _flat_list(pose, NUM_POSE_LANDMARKS)
    if got is None:
        return None
    flat.extend(got)
    # Exact type test: rejects bool (a subclass of int), str, None, nested lists, numpy scalars.
    if not _NUMBER_TYPES.issuperset(map(type, flat)):
        return None
    try:
        return np.array(flat, dtype=np.float64)
    except OverflowError:  # an int too large for a float
        return None


def _flat_list(part: Any, count: int) -> list[Any] | None:
    if type(part) is not list or len(part) != count:
        return None
    try:
        # C-level checks only (the per-frame budget is tens of microseconds). A row that is a
        # string or an object flattens into non-numbers, which the type test then rejects.
        if set(map(len, part)) != _THREE:
            return None
    except TypeError:  # a row without a length (a number, null)
        return None
    return list(chain.from_iterable(part))


_THREE = {3}
_ZERO_HAND = [0.0] * HAND_DIM


def _checked_points(value: Any, count: int, field: str, *, optional: bool) -> np.ndarray:
    """Validate one landmark list (or array) and return it as float64[count*3]."""
    if value is None:
        if optional:
            return np.zeros(count * 3, dtype=np.float64)
        raise LandmarkError(field, f"expected {count} landmarks, got null")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise LandmarkError(field, f"expected numbers, got an array of {value.dtype}")
        if value.shape != (count, 3):
            raise LandmarkError(field, f"expected shape ({count}, 3), got {value.shape}")
        return value.astype(np.float64).reshape(-1)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        expected = f"{count} landmarks" + (" or null" if optional else "")
        raise LandmarkError(field, f"expected a list of {expected}, got {_type_name(value)}")
    if len(value) != count:
        raise LandmarkError(field, f"expected {count} landmarks, got {len(value)}")
    out = np.empty((count, 3), dtype=np.float64)
    for i, point in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(point, (str, bytes, Mapping)) or not isinstance(
            point, (Sequence, np.ndarray)
        ):
            raise LandmarkError(where, f"expected [x, y, z], got {_type_name(point)}")
        if len(point) != 3:
            raise LandmarkError(where, f"expected 3 coordinates [x, y, z], got {len(point)}")
        for j, v in enumerate(point):
            if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (int, float, np.integer, np.floating)
            ):
                raise LandmarkError(f"{where}[{j}]", f"not a number (got {_type_name(v)})")
            try:
                out[i, j] = float(v)
            except OverflowError:
                raise LandmarkError(f"{where}[{j}]", "not a finite number") from None
    return out.reshape(-1)


def _raise_bad_value(values: np.ndarray, ok: np.ndarray, has_left: bool, has_right: bool) -> None:
    idx = int(np.flatnonzero(~ok)[0])
    v = values[idx]
    if idx < HAND_DIM:
        base, off = "hands.left", idx
    elif idx < 2 * HAND_DIM:
        base, off = "hands.right", idx - HAND_DIM
    else:
        base, off = "pose", idx - 2 * HAND_DIM
    field = f"{base}[{off // 3}][{off % 3}]"
    if not np.isfinite(v):
        raise LandmarkError(field, "not a finite number")
    raise LandmarkError(field, f"out of range: |{v:.6g}| > {MAX_ABS_COORD:g}")


def _normalise(values: np.ndarray, has_left: bool, has_right: bool) -> np.ndarray:
    # Scalar arithmetic on the few reference points: cheaper than numpy calls on tiny arrays.
    p = values[2 * HAND_DIM :].tolist()
    lh, rh = 3 * LEFT_HIP, 3 * RIGHT_HIP
    ls, rs = 3 * LEFT_SHOULDER, 3 * RIGHT_SHOULDER
    # A landmark MediaPipe did not detect arrives as zeros; fall back to the shoulders then.
    hips_seen = (p[lh] != 0.0 or p[lh + 1] != 0.0) and (p[rh] != 0.0 or p[rh + 1] != 0.0)
    a, b = (lh, rh) if hips_seen else (ls, rs)
    centre = np.array(
        [(p[a] + p[b]) * 0.5, (p[a + 1] + p[b + 1]) * 0.5, (p[a + 2] + p[b + 2]) * 0.5]
    )
    # Width in the image plane only: MediaPipe's z is a noisy estimate.
    width = math.hypot(p[ls] - p[rs], p[ls + 1] - p[rs + 1])
    scale = max(width, MIN_BODY_SCALE)
    out = ((values.reshape(-1, 3) - centre) * (1.0 / scale)).astype(np.float32).reshape(-1)
    if not has_left:
        out[LEFT_HAND] = 0.0
    if not has_right:
        out[RIGHT_HAND] = 0.0
    return np.asarray(out)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__
