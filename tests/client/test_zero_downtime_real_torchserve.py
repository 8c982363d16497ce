"""Zero downtime against a real TorchServe (serving.local, token auth on): a paused TorchServe,
a restarted one, and keys that expire during a run. Real router, client and local model.

Latency bounds here are correctness bounds (no window waits out the 2 s deadline, no user
window carries a probe); figures live in benchmarks/.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog

from backend_patch.app.metrics import BackendMetrics
from backend_patch.app.ml.hedging import HedgeConfig
from backend_patch.app.ml.pipeline import InferenceEngine
from backend_patch.app.ml.routing import InferenceRouter
from backend_patch.app.ml.torchserve_client import TorchServeClient, TorchServeError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_STORE = REPO_ROOT / "build" / "model-store"
MODEL_DIR = REPO_ROOT / "build" / "models" / "1.0"
# Far below the 2 s deadline a stalled window used to wait; far above a local inference.
USER_BOUND_S = 0.6
KEY_MINUTES = float(os.environ.get("SIGNFLOW_KEY_MINUTES", "0.25"))
KEY_PAST_S = float(os.environ.get("SIGNFLOW_KEY_PAST_S", "10"))


def _require_artifacts() -> None:
    needed = (MODEL_STORE / "signflow-1.0.mar", MODEL_DIR / "metadata.json")
    if not all(path.is_file() for path in needed):
        pytest.fail("build/model-store or build/models missing: run `make setup` first")


@pytest.fixture(scope="module")
def engine() -> Iterator[InferenceEngine]:
    _require_artifacts()
    eng = InferenceEngine(MODEL_DIR)
    eng.load()
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def torchserve() -> Iterator[Any]:
    """One READY TorchServe for the pause and restart tests (batch 16, 50 ms, one worker)."""
    _require_artifacts()
    from serving.local import LocalTorchServe
    from serving.settings import TorchServeSettings

    with LocalTorchServe(MODEL_STORE, TorchServeSettings(model_version="1.0", workers=1)) as ts:
        yield ts


def _window(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((64, 469)).astype(np.float32)


def _router(engine: InferenceEngine, client: TorchServeClient) -> InferenceRouter:
    return InferenceRouter(
        engine, BackendMetrics(), structlog.get_logger(), client=client, hedge=HedgeConfig()
    )


def _value(router: InferenceRouter, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (a test asking for
    ``served_by`` counts both cohorts, ``route``, unless it names one)."""
    want = set(labels.items())
    return sum(
        s.value
        for family in router.metrics.registry.collect()
        for s in family.samples
        if s.name == name and want <= set(s.labels.items())
    )


async def _timed(router: InferenceRouter, seed: int) -> tuple[str, float, str]:
    """(served_by, seconds, circuit state when the window arrived)."""
    assert router.client is not None
    state = router.client.circuit_state
    t0 = time.perf_counter()
    result = await router.classify(_window(seed), use_torchserve=True, session=seed % 8)
    return result.served_by, time.perf_counter() - t0, state


async def _until_torchserve_serves(
    router: InferenceRouter, seed: int, limit_s: float
) -> list[tuple[str, float, str]]:
    """One window every 0.1 s until TorchServe serves one (or ``limit_s`` passes)."""
    seen: list[tuple[str, float, str]] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        seen.append(await _timed(router, seed + len(seen)))
        if seen[-1][0] == "torchserve":
            break
        await asyncio.sleep(0.1)
    return seen


async def test_paused_torchserve_is_hedged_and_shadow_probes_close_the_circuit(engine, torchserve):
    client = TorchServeClient(
        torchserve.inference_url,
        key_file=torchserve.key_file,
        timeout_ms=2000,
        breaker_cooldown_s=0.5,
    )
    async with client:
        router = _router(engine, client)
        warm = [await _timed(router, i) for i in range(25)]
        assert {served for served, _, _ in warm} == {"torchserve"}
        pid = torchserve.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # a hung TorchServe: connections accepted, no answers
        try:
            # 8 sessions' windows at once: all hedged. One burst of hedges lost is one piece
            # of evidence (one slow batch looks the same), and the kernel still accepts
            # connections, so the circuit stays closed...
            stalled = await asyncio.gather(*(_timed(router, 100 + i) for i in range(8)))
            await asyncio.sleep(0.05)
            burst_state = client.circuit_state
            # ...until the hedges lost span the breaker's window (0.25 s): windows keep coming.
            while client.circuit_state == "closed" and len(stalled) < 30:
                stalled.append(await _timed(router, 200 + len(stalled)))
                await asyncio.sleep(0.05)
            assert client.circuit_state == "open"
        finally:
            os.kill(pid, signal.SIGCONT)
        assert burst_state == "closed"
        assert [served for served, _, _ in stalled] == ["local"] * len(stalled)
        assert max(elapsed for _, elapsed, _ in stalled) < USER_BOUND_S
        recovery = await _until_torchserve_serves(router, 200, limit_s=20.0)
        await router.aclose()
    assert recovery[-1][0] == "torchserve", recovery
    before = recovery[:-1]
    print(  # figures for the closing note (pytest -s)
        f"paused: stalled windows max {max(e for _, e, _ in stalled) * 1000:.0f} ms; "
        f"{len(before)} local windows until closed, "
        f"max {max(e for _, e, _ in before) * 1000:.0f} ms"
    )
    # Until the probes closed the circuit every user window was served locally, at once.
    assert all(served == "local" and state != "closed" for served, _, state in before)
    assert max(elapsed for _, elapsed, _ in before) < USER_BOUND_S
    assert _value(router, "signflow_hedges_total") == len(stalled)
    assert _value(router, "signflow_torchserve_probes_total", outcome="fast") >= 2


async def test_restarted_torchserve_recovers_through_shadow_probes(engine, torchserve):
    client = TorchServeClient(
        torchserve.inference_url,
        key_file=torchserve.key_file,
        timeout_ms=2000,
        breaker_cooldown_s=0.5,
    )
    async with client:
        router = _router(engine, client)
        assert (await _timed(router, 0))[0] == "torchserve"
        await asyncio.to_thread(torchserve.kill)
        down = [await _timed(router, 10 + i) for i in range(5)]
        assert [served for served, _, _ in down] == ["local"] * 5
        assert client.circuit_state == "open"
        # Restart it while windows keep coming (start + wait_ready in a thread).
        restart = asyncio.ensure_future(
            asyncio.to_thread(lambda: (torchserve.start(), torchserve.wait_ready()))
        )
        during: list[tuple[str, float, str]] = []
        while not restart.done():
            during.append(await _timed(router, 100 + len(during)))
            await asyncio.sleep(0.1)
        await restart
        after = await _until_torchserve_serves(router, 1000, limit_s=20.0)
        await router.aclose()
    assert after[-1][0] == "torchserve", after
    users = during + after[:-1]
    print(
        f"restart: {len(users)} user windows local, max {max(e for _, e, _ in users) * 1000:.0f} ms"
    )
    assert all(served == "local" for served, _, _ in users)
    # No user window was sent to the freshly started TorchServe: none of them waited.
    assert max(elapsed for _, elapsed, _ in users) < USER_BOUND_S
    assert _value(router, "signflow_torchserve_probes_total", outcome="fast") >= 2


async def test_keys_are_renewed_before_they_expire(engine, caplog):
    """Keys live KEY_MINUTES (0.25 = 15 s); the run goes on KEY_PAST_S (10 s) past expiry.

    The issue's figure (a 45 s key, a run 70 s past it) is this test with
    ``SIGNFLOW_KEY_MINUTES=0.75 SIGNFLOW_KEY_PAST_S=70``; the default keeps `make test` short.
    """
    _require_artifacts()
    from serving.local import LocalTorchServe
    from serving.settings import TorchServeSettings

    caplog.set_level(logging.DEBUG)
    with LocalTorchServe(
        MODEL_STORE, TorchServeSettings(workers=1, token_expiration_min=KEY_MINUTES)
    ) as ts:
        first_key = ts.keys["inference"]
        client = TorchServeClient(
            ts.inference_url,
            key_file=ts.key_file,
            management_url=ts.management_url,
            key_renew_before_s=KEY_MINUTES * 60 / 3,
        )
        async with client:
            router = _router(engine, client)
            expires_at = client.keys.expires_at
            lifetime = KEY_MINUTES * 60
            assert expires_at is not None and 0.5 * lifetime < expires_at - time.time() <= lifetime
            after_expiry: list[str] = []
            i = 0
            while time.time() < expires_at + KEY_PAST_S:
                served, _, _ = await _timed(router, i)
                if time.time() > expires_at:
                    after_expiry.append(served)
                i += 1
                await asyncio.sleep(0.1)
            renewals = client.keys.renewals
            last_key = client.keys.current()
        # The first key is dead by now: without renewal every window would have fallen back.
        async with TorchServeClient(ts.inference_url, token=first_key) as stale:
            with pytest.raises(TorchServeError) as info:
                await stale.predict(_window(0))
    assert info.value.reason == "auth"
    assert renewals >= 1 + KEY_PAST_S // (KEY_MINUTES * 40)  # every 2/3 of a lifetime
    share = after_expiry.count("torchserve") / len(after_expiry)
    print(
        f"keys: {len(after_expiry)} windows after expiry, {share:.3f} by TorchServe, "
        f"{renewals} renewals"
    )
    assert len(after_expiry) >= 3 * KEY_PAST_S
    assert share >= 0.9, (share, after_expiry)
    # Renewals were logged, the keys never.
    assert "renewed" in caplog.text
    assert first_key not in caplog.text and str(last_key) not in caplog.text
