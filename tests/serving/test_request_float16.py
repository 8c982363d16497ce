"""Float16 request bodies (issue 24, the per-byte question): half the bytes of the float32
window, told apart by length, widened to float32 before the model; everything else as before."""

from __future__ import annotations

import numpy as np
import pytest

from serving import request_parser as rp


def test_float16_body_is_the_rounded_window_in_float32() -> None:
    window = np.random.default_rng(3).normal(0, 2, (rp.SEQ_LEN, rp.FEATURE_DIM))
    raw = window.astype("<f2").tobytes()
    assert len(raw) == rp.WINDOW_BYTES_F16 == rp.WINDOW_BYTES // 2
    got = rp.window_from_bytes(raw)
    assert got.dtype == np.float32 and got.shape == (rp.SEQ_LEN, rp.FEATURE_DIM)
    assert np.array_equal(got, window.astype(np.float16).astype(np.float32))
    # float32 bodies are unchanged
    assert np.array_equal(
        rp.window_from_bytes(window.astype("<f4").tobytes()), window.astype("<f4")
    )


def test_float16_body_is_checked_like_any_window() -> None:
    window = np.zeros((rp.SEQ_LEN, rp.FEATURE_DIM), dtype="<f2")
    window[3, 7] = np.inf
    with pytest.raises(rp.RequestError) as err:
        rp.window_from_bytes(window.tobytes())
    assert err.value.status == 422 and err.value.field == "body[3][7]"  # as a float32 body
    with pytest.raises(rp.RequestError, match=r"expected 120064 .* or 60032 \(float16\)"):
        rp.window_from_bytes(b"\0" * (rp.WINDOW_BYTES_F16 + 2))
