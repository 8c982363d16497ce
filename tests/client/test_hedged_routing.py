"""The hedged fallback end to end in one process: real router, real local model, real client,
real loopback servers (the scripted stub, a listener that accepts and never answers, and one
whose accept queue is full so that SYNs are dropped, as for a killed container).

Timing assertions here are correctness bounds (a window must not wait out the deadline), far
from the figures; the cost of hedging is measured in benchmarks/hedging_cost.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import structlog
import structlog.testing

from backend_patch.app.metrics import BackendMetrics
from backend_patch.app.ml.hedging import HedgeConfig
from backend_patch.app.ml.pipeline import InferenceEngine
from backend_patch.app.ml.routing import InferenceRouter
from backend_patch.app.ml.torchserve_client import TorchServeClient, TorchServeError

MODEL_DIR = Path(__file__).resolve().parents[2] / "build" / "models" / "1.0"


@pytest.fixture(scope="module")
def engine() -> Iterator[InferenceEngine]:
    """The real local model (the old path), loaded once for this module."""
    if not (MODEL_DIR / "metadata.json").is_file():
        pytest.fail(f"{MODEL_DIR} has no trained model: run `make setup` first")
    eng = InferenceEngine(MODEL_DIR)
    eng.load()
    try:
        yield eng
    finally:
        eng.close()


class Blackhole:
    """A loopback listener that accepts every connection and never answers."""

    def __init__(self) -> None:
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self._srv.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._srv.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self._srv.accept()
                self.accepted.append(conn)

    def stop_listening(self) -> None:
        """Close the listener, keep the accepted connections open and silent: a killed
        container, whose address refuses (or drops) new connections while old ones hang."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._srv.close()

    def close(self) -> None:
        self.stop_listening()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    try:
        yield hole
    finally:
        hole.close()


@pytest.fixture
def syn_blackhole() -> Iterator[str]:
    """A URL whose SYNs are dropped: listen(0) with its one queue slot taken, never accepted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    filler = socket.create_connection(srv.getsockname(), timeout=1)
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        filler.close()
        srv.close()


def _window(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((64, 469)).astype(np.float32)


def _router(engine, client, hedge: HedgeConfig | None = None) -> InferenceRouter:
    return InferenceRouter(
        engine, BackendMetrics(), structlog.get_logger(), client=client, hedge=hedge
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


async def _timed(router: InferenceRouter, seed: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    result = await router.classify(_window(seed), use_torchserve=True, session=seed)
    return result.served_by, time.perf_counter() - t0


async def test_hung_torchserve_is_hedged_then_the_circuit_opens(engine, blackhole):
    # A hung TorchServe (paused, or a stuck worker): connections are accepted, nothing answers.
    # Each window is hedged after 0.1 s; hedge losses are inconclusive, so the circuit opens
    # once their streak spans the breaker's window (0.25 s), not at the third loss.
    hedge = HedgeConfig(delay_s=0.1)
    async with TorchServeClient(
        blackhole.url, timeout_ms=2000, breaker_failures=3, breaker_window_s=0.25
    ) as client:
        router = _router(engine, client, hedge)
        hedged: list[tuple[str, float, float]] = []  # served_by, seconds, when it ended
        while client.circuit_state == "closed" and len(hedged) < 20:
            served, elapsed = await _timed(router, len(hedged))
            hedged.append((served, elapsed, time.monotonic()))
        assert [served for served, _, _ in hedged] == ["local"] * len(hedged)
        # Correctness bound: far below the 2 s deadline every one of them would have waited.
        assert all(0.1 <= elapsed < 1.0 for _, elapsed, _ in hedged)
        assert client.circuit_state == "open"
        span = hedged[-1][2] - hedged[0][2]
        assert len(hedged) >= 3 and span >= 0.25
        assert hedged[-2][2] - hedged[0][2] < 0.25  # it opened at the first loss that could
        sent = len(blackhole.accepted)
        # Open: local at once, TorchServe is not called and nothing is hedged any more.
        later = [await _timed(router, 100 + i) for i in range(5)]
        assert [served for served, _ in later] == ["local"] * 5
        assert len(blackhole.accepted) == sent
    n = len(hedged)
    assert _value(router, "signflow_torchserve_circuit_open") == 1
    assert _value(router, "signflow_hedges_total") == n
    assert _value(router, "signflow_hedge_wins_total", winner="local") == n
    assert _value(router, "signflow_hedge_wins_total", winner="torchserve") == 0
    reason = "signflow_torchserve_errors_total"
    assert _value(router, reason, reason="hedge_lost") == n
    assert _value(router, reason, reason="circuit_open") == 5
    # Every local answer of a TorchServe session is one fallback with one reason.
    assert _value(router, "signflow_fallback_total") == n + 5
    assert _value(router, "signflow_inferences_total", served_by="local") == n + 5


async def test_killed_container_opens_the_circuit_after_one_burst(engine, blackhole):
    # 8 sessions' windows at once on connections that then go silent, and the address refuses
    # new ones (a killed container): the TCP check after the first lost hedge fails, so the
    # circuit opens at once, without waiting for a streak over the window.
    hedge = HedgeConfig(delay_s=0.1)
    async with TorchServeClient(
        blackhole.url, timeout_ms=2000, breaker_failures=3, breaker_window_s=10.0
    ) as client:
        router = _router(engine, client, hedge)
        burst = asyncio.gather(*(_timed(router, i) for i in range(8)))
        for _ in range(100):  # until the 8 requests were accepted
            if len(blackhole.accepted) >= 8:
                break
            await asyncio.sleep(0.01)
        blackhole.stop_listening()
        first = await burst
        assert [served for served, _ in first] == ["local"] * 8
        assert max(elapsed for _, elapsed in first) < 1.0
        for _ in range(50):
            if client.circuit_state == "open":
                break
            await asyncio.sleep(0.01)
        assert client.circuit_state == "open"
        await router.aclose()
    assert _value(router, "signflow_hedge_wins_total", winner="local") == 8


async def test_windows_queued_behind_one_slow_batch_do_not_open_the_circuit(engine, stub_ts):
    # A real slow server: 6 windows arrive together and wait 0.35 s behind one slow batch,
    # far past the 0.1 s hedge delay. All six lose their hedges within milliseconds; TorchServe
    # still answers them (late), and the next window is answered at once: the circuit must stay
    # closed (it used to open at the third loss and send every user local for a second).
    stub_ts.script = [("delay", 0.35)] * 6
    hedge = HedgeConfig(delay_s=0.1)
    async with TorchServeClient(stub_ts.base_url, breaker_failures=3) as client:
        router = _router(engine, client, hedge)
        burst = await asyncio.gather(*(_timed(router, i) for i in range(6)))
        assert [served for served, _ in burst] == ["local"] * 6
        assert client.circuit_state == "closed"
        after = await _timed(router, 10)
        assert after[0] == "torchserve"
        await asyncio.sleep(0.4)  # the losers finish in the background
        assert client.circuit_state == "closed"
        assert stub_ts.answered == 7  # nothing was cancelled: TorchServe answered all seven
        # Their real latencies reached the p99 (it would otherwise never see past 0.1 s).
        assert len(router.policy.tracker) == 7
        assert router.policy.tracker.p99() >= 0.35
        await router.aclose()
    assert _value(router, "signflow_hedge_wins_total", winner="local") == 6
    assert _value(router, "signflow_fallback_total") == 6


async def test_hedging_disabled_waits_for_the_deadline(engine, blackhole):
    async with TorchServeClient(blackhole.url, timeout_ms=400, breaker_failures=3) as client:
        router = _router(engine, client, HedgeConfig(enabled=False))
        served, elapsed = await _timed(router, 1)
    assert served == "local"
    assert elapsed >= 0.4  # the whole deadline: this is what hedging removes
    assert _value(router, "signflow_hedges_total") == 0
    assert _value(router, "signflow_torchserve_errors_total", reason="timeout") == 1


async def test_dropped_syns_fail_at_the_connect_timeout_not_the_deadline(syn_blackhole):
    async with TorchServeClient(syn_blackhole, timeout_ms=3000, connect_timeout_ms=100) as c:
        t0 = time.monotonic()
        with pytest.raises(TorchServeError) as info:
            await c.predict(_window())
        elapsed = time.monotonic() - t0
    assert info.value.reason == "connect_timeout"
    assert elapsed < 1.5  # two connect timeouts (one retry), not the 3 s deadline


async def test_hedge_budget_runs_out_then_windows_wait_for_torchserve(engine, stub_ts):
    stub_ts.script = [("delay", 0.25)] * 6
    hedge = HedgeConfig(delay_s=0.03, budget_ratio=0.0, budget_burst=2)
    async with TorchServeClient(stub_ts.base_url, breaker_failures=100) as client:
        router = _router(engine, client, hedge)
        results = [await _timed(router, i) for i in range(5)]
    assert [served for served, _ in results] == ["local", "local"] + ["torchserve"] * 3
    assert all(elapsed >= 0.25 for _, elapsed in results[2:])  # waited for TorchServe
    assert _value(router, "signflow_hedges_total") == 2
    assert _value(router, "signflow_hedges_throttled_total") == 3
    assert _value(router, "signflow_fallback_total") == 2


async def test_budget_is_earned_back_by_windows_sent(engine, stub_ts):
    hedge = HedgeConfig(delay_s=0.03, budget_ratio=0.5, budget_burst=1)
    stub_ts.script = [("delay", 0.2), ("delay", 0.2), "ok", ("delay", 0.2)]
    async with TorchServeClient(stub_ts.base_url, breaker_failures=100) as client:
        router = _router(engine, client, hedge)
        served = [(await _timed(router, i))[0] for i in range(4)]
    # 1 token at start; each window sent earns 0.5: hedge, throttled, (fast), hedge again.
    assert served == ["local", "torchserve", "torchserve", "local"]
    assert _value(router, "signflow_hedges_throttled_total") == 1


async def test_healthy_torchserve_is_not_hedged_and_feeds_the_delay(engine, stub_ts):
    async with TorchServeClient(stub_ts.base_url) as client:
        router = _router(engine, client)
        assert router.policy.delay_s() == pytest.approx(0.2)  # ceiling until 20 samples
        served = [(await _timed(router, i))[0] for i in range(25)]
    assert served == ["torchserve"] * 25
    assert _value(router, "signflow_hedges_total") == 0
    assert _value(router, "signflow_fallback_total") == 0
    assert len(router.policy.tracker) == 25
    # A fast loopback stub: 2 x p99 is below the floor, so the floor applies.
    assert router.policy.delay_s() == pytest.approx(0.08)
    assert _value(router, "signflow_hedge_delay_seconds") == pytest.approx(0.08)


async def test_torchserve_wins_the_race_when_the_local_engine_is_busy(engine, stub_ts):
    stub_ts.script = [("delay", 0.15)]
    async with TorchServeClient(stub_ts.base_url) as client:
        router = _router(engine, client, HedgeConfig(delay_s=0.03))
        # The engine's one worker thread is busy for 0.6 s (as under a burst of local work).
        assert engine._executor is not None
        busy = engine._executor.submit(time.sleep, 0.6)
        served, elapsed = await _timed(router, 1)
        busy.result()
    assert served == "torchserve"
    assert elapsed < 0.6
    assert _value(router, "signflow_hedges_total") == 1
    assert _value(router, "signflow_hedge_wins_total", winner="torchserve") == 1
    assert _value(router, "signflow_fallback_total") == 0


async def test_half_open_serves_users_locally_while_a_shadow_probe_tests(engine, stub_ts):
    stub_ts.script = ["501"]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=1, breaker_cooldown_s=0.2, probe_successes=2
    ) as client:
        router = _router(engine, client, HedgeConfig(delay_s=0.1))
        assert (await _timed(router, 0))[0] == "local"  # the 501 opens the circuit
        await asyncio.sleep(0.25)
        assert client.circuit_state == "half_open"
        # A freshly restarted TorchServe: the first request is slow (warm-up).
        stub_ts.script = [("delay", 0.5)]
        sent = len(stub_ts.requests)
        user = [await _timed(router, i) for i in range(1, 4)]
        # The users were served locally while the slow probe was still out.
        assert [s for s, _ in user] == ["local"] * 3
        assert max(e for _, e in user) < 0.5
        await asyncio.sleep(0.6)
        assert len(stub_ts.requests) == sent + 1  # one probe at a time, users never sent
        assert client.circuit_state == "half_open"  # a slow probe does not close
        # Now TorchServe is fast: each window starts a probe, two fast ones close the circuit.
        for i in range(2):
            assert (await _timed(router, 10 + i))[0] == "local"
            await asyncio.sleep(0.05)
        assert client.circuit_state == "closed"
        assert (await _timed(router, 20))[0] == "torchserve"
        assert _value(router, "signflow_torchserve_circuit_open") == 0
        # The probes carried copies of the users' windows.
        assert stub_ts.requests[sent].body == _window(1).tobytes()
        await router.aclose()
    assert _value(router, "signflow_torchserve_probes_total", outcome="slow") == 1
    assert _value(router, "signflow_torchserve_probes_total", outcome="fast") == 2


async def test_worker_died_during_a_reload_is_retried_not_a_fallback(engine, stub_ts):
    stub_ts.script = ["500", "ok"]
    async with TorchServeClient(stub_ts.base_url) as client:
        router = _router(engine, client)
        served, _ = await _timed(router, 1)
    assert served == "torchserve"
    assert _value(router, "signflow_fallback_total") == 0
    assert [r.action for r in stub_ts.requests] == ["500", "ok"]


async def test_a_failing_local_engine_does_not_lose_a_torchserve_answer(stub_ts):
    stub_ts.script = [("delay", 0.15)]
    broken = InferenceEngine(MODEL_DIR)  # never loaded: infer() raises ModelNotLoadedError
    async with TorchServeClient(stub_ts.base_url) as client:
        router = _router(broken, client, HedgeConfig(delay_s=0.03))
        served, _ = await _timed(router, 1)
    assert served == "torchserve"
    assert _value(router, "signflow_hedges_total") == 1
    assert _value(router, "signflow_hedge_wins_total", winner="torchserve") == 1
    assert _value(router, "signflow_fallback_total") == 0


async def test_losers_timing_out_later_are_not_counted_twice(engine, stub_ts):
    # Three windows lose their hedges together (one event) and their TorchServe calls then
    # time out together at the deadline: the users were served long ago, and those timeouts
    # are the same evidence again. Counted again, they opened the circuit 2 s after a reload's
    # slow moment (hot-reload run: 3 hedges lost, then 61 windows local).
    stub_ts.script = [("delay", 5.0)] * 3
    hedge = HedgeConfig(delay_s=0.05)
    async with TorchServeClient(
        stub_ts.base_url, timeout_ms=400, breaker_failures=3, breaker_window_s=10.0
    ) as client:
        router = _router(engine, client, hedge)
        burst = await asyncio.gather(*(_timed(router, i) for i in range(3)))
        assert [served for served, _ in burst] == ["local"] * 3
        await asyncio.sleep(0.5)  # past the 400 ms deadline of the three losers
        assert not router._losers  # they ended (timed out)
        assert client.circuit_state == "closed"
        assert (await _timed(router, 10))[0] == "torchserve"
        await router.aclose()


# --- the hedge floor follows TorchServe's batch delay --------------------------------------------


async def _described(router: InferenceRouter, version: str) -> None:
    """Wait until the router's background read of the served model saw ``version``."""
    for _ in range(200):
        if router.served_model is not None and router.served_model.version == version:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"served model never described as {version}: {router.served_model}")


def _batching_client(stub_ts, key_file: Path, **kwargs) -> TorchServeClient:
    return TorchServeClient(
        stub_ts.base_url, key_file=key_file, management_url=stub_ts.base_url, **kwargs
    )


@pytest.fixture
def slow_batching(stub_ts, tmp_path, write_key_file):
    """The stub as a TorchServe with max_batch_delay 200 ms at low load: every answer waits
    out the batch delay (0.21 s), beyond the default 200 ms hedge ceiling; token auth on."""
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "inference-key")  # its management key is "mgmt-key"
    stub_ts.management_keys = {"mgmt-key"}
    stub_ts.batch_size, stub_ts.max_batch_delay_ms = 8, 200
    stub_ts.answer_delay_s = 0.21
    return stub_ts, key_file


async def test_a_long_batch_delay_raises_the_floor_so_healthy_answers_are_not_hedged(
    engine, slow_batching
):
    stub_ts, key_file = slow_batching
    async with _batching_client(stub_ts, key_file) as client:
        router = _router(engine, client)  # adaptive with the defaults: ceiling 200 ms
        router.watch_served_model()
        await _described(router, "1.0")
        # H = 200 ms + 2 x 15 ms; floor = H, ceiling = 2 x H (hedging.HedgePolicy).
        assert router.policy.healthy_s == pytest.approx(0.23)
        assert router.policy.floor_s() == pytest.approx(0.23)
        assert router.policy.ceiling_s() == pytest.approx(0.46)
        served = [(await _timed(router, i))[0] for i in range(6)]
        assert client.circuit_state == "closed"
        await router.aclose()
    assert served == ["torchserve"] * 6
    assert _value(router, "signflow_hedges_total") == 0
    assert _value(router, "signflow_fallback_total") == 0
    assert _value(router, "signflow_hedge_floor_seconds") == pytest.approx(0.23)
    assert _value(router, "signflow_hedge_delay_seconds") == pytest.approx(0.46)


async def test_without_the_batch_delay_the_same_torchserve_is_taken_for_a_dead_one(
    engine, slow_batching
):
    # The control for the test above (what the backend did before it read maxBatchDelay).
    stub_ts, _ = slow_batching
    async with TorchServeClient(stub_ts.base_url, breaker_window_s=0.25) as client:
        router = _router(engine, client)
        served = [(await _timed(router, i))[0] for i in range(6)]
        state = client.circuit_state
        await router.aclose()
    assert served[:3] == ["local"] * 3
    assert _value(router, "signflow_hedge_wins_total", winner="local") >= 3
    assert state != "closed"


async def test_a_reload_to_a_version_with_another_batch_delay_moves_the_floor(
    engine, stub_ts, tmp_path, write_key_file
):
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "inference-key")
    async with _batching_client(stub_ts, key_file) as client:
        router = _router(engine, client)
        router.watch_served_model()
        await _described(router, "1.0")
        assert router.policy.healthy_s == pytest.approx(0.08)  # 50 ms + 2 x 15 ms
        assert (await _timed(router, 0))[0] == "torchserve"
        described = stub_ts.describes
        # Reloaded to 2.0, batch delay 120 ms: the next answers say 2.0.
        stub_ts.model_version, stub_ts.max_batch_delay_ms = "2.0", 120
        assert (await _timed(router, 1))[0] == "torchserve"
        assert (await _timed(router, 2))[0] == "torchserve"
        await _described(router, "2.0")
        await router.aclose()
    assert stub_ts.describes == described + 1
    assert router.policy.healthy_s == pytest.approx(0.15)


async def test_settings_below_the_batch_floor_are_named_in_a_warning(engine, slow_batching):
    stub_ts, key_file = slow_batching
    with structlog.testing.capture_logs() as logs:
        async with _batching_client(stub_ts, key_file, timeout_ms=400) as client:
            router = _router(engine, client, HedgeConfig(delay_s=0.1))
            router.watch_served_model()
            await _described(router, "1.0")
            await router.aclose()
    warnings = {e["event"]: e for e in logs if e["log_level"] == "warning"}
    fixed = warnings["hedge_delay_below_batch_floor"]
    assert fixed["setting"] == "TORCHSERVE_HEDGE_DELAY_MS"
    assert (fixed["hedge_delay_ms"], fixed["healthy_answer_ms"]) == (100, 230)
    assert "TORCHSERVE_HEDGE_DELAY_MS=100" in fixed["message"]
    deadline = warnings["torchserve_deadline_below_batch_floor"]
    assert deadline["setting"] == "TORCHSERVE_TIMEOUT_MS"
    assert "raise it above 460" in deadline["message"]
    # The fixed delay is the operator's: kept, only warned about.
    assert router.policy.delay_s() == pytest.approx(0.1)


async def test_settings_above_the_batch_floor_are_not_warned_about(engine, slow_batching):
    stub_ts, key_file = slow_batching
    with structlog.testing.capture_logs() as logs:
        async with _batching_client(stub_ts, key_file) as client:
            router = _router(engine, client, HedgeConfig(delay_s=0.3))
            router.watch_served_model()
            await _described(router, "1.0")
            await router.aclose()
    assert [e for e in logs if e["log_level"] == "warning"] == []
    assert any(e["event"] == "torchserve_batching" for e in logs)
