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


def normalize_points(
    left: Sequence[Sequence[float]] | None,
    right: Sequence[Sequence[float]] | None,
    pose: Sequence[Sequence[float]],
) -> np.ndarray | None:
    """The fast path of :func:`normalize_landmarks` for landmarks a typed decoder already checked.

    ``left``/``right``: 21 points or None, ``pose``: 33 points, each point 3 Python floats
    (e.g. ``msgspec`` tuples). Returns float32[225], bit for bit what normalize_landmarks
    returns for the same frame, or None when the counts or a value's range are wrong: the
    caller then takes normalize_landmarks for the error that names the field. One C-level
    pass (``np.fromiter`` over the chained points) replaces the per-part list walking.
    """
    if (
        len(pose) != NUM_POSE_LANDMARKS
        or (left is not None and len(left) != NUM_HAND_LANDMARKS)
        or (right is not None and len(right) != NUM_HAND_LANDMARKS)
    ):
        return None
    values = np.fromiter(
        chain(
            _ZERO_HAND if left is None else chain.from_iterable(left),
            _ZERO_HAND if right is None else chain.from_iterable(right),
            chain.from_iterable(pose),
        ),
        np.float64,
        RAW_DIM,
    )
    # Two reductions, no temporary (the ufuncs' own reduce: np.max's Python wrapper costs as
    # much again on 225 values); inf fails them, NaN cannot come from JSON through a typed
    # decoder (and fails ``<=`` anyway).
    if not (_max(values) <= MAX_ABS_COORD and _min(values) >= -MAX_ABS_COORD):
        return None
    # The reference points straight from the decoded floats (the same numbers as the array's).
    return _centre_and_scale(
        values,
        pose[LEFT_HIP],
        pose[RIGHT_HIP],
        pose[LEFT_SHOULDER],
        pose[RIGHT_SHOULDER],
        left is not None,
        right is not None,
    )


_max = np.maximum.reduce
_min = np.minimum.reduce


def hand_motion_energy(prev: np.ndarray, cur: np.ndarray) -> float:
    """Hand motion between two normalised frames (float[225]), in shoulder widths per frame.

    For each hand detected in both frames: the mean Euclidean displacement of its 21
    landmarks. The result is the larger of the two hands (so a still hand does not dilute a
    moving one) and 0.0 when no hand is seen in both frames: a hand appearing or vanishing is
    a detection event, not motion.

    Computed in float64 with the same numpy reductions as a straightforward
    ``sqrt(((c - p) ** 2).sum(axis=2)).mean(axis=1)``, so bit for bit the same value, in
    fewer and cheaper calls (it runs on every frame of every session).
    """
    return hand_motion_between(prev, cur, hands_seen(prev), hands_seen(cur))


def hands_seen(frame: np.ndarray) -> tuple[bool, bool]:
    """(left, right): whether each hand of a normalised frame has a non-zero value (a hand
    that was not detected is all zeros). The segmenter computes it once per frame."""
    hands = np.asarray(frame)[: 2 * HAND_DIM].reshape(2, HAND_DIM)
    seen: list[bool] = np.logical_or.reduce(hands, axis=1).tolist()
    return seen[0], seen[1]


def hand_motion_between(
    prev: np.ndarray, cur: np.ndarray, prev_seen: tuple[bool, bool], cur_seen: tuple[bool, bool]
) -> float:
    """:func:`hand_motion_energy` with each frame's :func:`hands_seen` already known."""
    left = prev_seen[0] and cur_seen[0]
    right = prev_seen[1] and cur_seen[1]
    if not (left or right):
        return 0.0
    p = np.asarray(prev)[: 2 * HAND_DIM]
    c = np.asarray(cur)[: 2 * HAND_DIM]
    d = np.subtract(c, p, dtype=np.float64)  # both cast to float64 first, as before
    np.multiply(d, d, out=d)
    disp = np.add.reduce(d.reshape(2, NUM_HAND_LANDMARKS, 3), axis=2)
    np.sqrt(disp, out=disp)  # [2 hands, 21]
    means: list[float] = (np.add.reduce(disp, axis=1) / NUM_HAND_LANDMARKS).tolist()
    mean_left, mean_right = means
    if left and right:
        # np.max's answer, NaN included (a NaN cannot come from validated frames anyway).
        return mean_left if mean_left >= mean_right or mean_left != mean_left else mean_right
    return mean_left if left else mean_right


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
    p = values[2 * HAND_DIM :].tolist()
    return _centre_and_scale(
        values,
        p[3 * LEFT_HIP : 3 * LEFT_HIP + 3],
        p[3 * RIGHT_HIP : 3 * RIGHT_HIP + 3],
        p[3 * LEFT_SHOULDER : 3 * LEFT_SHOULDER + 3],
        p[3 * RIGHT_SHOULDER : 3 * RIGHT_SHOULDER + 3],
        has_left,
        has_right,
    )


def _centre_and_scale(
    values: np.ndarray,
    hl: Sequence[float],
    hr: Sequence[float],
    sl: Sequence[float],
    sr: Sequence[float],
    has_left: bool,
    has_right: bool,
) -> np.ndarray:
    """float64[225] ``values`` (modified in place) -> normalised float32[225].

    ``hl``, ``hr``, ``sl``, ``sr``: the hips and shoulders (x, y, z) as Python floats, the same
    numbers as in ``values``: scalar arithmetic on them is cheaper than numpy calls.
    """
    # A landmark MediaPipe did not detect arrives as zeros; fall back to the shoulders then.
    hips_seen = (hl[0] != 0.0 or hl[1] != 0.0) and (hr[0] != 0.0 or hr[1] != 0.0)
    a, b = (hl, hr) if hips_seen else (sl, sr)
    # Width in the image plane only: MediaPipe's z is a noisy estimate.
    width = math.hypot(sl[0] - sr[0], sl[1] - sr[1])
    scale = max(width, MIN_BODY_SCALE)
    # In place (``values`` is this call's own array): the same float64 arithmetic in fewer
    # calls; the product is computed in float64 and rounded to float32 on output, as astype
    # did after it.
    points = values.reshape(-1, 3)
    np.subtract(points, ((a[0] + b[0]) * 0.5, (a[1] + b[1]) * 0.5, (a[2] + b[2]) * 0.5), out=points)
    out = np.empty(RAW_DIM, np.float32)
    np.multiply(values, 1.0 / scale, out=out)
    if not has_left:
        out[LEFT_HAND] = 0.0
    if not has_right:
        out[RIGHT_HAND] = 0.0
    return out


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
