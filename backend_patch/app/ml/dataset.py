"""Sequence utilities: temporal resampling of landmark sequences to the model's length.

numpy only: this module is also copied to the top level of the TorchServe archive.
"""

from __future__ import annotations

import numpy as np


def temporal_resample(seq: np.ndarray, target_len: int = 64) -> np.ndarray:
    """Linearly resample ``seq`` [T, D] along time to [target_len, D].

    The first and last frames are kept exactly; a single frame is repeated. The result has the
    input's floating dtype (float32 for integer input). Raises ValueError on an empty or
    non-2-D sequence or a target_len < 1.
    """
    arr = np.asarray(seq)
    if arr.ndim != 2:
        raise ValueError(f"seq: expected a 2-D array [T, D], got shape {arr.shape}")
    if target_len < 1:
        raise ValueError(f"target_len: expected >= 1, got {target_len}")
    t = arr.shape[0]
    if t == 0:
        raise ValueError("seq: empty sequence (0 frames)")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if t == target_len:
        return arr.copy()
    if t == 1:
        return np.repeat(arr, target_len, axis=0)
    if target_len == 1:
        return arr[:1].copy()
    pos = np.linspace(0.0, t - 1, target_len)
    lo = np.minimum(pos.astype(np.intp), t - 2)
    frac = (pos - lo).astype(arr.dtype)[:, None]
    out = arr[lo] + (arr[lo + 1] - arr[lo]) * frac
    # Exact endpoints whatever rounding the interpolation did.
    out[0] = arr[0]
    out[-1] = arr[-1]
    return np.asarray(out)
