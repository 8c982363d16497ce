"""Logits -> predictions: temperature softmax and top-k, shared by both inference paths.

numpy only: this module is also copied to the top level of the TorchServe archive, so the local
pipeline and the handler produce identical answers from identical logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Prediction = dict[str, Any]
"""``{"prediction": str, "confidence": float, "alternatives": [{"label", "confidence"}]}``."""


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``logits`` [B, C] / temperature, last axis (float64)."""
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature: expected a finite number > 0, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def softmax_top_k(
    logits: np.ndarray, labels: Sequence[str], temperature: float = 1.0, k: int = 4
) -> list[Prediction]:
    """One prediction per row of ``logits`` [B, C] (a 1-D [C] is one row).

    ``alternatives`` holds the top-k classes (the top-1 included) by descending confidence;
    ties keep the lower class index first. Raises ValueError when the label count does not match
    C, the logits are not finite, k < 1 or the temperature is not > 0.
    """
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"logits: expected [B, C], got shape {arr.shape}")
    if arr.shape[1] != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {arr.shape[1]} logits per row")
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    if not np.isfinite(arr).all():
        raise ValueError("logits: not all finite")
    probs = softmax(arr, temperature)
    k = min(k, arr.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(probs, order, axis=1)
    out: list[Prediction] = []
    for idx_row, p_row in zip(order.tolist(), top.tolist(), strict=True):
        alts = [{"label": labels[i], "confidence": p} for i, p in zip(idx_row, p_row, strict=True)]
        out.append(
            {
                "prediction": alts[0]["label"],
                "confidence": alts[0]["confidence"],
                "alternatives": alts,
            }
        )
    return out
