"""TorchServeClient against a real TorchServe (serving.local), token authorization ON.

The module's TorchServe runs hot-reload.yaml's batching (batch 8, max_batch_delay 200 ms): at
low load every answer waits out the batch delay, longer than the default 200 ms hedge ceiling.
"""

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

    settings = TorchServeSettings(
        model_version="1.0", workers=1, batch_size=8, max_batch_delay_ms=200
    )
    with LocalTorchServe(MODEL_STORE, settings) as ts:
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


async def test_describe_reads_what_torchserve_runs(torchserve):
    async with TorchServeClient(
        torchserve.inference_url,
        key_file=torchserve.key_file,
        management_url=torchserve.management_url,
    ) as client:
        served = await client.describe_model()
    assert (served.version, served.batch_size, served.max_batch_delay_s) == ("1.0", 8, 0.2)
    assert served.ready_workers == served.workers == 1


async def test_healthy_answers_of_a_long_batch_delay_are_not_hedged(torchserve):
    """The backend reads maxBatchDelay and floors its hedge delay above a healthy answer."""
    import structlog

    from backend_patch.app.metrics import BackendMetrics
    from backend_patch.app.ml.pipeline import InferenceEngine
    from backend_patch.app.ml.routing import InferenceRouter

    engine = InferenceEngine(REPO_ROOT / "build" / "models" / "1.0")
    engine.load()
    try:
        async with TorchServeClient(
            torchserve.inference_url,
            key_file=torchserve.key_file,
            management_url=torchserve.management_url,
        ) as client:
            router = InferenceRouter(
                engine, BackendMetrics(), structlog.get_logger(), client=client
            )
            router.watch_served_model()
            for _ in range(500):
                if router.served_model is not None:
                    break
                await asyncio.sleep(0.01)
            latencies, served = [], []
            for w in _windows(12):  # one at a time: each waits out the 200 ms batch delay
                t0 = asyncio.get_running_loop().time()
                result = await router.classify(w, use_torchserve=True, session=0)
                latencies.append(asyncio.get_running_loop().time() - t0)
                served.append(result.served_by)
            await router.aclose()
    finally:
        engine.close()
    print(f"200 ms batch delay: answers {min(latencies) * 1000:.0f}-{max(latencies) * 1000:.0f} ms")
    assert min(latencies) >= 0.2  # the batch delay was really waited out...
    assert served == ["torchserve"] * 12  # ...and not one answer was hedged
    assert router.policy.floor_s() == pytest.approx(0.23)
    value = router.metrics.registry.get_sample_value("signflow_hedges_total")
    assert value == 0


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
