"""The backend's frame decode (issue 24): the fast path (msgspec typed decode + one vectorised
conversion) gives exactly what the field-by-field path gives, bit for bit, and every invalid
frame still gets the field-by-field path's error, word for word."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from backend_patch.app.api.translate import FrameError, _decode_checked, _decode_typed, decode_frame
from backend_patch.app.ml import features as F
from backend_patch.app.ml import synthetic


def _frames() -> list[dict]:
    out = []
    for seed in range(3):
        for i, f in enumerate(synthetic.generate_stream(num_signs=2, seed=seed)):
            out.append(dict(f, frame_idx=i))
    return out


def _variants(frame: dict) -> list[dict]:
    """Well-formed variants: a hand missing, hips undetected, integer coordinates."""
    out = [frame]
    f = json.loads(json.dumps(frame))
    f["hands"]["left"] = None
    out.append(f)
    f = json.loads(json.dumps(frame))
    f["hands"] = {"right": frame["hands"]["right"]}  # "left" absent: same as null
    out.append(f)
    f = json.loads(json.dumps(frame))
    f["pose"][23] = [0, 0, 0.2]  # hips not seen: the shoulders are the centre
    out.append(f)
    f = json.loads(json.dumps(frame))
    f["pose"][5] = [1, 0, -1]
    out.append(f)
    return out


def test_fast_path_is_bit_identical_to_the_checked_path() -> None:
    n = 0
    for frame in _frames()[::3]:
        for variant in _variants(frame):
            text = json.dumps(variant)
            _decode_typed(text)  # the fast path applies (would raise otherwise)
            idx, fast = decode_frame(text)
            ref_idx, ref = _decode_checked(text)
            assert idx == ref_idx and fast.dtype == ref.dtype == np.float32
            assert np.array_equal(fast, ref)
            n += 1
    assert n > 100


BOTH_HANDS = next(f for f in _frames() if f["hands"]["left"] and f["hands"]["right"])


def _text_with(path: tuple, value: object) -> str:
    frame = json.loads(json.dumps(BOTH_HANDS))
    target = frame
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(frame)


GOOD = json.dumps(BOTH_HANDS)
INVALID = [
    _text_with(("hands", "left", 3, 1), float("nan")),  # NaN literal
    GOOD.replace('"pose": [[', '"pose": [[1e400, '),  # overflow to inf, 4 coordinates
    _text_with(("pose", 5, 0), 11.0),
    _text_with(("pose", 5, 0), 10**400),
    _text_with(("pose", 7, 1), True),
    _text_with(("pose", 7, 1), "0.5"),
    _text_with(("pose", 7, 1), None),
    _text_with(("hands", "left", 2), [0.1, 0.2]),
    _text_with(("hands", "right"), []),
    _text_with(("pose",), BOTH_HANDS["pose"][:32]),
    _text_with(("hands",), []),
    _text_with(("frame_idx",), -1),
    _text_with(("frame_idx",), True),
    _text_with(("frame_idx",), 1.0),
    GOOD[:-1],  # truncated
    GOOD + "x",  # trailing data
    "[]",
    "[" * 100_000,
    '{"frame_idx": 1, "frame_idx": -2, "hands": {}, "pose": []}',  # duplicate key: the last
]


@pytest.mark.parametrize("text", INVALID, ids=range(len(INVALID)))
def test_invalid_frames_get_the_checked_paths_error(text: str) -> None:
    with pytest.raises(FrameError) as ref:
        _decode_checked(text)
    with pytest.raises(FrameError) as got:
        decode_frame(text)
    assert (got.value.code, got.value.message, got.value.frame_idx) == (
        ref.value.code,
        ref.value.message,
        ref.value.frame_idx,
    )


def test_hand_motion_energy_equals_the_reference_formula() -> None:
    """Bit for bit the straightforward float64 formula (the segmenter's thresholds see the
    same numbers as before the rewrite)."""

    def reference(prev: np.ndarray, cur: np.ndarray) -> float:
        p = np.asarray(prev, dtype=np.float64)[:126].reshape(2, 21, 3)
        c = np.asarray(cur, dtype=np.float64)[:126].reshape(2, 21, 3)
        both = p.any(axis=(1, 2)) & c.any(axis=(1, 2))
        if not both.any():
            return 0.0
        return float(np.sqrt(((c[both] - p[both]) ** 2).sum(axis=2)).mean(axis=1).max())

    rng = np.random.default_rng(0)
    vectors = [decode_frame(json.dumps(f))[1] for f in _frames()]
    for _ in range(500):
        v = rng.normal(0, 2, F.RAW_DIM).astype(np.float32)
        v[F.LEFT_HAND] *= rng.random() < 0.7  # some hands missing
        v[F.RIGHT_HAND] *= rng.random() < 0.7
        vectors.append(v)
    for prev, cur in itertools.pairwise(vectors):
        assert F.hand_motion_energy(prev, cur) == reference(prev, cur)
