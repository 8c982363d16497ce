"""The handler inside a real TorchServe: batching, parity with the local path, per-request
errors inside a batch, the three body formats, token auth. One shared TorchServe."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import (
    MODELS,
    OCTET,
    batches_by_size,
    post_many,
    scrape,
    window_bytes,
)

from backend_patch.app.ml import feature_engineering, features, predictions, synthetic
from backend_patch.app.ml.model import load_artifacts, predict_logits
from serving.local import LocalTorchServe

pytestmark = pytest.mark.slow


def _segments(n: int, seed: int) -> list[list[dict]]:
    """``n`` synthetic sign recordings (landmark frames without ``truth``)."""
    rng = np.random.default_rng(seed)
    labels = synthetic.SIGN_CLASSES
    out = []
    for i in range(n):
        frames = synthetic.sample_segment(labels[i % len(labels)], rng)
        out.append([{k: v for k, v in f.items() if k != "truth"} for f in frames])
    return out


def _window(frames: list[dict]) -> np.ndarray:
    seq = np.stack([features.normalize_landmarks(f) for f in frames])
    return feature_engineering.build_window(seq)


def _predict_url(ts: LocalTorchServe) -> str:
    return f"{ts.inference_url}/predictions/signflow"


async def test_concurrent_requests_are_batched_and_metric_agrees(
    torchserve: LocalTorchServe,
) -> None:
    windows = [_window(f) for f in _segments(32, seed=1)]
    before = batches_by_size(scrape(torchserve.metrics_url))
    answers = await post_many(
        _predict_url(torchserve),
        [(window_bytes(w), OCTET) for w in windows],
        torchserve.auth_headers(),
    )
    assert [s for s, _ in answers] == [200] * 32
    sizes = Counter(doc["batch_size"] for _, doc in answers)
    assert max(sizes) > 1, f"no batching happened: {sizes}"
    # Each batch of n answers n requests with batch_size n: that many batches of that size.
    expected = {n: count / n for n, count in sizes.items()}
    assert all(count % n == 0 for n, count in sizes.items()), sizes
    # Metrics travel worker -> frontend asynchronously: poll briefly for them to land.
    deadline = time.monotonic() + 10
    while True:
        after = batches_by_size(scrape(torchserve.metrics_url))
        delta = {n: after.get(n, 0) - before.get(n, 0) for n in after}
        delta = {n: d for n, d in delta.items() if d}
        if delta == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delta == expected


async def test_parity_with_local_pipeline(torchserve: LocalTorchServe) -> None:
    windows = [_window(f) for f in _segments(200, seed=2)]
    local = load_artifacts(MODELS / "1.0", device="cpu")
    logits = predict_logits(local, np.stack(windows))
    expected = predictions.softmax_top_k(logits, local.labels, local.temperature, k=4)
    answers = await post_many(
        _predict_url(torchserve),
        [(window_bytes(w), OCTET) for w in windows],
        torchserve.auth_headers(),
    )
    for i, ((status, doc), want) in enumerate(zip(answers, expected, strict=True)):
        assert status == 200, (i, doc)
        assert doc["model_version"] == "1.0"
        assert doc["prediction"] == want["prediction"], i
        assert doc["confidence"] == pytest.approx(want["confidence"], abs=1e-4), i
        got = [a["confidence"] for a in doc["alternatives"]]
        want_conf = [a["confidence"] for a in want["alternatives"]]
        assert np.allclose(got, want_conf, atol=1e-4), i


async def test_bad_requests_fail_alone_inside_a_batch(torchserve: LocalTorchServe) -> None:
    good = window_bytes(_window(_segments(1, seed=3)[0]))
    nan = np.frombuffer(good, dtype="<f4").copy()
    nan[5 * 469 + 7] = np.nan
    inf = nan.copy()
    inf[5 * 469 + 7] = np.inf
    json_h = {"Content-Type": "application/json"}
    bad = {
        "short": (good[:-4], OCTET, 400, "body"),
        "nan": (nan.tobytes(), OCTET, 422, "body[5][7]"),
        "inf": (inf.tobytes(), OCTET, 422, "body[5][7]"),
        "bad_json": (b'{"window": [1, 2', json_h, 400, "body"),
        "bad_shape": (json.dumps({"window": [[0.0] * 469] * 3}).encode(), json_h, 422, "window"),
        "bad_frames": (
            json.dumps({"frames": [{"hands": {"left": None, "right": None}}]}).encode(),
            json_h,
            422,
            "frames[0].pose",
        ),
        "no_key": (json.dumps({"something": 1}).encode(), json_h, 422, "body"),
    }
    # Bad bodies interleaved with good ones, all in flight together.
    bodies: list[tuple[bytes, dict[str, str]]] = []
    kinds: list[str] = []
    for name, (body, headers, _, _) in bad.items():
        for _ in range(3):
            bodies.append((good, OCTET))
            kinds.append("good")
        bodies.append((body, headers))
        kinds.append(name)
    answers = await post_many(_predict_url(torchserve), bodies, torchserve.auth_headers())
    shared_batch = False
    for kind, (status, doc) in zip(kinds, answers, strict=True):
        if kind == "good":
            assert status == 200, doc
            assert doc["prediction"]
            continue
        _, _, want_status, want_field = bad[kind]
        assert status == want_status, (kind, doc)
        assert doc["error"]["field"] == want_field, (kind, doc)
        assert doc["error"]["message"]
        shared_batch |= doc["batch_size"] > 1
    assert shared_batch, "no bad request was served inside a batch with others"


async def test_json_window_and_frames_agree_with_binary(torchserve: LocalTorchServe) -> None:
    frames = _segments(1, seed=4)[0]
    window = _window(frames)
    json_h = {"Content-Type": "application/json"}
    bodies = [
        (window_bytes(window), OCTET),
        (json.dumps({"window": window.tolist()}).encode(), json_h),
        (json.dumps({"frames": frames}).encode(), json_h),
    ]
    answers = await post_many(_predict_url(torchserve), bodies, torchserve.auth_headers())
    assert [s for s, _ in answers] == [200, 200, 200], answers
    binary, as_window, as_frames = (doc for _, doc in answers)
    for other in (as_window, as_frames):
        assert other["prediction"] == binary["prediction"]
        assert other["confidence"] == pytest.approx(binary["confidence"], abs=1e-5)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_token_auth_refuses_without_key(torchserve: LocalTorchServe) -> None:
    body = window_bytes(np.zeros((64, 469), dtype=np.float32))
    url = _predict_url(torchserve)
    status, text = _post(url, body, OCTET)
    assert status in (400, 401), text
    assert "token" in text.lower() or "key" in text.lower()
    status, _ = _post(url, body, {**OCTET, "Authorization": "Bearer not-the-key"})
    assert status in (400, 401)
    # The inference key does not open the management API.
    req = urllib.request.Request(
        f"{torchserve.management_url}/models", headers=torchserve.auth_headers("inference")
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code in (400, 401)
    status, text = _post(url, body, {**OCTET, **torchserve.auth_headers()})
    assert status == 200, text
    assert set(torchserve.keys) >= {"inference", "management"}
    assert Path(torchserve.key_file).is_file()
