"""TorchServeClient against a real TorchServe (serving.local), token authorization ON."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backend_patch.app.ml.torchserve_client import TorchServeClient, TorchServeError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_STORE = REPO_ROOT / "build" / "model-store"


@pytest.fixture(scope="module")
def torchserve() -> Iterator[Any]:
    """One READY TorchServe for this module (one worker: two cores are shared)."""
    if not (MODEL_STORE / "signflow-1.0.mar").is_file():
        pytest.fail(f"{MODEL_STORE}/signflow-1.0.mar missing: run `make setup` first")
    from serving.local import LocalTorchServe
    from serving.settings import TorchServeSettings

    with LocalTorchServe(MODEL_STORE, TorchServeSettings(model_version="1.0", workers=1)) as ts:
        yield ts


def _windows(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal((64, 469)).astype(np.float32) for _ in range(n)]


async def test_key_file_client_is_served_and_batched(torchserve):
    async with TorchServeClient(torchserve.inference_url, key_file=torchserve.key_file) as client:
        first = await client.predict(_windows(1)[0])
        results = await asyncio.gather(*(client.predict(w) for w in _windows(32)))
    assert first.model_version == "1.0"
    assert isinstance(first.prediction, str) and first.prediction
    assert 0.0 <= first.confidence <= 1.0
    assert first.alternatives[0]["label"] == first.prediction
    assert len(results) == 32
    # 32 concurrent requests through one pool are batched by TorchServe.
    assert max(r.batch_size for r in results) > 1


async def test_without_or_with_a_wrong_key_torchserve_refuses(torchserve):
    async with TorchServeClient(torchserve.inference_url) as client:
        with pytest.raises(TorchServeError) as info:
            await client.predict(_windows(1)[0])
    assert info.value.reason == "auth"
    async with TorchServeClient(torchserve.inference_url, token="not-the-key") as client:
        with pytest.raises(TorchServeError) as info:
            await client.predict(_windows(1)[0])
    assert info.value.reason == "auth"


async def test_token_from_keys_works(torchserve):
    token = torchserve.keys["inference"]
    async with TorchServeClient(torchserve.inference_url, token=token) as client:
        result = await client.predict(_windows(1)[0])
    assert result.model_version == "1.0"


async def test_same_answer_as_the_local_model(torchserve):
    """The served answer equals the local path's for the same window (binary body intact)."""
    from backend_patch.app.ml.model import load_artifacts
    from backend_patch.app.ml.predictions import softmax_top_k

    loaded = load_artifacts(REPO_ROOT / "build" / "models" / "1.0")
    windows = _windows(4)
    with torch.no_grad():
        batch = torch.from_numpy(np.stack(windows)).to(loaded.device)
        logits = loaded.module(batch).cpu().numpy()
    local = softmax_top_k(logits, loaded.labels, float(loaded.metadata["temperature"]))
    async with TorchServeClient(torchserve.inference_url, key_file=torchserve.key_file) as client:
        served = [await client.predict(w) for w in windows]
    for ours, theirs in zip(local, served, strict=True):
        assert theirs.prediction == ours["prediction"]
        assert theirs.confidence == pytest.approx(ours["confidence"], abs=1e-4)


async def test_killed_torchserve_is_refused_at_once(torchserve):
    """Last in this module: SIGKILL the frontend; calls fail fast as "refused", then open."""
    async with TorchServeClient(
        torchserve.inference_url, key_file=torchserve.key_file, breaker_failures=2
    ) as client:
        await client.predict(_windows(1)[0])  # a pooled keep-alive connection exists now
        await asyncio.to_thread(torchserve.kill)
        reasons = []
        for w in _windows(3):
            with pytest.raises(TorchServeError) as info:
                await client.predict(w)
            reasons.append(info.value.reason)
    assert reasons == ["refused", "refused", "circuit_open"], reasons
