"""Enriched per-frame features: normalised landmarks [T, 225] -> [T, 469], and the model window.

Layout of the 469 features of one frame:

====================  =====  ==========================================================
coordinates           225    the normalised landmarks (left hand, right hand, pose)
velocities            225    frame-to-frame difference, first frame zero; zero for a hand
                             not detected in either of the two frames
inter-hand distances    5    wrist-wrist, then thumb, index, middle and pinky tip pairs
arm joint angles        4    left elbow, right elbow, left wrist, right wrist (radians)
hand shape             10    per hand (left then right): openness, then index, middle,
                             ring and pinky tip-to-wrist extension
====================  =====  ==========================================================

Features of a hand that is not detected are zero. Fully vectorised over frames.
numpy only: this module is also copied to the top level of the TorchServe archive.
"""

from __future__ import annotations

import numpy as np

try:
    from .dataset import temporal_resample
    from .features import HAND_DIM, NUM_HAND_LANDMARKS, NUM_POSE_LANDMARKS, RAW_DIM
except ImportError:  # inside the TorchServe archive the modules are top-level
    from dataset import temporal_resample  # type: ignore[no-redef]
    from features import (  # type: ignore[no-redef]
        HAND_DIM,
        NUM_HAND_LANDMARKS,
        NUM_POSE_LANDMARKS,
        RAW_DIM,
    )

SEQ_LEN = 64
NUM_DISTANCES = 5
NUM_ANGLES = 4
NUM_SHAPE = 10
FEATURE_DIM = 2 * RAW_DIM + NUM_DISTANCES + NUM_ANGLES + NUM_SHAPE  # 469

# Offsets of the blocks inside the 469-vector.
COORDS = slice(0, RAW_DIM)
VELOCITIES = slice(RAW_DIM, 2 * RAW_DIM)
DISTANCES = slice(2 * RAW_DIM, 2 * RAW_DIM + NUM_DISTANCES)
ANGLES = slice(DISTANCES.stop, DISTANCES.stop + NUM_ANGLES)
SHAPE = slice(ANGLES.stop, ANGLES.stop + NUM_SHAPE)

# MediaPipe hand indices.
WRIST = 0
FINGERTIPS = np.array([4, 8, 12, 16, 20])  # thumb, index, middle, ring, pinky
PALM = np.array([0, 5, 9, 13, 17])  # wrist and the four finger bases (MCP)
# Landmarks paired across hands for the inter-hand distances.
DISTANCE_POINTS = np.array([WRIST, 4, 8, 12, 20])
# Fingertips whose distance to the wrist measures extension (the thumb's is in openness).
EXTENSION_TIPS = np.array([8, 12, 16, 20])
# Pose joint triplets (a, vertex, b): the angle at the vertex between vertex->a and vertex->b.
ANGLE_TRIPLETS = np.array(
    [
        [11, 13, 15],  # left elbow: shoulder-elbow-wrist
        [12, 14, 16],  # right elbow
        [13, 15, 19],  # left wrist: elbow-wrist-index
        [14, 16, 20],  # right wrist
    ]
)


def compute_enriched_features(seq: np.ndarray) -> np.ndarray:
    """Enrich normalised landmarks ``seq`` [T, 225] into float32 [T, 469] (see module doc)."""
    x = np.asarray(seq, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != RAW_DIM:
        raise ValueError(f"seq: expected shape [T, {RAW_DIM}], got {x.shape}")
    t = x.shape[0]
    out = np.zeros((t, FEATURE_DIM), dtype=np.float32)
    out[:, COORDS] = x
    if t == 0:
        return out

    hands = x[:, : 2 * HAND_DIM].reshape(t, 2, NUM_HAND_LANDMARKS, 3)
    pose = x[:, 2 * HAND_DIM :].reshape(t, NUM_POSE_LANDMARKS, 3)
    seen = np.asarray(hands.any(axis=(2, 3)))  # [T, 2]

    # Velocities; a hand appearing or vanishing is not motion, so its velocity is zero then.
    vel = np.zeros_like(x)
    vel[1:] = x[1:] - x[:-1]
    both_seen = np.zeros_like(seen)
    both_seen[1:] = seen[1:] & seen[:-1]
    vel[:, : 2 * HAND_DIM] *= np.repeat(both_seen, HAND_DIM, axis=1)
    out[:, VELOCITIES] = vel

    # Inter-hand distances, zero unless both hands are seen.
    pairs = hands[:, 0, DISTANCE_POINTS] - hands[:, 1, DISTANCE_POINTS]  # [T, 5, 3]
    both = np.asarray(seen.all(axis=1))  # [T]
    out[:, DISTANCES] = np.linalg.norm(pairs, axis=2) * both[:, None]

    out[:, ANGLES] = _joint_angles(pose)

    # Hand shape: openness = mean fingertip distance to the palm centre; extensions.
    palm_centre = hands[:, :, PALM].mean(axis=2, keepdims=True)  # [T, 2, 1, 3]
    openness = np.linalg.norm(hands[:, :, FINGERTIPS] - palm_centre, axis=3).mean(axis=2)
    ext = np.linalg.norm(hands[:, :, EXTENSION_TIPS] - hands[:, :, WRIST : WRIST + 1], axis=3)
    shape = np.concatenate([openness[:, :, None], ext], axis=2) * seen[:, :, None]  # [T, 2, 5]
    out[:, SHAPE] = shape.reshape(t, NUM_SHAPE)
    return out


def build_window(seq: np.ndarray) -> np.ndarray:
    """THE model window of both inference paths: enrich(resample(seq, 64)) -> float32 [64, 469]."""
    arr = np.asarray(seq, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != RAW_DIM:
        raise ValueError(f"seq: expected shape [T, {RAW_DIM}], got {arr.shape}")
    return compute_enriched_features(temporal_resample(arr, SEQ_LEN))


def _joint_angles(pose: np.ndarray) -> np.ndarray:
    """Angles (radians, in [0, pi]) at ANGLE_TRIPLETS vertices; 0 where a limb has length 0."""
    a = pose[:, ANGLE_TRIPLETS[:, 0]] - pose[:, ANGLE_TRIPLETS[:, 1]]  # [T, 4, 3]
    b = pose[:, ANGLE_TRIPLETS[:, 2]] - pose[:, ANGLE_TRIPLETS[:, 1]]
    na = np.linalg.norm(a, axis=2)
    nb = np.linalg.norm(b, axis=2)
    denom = na * nb
    valid = denom > 1e-12
    cos = np.einsum("tjk,tjk->tj", a, b) / np.where(valid, denom, 1.0)
    return np.where(valid, np.arccos(np.clip(cos, -1.0, 1.0)), 0.0)
