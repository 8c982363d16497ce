"""softmax_top_k: ordering, temperature, stability, errors."""

from __future__ import annotations

import numpy as np
import pytest

from backend_patch.app.ml.predictions import softmax_top_k

LABELS = ["a", "b", "c", "d", "e"]


def test_order_and_format() -> None:
    preds = softmax_top_k(np.array([[1.0, 3.0, 2.0, 0.0, -1.0]]), LABELS, 1.0, k=4)
    assert len(preds) == 1
    p = preds[0]
    assert p["prediction"] == "b"
    assert [a["label"] for a in p["alternatives"]] == ["b", "c", "a", "d"]
    confs = [a["confidence"] for a in p["alternatives"]]
    assert confs == sorted(confs, reverse=True)
    assert all(type(c) is float for c in confs)
    assert p["confidence"] == confs[0]
    e = np.exp([1.0, 3.0, 2.0, 0.0, -1.0])
    assert p["confidence"] == pytest.approx(e[1] / e.sum())


def test_temperature_flattens_and_sharpens() -> None:
    logits = np.array([[2.0, 1.0, 0.0, 0.0, 0.0]])
    c1 = softmax_top_k(logits, LABELS, 1.0)[0]["confidence"]
    hot = softmax_top_k(logits, LABELS, 4.0)[0]["confidence"]
    cold = softmax_top_k(logits, LABELS, 0.25)[0]["confidence"]
    assert cold > c1 > hot > 0.2


def test_stable_with_huge_logits_and_batches() -> None:
    preds = softmax_top_k(np.array([[1e4, 0, 0, 0, 0], [0, 0, 0, 0, 1e4]]), LABELS, 1.0, k=2)
    assert [p["prediction"] for p in preds] == ["a", "e"]
    assert preds[0]["confidence"] == pytest.approx(1.0)
    assert len(preds[0]["alternatives"]) == 2


def test_errors() -> None:
    with pytest.raises(ValueError, match="labels"):
        softmax_top_k(np.zeros((1, 4)), LABELS, 1.0)
    with pytest.raises(ValueError, match="temperature"):
        softmax_top_k(np.zeros((1, 5)), LABELS, 0.0)
    with pytest.raises(ValueError, match="finite"):
        softmax_top_k(np.full((1, 5), np.nan), LABELS, 1.0)
