"""TorchServeClient against real loopback servers: the scripted stub of conftest.py."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import numpy as np
import pytest

from backend_patch.app.ml.breaker import Call, CircuitBreaker
from backend_patch.app.ml.hedging import CallVerdict
from backend_patch.app.ml.torchserve_client import (
    ServedModel,
    TorchServeClient,
    TorchServeError,
    TorchServeResult,
    parse_description,
)

SHAPE = (64, 469)


def _window(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


async def _reason(client: TorchServeClient, window: np.ndarray | None = None) -> str:
    with pytest.raises(TorchServeError) as info:
        await client.predict(_window() if window is None else window)
    return info.value.reason


# --- request and answer -----------------------------------------------------------------------


async def test_binary_body_round_trips_and_answer_is_parsed(stub_ts):
    window = _window(1)
    async with TorchServeClient(stub_ts.base_url) as client:
        result = await client.predict(window)
    assert isinstance(result, TorchServeResult)
    assert result.prediction == "hello"
    assert result.confidence == pytest.approx(0.875)
    assert result.alternatives[0] == {"label": "hello", "confidence": 0.875}
    assert result.model_version == "1.0"
    assert result.batch_size == 1
    (req,) = stub_ts.requests
    assert req.path == "/predictions/signflow"
    assert req.headers["Content-Type"] == "application/octet-stream"
    assert len(req.body) == 64 * 469 * 4
    decoded = np.frombuffer(req.body, dtype="<f4").reshape(SHAPE)
    np.testing.assert_array_equal(decoded, window)


async def test_non_contiguous_float64_window_is_sent_as_c_order_float32(stub_ts):
    window = np.asfortranarray(_window(2).astype(np.float64))
    async with TorchServeClient(stub_ts.base_url, model_name="other") as client:
        await client.predict(window)
    (req,) = stub_ts.requests
    assert req.path == "/predictions/other"
    assert req.body == window.astype("<f4").tobytes(order="C")


async def test_wrong_window_shape_is_a_value_error_and_nothing_is_sent(stub_ts):
    async with TorchServeClient(stub_ts.base_url) as client:
        with pytest.raises(ValueError, match=r"shape \(64, 469\)"):
            await client.predict(np.zeros((63, 469), np.float32))
        assert client.circuit_state == "closed"
    assert stub_ts.requests == []


@pytest.mark.parametrize(
    ("action", "reason"),
    [("garbage", "bad_response"), ("missing", "bad_response"), ("400", "http_4xx")],
)
async def test_bad_answers_are_named(stub_ts, action, reason):
    stub_ts.script = [action]
    async with TorchServeClient(stub_ts.base_url) as client:
        assert await _reason(client) == reason
    assert len(stub_ts.requests) == 1  # neither is retried


def test_client_can_be_built_outside_a_running_loop():
    # The pool is created lazily inside the loop that first uses it.
    client = TorchServeClient("http://127.0.0.1:9", timeout_ms=100)
    assert client.circuit_state == "closed"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_ms": 0},
        {"connect_timeout_ms": 0},
        {"max_connections": 0},
        {"breaker_failures": 0},
        {"probe_successes": 0},
        {"model_name": "a/b"},
        {"management_url": "localhost:8081"},
    ],
)
def test_bad_settings_are_rejected_by_name(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        TorchServeClient("http://127.0.0.1:9", **kwargs)


async def test_pool_is_bounded_by_max_connections(stub_ts):
    stub_ts.script = [("delay", 0.05)] * 40
    async with TorchServeClient(stub_ts.base_url, max_connections=4) as client:
        results = await asyncio.gather(*(client.predict(_window()) for _ in range(40)))
    assert len(results) == 40
    assert stub_ts.peak_in_flight == 4


# --- deadline and retry -----------------------------------------------------------------------


async def test_timeout_is_raised_within_the_deadline(stub_ts):
    stub_ts.script = [("delay", 5.0)]
    async with TorchServeClient(stub_ts.base_url, timeout_ms=300) as client:
        t0 = time.monotonic()
        assert await _reason(client) == "timeout"
        elapsed = time.monotonic() - t0
    # Correctness, not speed: the call must end at its deadline, not at the server's 5 s.
    assert 0.25 <= elapsed < 1.5


async def test_deadline_covers_the_retry(stub_ts):
    # The first attempt's connection drops, the retry hangs: still one deadline for both.
    stub_ts.script = ["close", ("delay", 5.0)]
    async with TorchServeClient(stub_ts.base_url, timeout_ms=400) as client:
        t0 = time.monotonic()
        assert await _reason(client) == "timeout"
        elapsed = time.monotonic() - t0
    assert len(stub_ts.requests) == 2
    assert elapsed < 1.5


async def test_503_then_200_is_one_successful_retry(stub_ts):
    stub_ts.script = ["503", "ok"]
    async with TorchServeClient(stub_ts.base_url) as client:
        result = await client.predict(_window())
    assert result.prediction == "hello"
    assert [r.action for r in stub_ts.requests] == ["503", "ok"]


async def test_only_one_retry(stub_ts):
    stub_ts.script = ["503", "503", "ok"]
    async with TorchServeClient(stub_ts.base_url) as client:
        with pytest.raises(TorchServeError) as info:
            await client.predict(_window())
    assert info.value.reason == "http_5xx"
    assert info.value.status == 503
    assert len(stub_ts.requests) == 2


@pytest.mark.parametrize("status", ["500", "507", "502", "504"])
async def test_worker_died_and_gateway_5xx_are_retried_once(stub_ts, status):
    # During a reload the old version's workers die under queued requests ("Worker died.",
    # 500/507): the one retry lands on the new default version.
    stub_ts.script = [status, "ok"]
    async with TorchServeClient(stub_ts.base_url) as client:
        result = await client.predict(_window())
        assert result.prediction == "hello"
        assert client.circuit_state == "closed"
    assert [r.action for r in stub_ts.requests] == [status, "ok"]


async def test_worker_died_twice_is_one_failure(stub_ts):
    stub_ts.script = ["500", "507", "ok"]
    async with TorchServeClient(stub_ts.base_url) as client:
        with pytest.raises(TorchServeError) as info:
            await client.predict(_window())
    assert (info.value.reason, info.value.status) == ("http_5xx", 507)
    assert len(stub_ts.requests) == 2


async def test_not_implemented_is_not_retried(stub_ts):
    stub_ts.script = ["501"]
    async with TorchServeClient(stub_ts.base_url) as client:
        assert await _reason(client) == "http_5xx"
    assert len(stub_ts.requests) == 1


async def test_dropped_connection_is_retried(stub_ts):
    stub_ts.script = ["close", "ok"]
    async with TorchServeClient(stub_ts.base_url) as client:
        result = await client.predict(_window())
    assert result.model_version == "1.0"
    assert [r.action for r in stub_ts.requests] == ["close", "ok"]


async def test_dropped_twice_is_refused(stub_ts):
    stub_ts.script = ["close", "close"]
    async with TorchServeClient(stub_ts.base_url) as client:
        assert await _reason(client) == "refused"


async def test_refused_connection(refused_url):
    async with TorchServeClient(refused_url, timeout_ms=2000) as client:
        t0 = time.monotonic()
        assert await _reason(client) == "refused"
        # Refused is immediate (RST), it must not wait for the deadline.
        assert time.monotonic() - t0 < 1.0


# --- circuit breaker --------------------------------------------------------------------------


async def test_legacy_breaker_opens_fails_fast_and_a_user_call_probe_closes_it(stub_ts):
    # shadow_probes=False (TORCHSERVE_HEDGE_ENABLED=false): the pre-hedging behaviour.
    stub_ts.script = ["501", "501", "501"]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=3, breaker_cooldown_s=0.4, shadow_probes=False
    ) as client:
        for _ in range(2):
            assert await _reason(client) == "http_5xx"
            assert client.circuit_state == "closed"
        assert await _reason(client) == "http_5xx"
        assert client.circuit_state == "open"

        # Open: fail fast, TorchServe is not called.
        seen = len(stub_ts.requests)
        for _ in range(5):
            assert await _reason(client) == "circuit_open"
        assert len(stub_ts.requests) == seen

        await asyncio.sleep(0.45)
        assert client.circuit_state == "half_open"
        # Half-open: ONE probe goes through; a concurrent call is refused while it runs.
        stub_ts.script = [("delay", 0.2)]
        probe = asyncio.create_task(client.predict(_window()))
        await asyncio.sleep(0.05)
        assert await _reason(client) == "circuit_open"
        result = await probe
        assert result.prediction == "hello"
        assert client.circuit_state == "closed"
        assert len(stub_ts.requests) == seen + 1
        await client.predict(_window())


async def test_failed_probe_reopens_the_breaker(stub_ts):
    stub_ts.script = ["501", "501", "501"]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=2, breaker_cooldown_s=0.3, shadow_probes=False
    ) as client:
        for _ in range(2):
            await _reason(client)
        assert client.circuit_state == "open"
        await asyncio.sleep(0.35)
        assert await _reason(client) == "http_5xx"  # the probe fails...
        assert client.circuit_state == "open"  # ...and the circuit opens again
        assert await _reason(client) == "circuit_open"
        assert len(stub_ts.requests) == 3


async def test_breaker_counts_timeouts_and_refusals(refused_url):
    async with TorchServeClient(refused_url, breaker_failures=3) as client:
        assert [await _reason(client) for _ in range(4)] == [
            "refused",
            "refused",
            "refused",
            "circuit_open",
        ]


async def test_shadow_probes_close_the_breaker_user_calls_never_probe(stub_ts):
    stub_ts.script = ["501"]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=1, breaker_cooldown_s=0.2, probe_successes=2
    ) as client:
        assert await _reason(client) == "http_5xx"
        assert client.circuit_state == "open"
        assert await client.probe(_window(), fast_s=1.0) == "skipped"  # still cooling down
        await asyncio.sleep(0.25)
        assert client.circuit_state == "half_open"
        seen = len(stub_ts.requests)
        # Half-open: user calls are refused (the router serves them locally), never sent.
        for _ in range(3):
            assert await _reason(client) == "circuit_open"
        assert len(stub_ts.requests) == seen
        # One probe at a time; a slow one keeps the circuit half-open.
        stub_ts.script = [("delay", 0.3)]
        slow = asyncio.create_task(client.probe(_window(1), fast_s=0.1))
        await asyncio.sleep(0.05)
        assert await client.probe(_window(2), fast_s=0.1) == "skipped"
        assert await slow == "slow"
        assert client.circuit_state == "half_open"
        # Two fast probes in a row close it.
        assert await client.probe(_window(3), fast_s=1.0) == "fast"
        assert client.circuit_state == "half_open"
        assert await client.probe(_window(4), fast_s=1.0) == "fast"
        assert client.circuit_state == "closed"
        assert (await client.predict(_window())).prediction == "hello"
    assert len(stub_ts.requests) == seen + 4


async def test_failed_shadow_probe_reopens_and_a_late_answer_does_not_close(stub_ts):
    stub_ts.script = [("delay", 0.3), "501", "501"]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=1, breaker_cooldown_s=0.6, probe_successes=1
    ) as client:
        late = asyncio.create_task(client.predict(_window()))  # sent while closed, answers late
        await asyncio.sleep(0.05)
        assert await _reason(client) == "http_5xx"
        assert client.circuit_state == "open"
        assert (await late).prediction == "hello"
        assert client.circuit_state == "open"  # a late answer proves nothing about now
        await asyncio.sleep(0.6)
        assert await client.probe(_window(), fast_s=1.0) == "failed"
        assert client.circuit_state == "open"


async def test_a_burst_of_hedge_losses_does_not_open_the_breaker_a_streak_does(stub_ts):
    # Windows queued behind one slow batch lose their hedges within milliseconds: one event.
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=3, breaker_window_s=0.2
    ) as client:
        for _ in range(4):
            client.record_hedge_loss()
        await asyncio.sleep(0.05)  # the reachability check: the server accepts connections
        assert client.circuit_state == "closed"
        await client.predict(_window())  # an answer in between ends the streak
        client.record_hedge_loss()
        client.record_hedge_loss()
        await asyncio.sleep(0.1)
        client.record_hedge_loss()
        assert client.circuit_state == "closed"  # 3 losses, but over 0.1 s only
        await asyncio.sleep(0.12)
        client.record_hedge_loss()  # the streak now spans 0.22 s: TorchServe stays slow
        assert client.circuit_state == "open"


async def test_an_answer_slower_than_the_bar_does_not_end_the_streak(stub_ts):
    stub_ts.script = [("delay", 0.15)]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=3, breaker_window_s=0.1
    ) as client:
        client.record_hedge_loss()
        client.record_hedge_loss()
        # Answered, but later than the caller's 50 ms hedge delay: alive, not fit to serve.
        await client.predict(_window(), fast_s=0.05)
        client.record_hedge_loss()
        assert client.circuit_state == "open"


async def test_hedge_losses_of_an_unreachable_torchserve_open_at_once(refused_url):
    # Nothing listens (a killed container's address): the background TCP check fails, which
    # is a conclusive failure, so no window of time is waited for.
    async with TorchServeClient(
        refused_url, breaker_failures=3, breaker_window_s=10.0, connect_timeout_ms=100
    ) as client:
        client.record_hedge_loss()
        client.record_hedge_loss()
        assert client.circuit_state == "closed"
        for _ in range(50):
            await asyncio.sleep(0.01)
            if client.circuit_state == "open":
                break
        assert client.circuit_state == "open"


async def test_plain_4xx_does_not_trip_the_breaker(stub_ts):
    stub_ts.script = ["400"] * 5
    async with TorchServeClient(stub_ts.base_url, breaker_failures=2) as client:
        for _ in range(5):
            assert await _reason(client) == "http_4xx"
        assert client.circuit_state == "closed"


async def test_cancelled_probe_frees_the_half_open_slot(stub_ts):
    stub_ts.script = ["501", ("delay", 5.0)]
    async with TorchServeClient(
        stub_ts.base_url, breaker_failures=1, breaker_cooldown_s=0.2, shadow_probes=False
    ) as client:
        await _reason(client)
        await asyncio.sleep(0.25)
        probe = asyncio.create_task(client.predict(_window()))
        await asyncio.sleep(0.05)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert client.circuit_state == "half_open"
        assert (await client.predict(_window())).prediction == "hello"
        assert client.circuit_state == "closed"


def test_breaker_state_machine_with_a_fake_clock():
    now = [100.0]
    breaker = CircuitBreaker(2, 5.0, clock=lambda: now[0])
    call = breaker.admit()
    assert call is not None and not call.probe
    breaker.record_failure(call)
    assert breaker.state == "closed"
    breaker.record_success(breaker.now())  # a success resets the count
    breaker.record_failure(breaker.now())
    assert breaker.state == "closed"
    breaker.record_failure(breaker.now())
    assert breaker.state == "open"
    assert breaker.admit() is None
    now[0] += 5.0
    assert breaker.state == "half_open"
    probe = breaker.admit()
    assert probe is not None and probe.probe
    assert breaker.admit() is None  # one probe only
    breaker.record_failure(probe)
    assert breaker.state == "open"
    now[0] += 5.0
    probe = breaker.admit()
    assert probe is not None
    breaker.record_success(probe)
    assert breaker.state == "closed"


def test_breaker_judges_inconclusive_failures_over_its_window():
    now = [100.0]
    breaker = CircuitBreaker(3, 5.0, clock=lambda: now[0], window_s=0.25)
    for _ in range(5):
        breaker.record_failure(breaker.now(), conclusive=False)
        now[0] += 0.01
    assert breaker.state == "closed"  # 5 hedges lost within 50 ms: one slow batch
    assert breaker.streak == 5
    breaker.record_success(breaker.now(), slow=True)  # late: no proof of health
    assert breaker.streak == 5
    now[0] += 0.2
    breaker.record_failure(breaker.now(), conclusive=False)  # the streak spans 0.25 s now
    assert breaker.state == "open"
    assert breaker.streak == 0


def test_a_conclusive_failure_in_a_streak_opens_at_the_count():
    now = [100.0]
    breaker = CircuitBreaker(3, 5.0, clock=lambda: now[0], window_s=10.0)
    breaker.record_failure(breaker.now(), conclusive=False)
    breaker.record_failure(breaker.now(), conclusive=False)
    assert breaker.state == "closed"
    breaker.record_failure(breaker.now())  # a failed call (refused, deadline, 5xx)
    assert breaker.state == "open"


def test_late_failures_neither_reopen_nor_prolong_an_open_circuit():
    now = [100.0]
    breaker = CircuitBreaker(1, 5.0, clock=lambda: now[0])
    early = [breaker.admit() for _ in range(4)]
    breaker.record_failure(early[0])  # type: ignore[arg-type]
    assert breaker.state == "open"
    now[0] += 4.0
    for call in early[1:]:  # calls sent before it opened, timing out now
        breaker.record_failure(call)  # type: ignore[arg-type]
    now[0] += 1.0
    assert breaker.state == "half_open"  # opened at 100, not at 104


def test_outcomes_count_in_the_epoch_their_call_was_sent_in():
    """Issue 20 item 7 (Polly's overhanging calls): calls sent while closed that end after the
    circuit opened and closed again neither re-open it, nor extend its streak; a late success
    does not close an open circuit; a probe's outcome counts only in its own epoch."""
    now = [100.0]
    breaker = CircuitBreaker(3, 1.0, clock=lambda: now[0], probe_successes=1)
    old = [breaker.admit() for _ in range(6)]
    assert all(c is not None and c.epoch == 0 for c in old)
    for call in old[:3]:
        breaker.record_failure(call)  # type: ignore[arg-type]
    assert breaker.state == "open" and breaker.epoch == 1
    breaker.record_success(old[3])  # type: ignore[arg-type]  # late answer: no evidence now
    assert breaker.state == "open"
    now[0] += 1.0
    probe = breaker.admit_probe()
    assert probe is not None and probe.epoch == 1
    breaker.record_success(probe)
    assert breaker.state == "closed" and breaker.epoch == 2
    # The two other calls of epoch 0 time out now; one hedge of epoch 0 is judged lost.
    breaker.record_failure(old[4])  # type: ignore[arg-type]
    breaker.record_failure(old[5], conclusive=False)  # type: ignore[arg-type]
    fresh = breaker.admit()
    assert fresh is not None and fresh.epoch == 2
    breaker.record_failure(fresh)
    assert breaker.state == "closed"
    assert breaker.streak == 1  # only the call of this epoch counts
    assert breaker.stale_outcomes == 3
    # A probe whose epoch ended (a stale ticket) neither closes nor frees the new slot.
    breaker.record_failure(breaker.now())
    breaker.record_failure(breaker.now())
    assert breaker.state == "open"
    now[0] += 1.0
    current = breaker.admit_probe()
    assert current is not None
    breaker.record_success(Call(epoch=1, probe=True))
    assert breaker.state == "half_open"
    assert breaker.admit_probe() is None  # the current probe still holds the slot
    breaker.record_success(current)
    assert breaker.state == "closed"


async def test_calls_sent_before_the_circuit_opened_do_not_reopen_it_later(stub_ts):
    """Issue 20 item 7 end to end: three calls hang past their deadline while three others
    fail at once (the circuit opens), a probe closes it, then the hung calls time out: the
    closed circuit stays closed (today's code re-opened it with the stale timeouts)."""
    stub_ts.script = [("delay", 3.0)] * 3 + ["501"] * 3
    async with TorchServeClient(
        stub_ts.base_url,
        timeout_ms=600,
        breaker_failures=3,
        breaker_cooldown_s=0.1,
        probe_successes=1,
    ) as client:
        hung = [asyncio.create_task(client.predict(_window(i))) for i in range(3)]
        await asyncio.sleep(0.1)
        for _ in range(3):
            assert await _reason(client) == "http_5xx"
        assert client.circuit_state == "open"
        await asyncio.sleep(0.15)
        assert await client.probe(_window(), fast_s=1.0) == "fast"
        assert client.circuit_state == "closed"
        for task in hung:
            with pytest.raises(TorchServeError, match="timeout"):
                await task
        assert client.circuit_state == "closed"
        # A hedge lost by a call of the first epoch does not count either.
        stale = CallVerdict(call=Call(epoch=0))
        for _ in range(3):
            client.record_hedge_loss(stale)
        assert client.circuit_state == "closed"
        assert (await client.predict(_window())).prediction == "hello"


def test_bad_breaker_window_is_refused():
    with pytest.raises(ValueError, match="breaker_window_s"):
        CircuitBreaker(3, 1.0, window_s=-1)


# --- describe (management API) ------------------------------------------------------------------


async def test_describe_reads_the_batching_with_the_management_key(
    stub_ts, tmp_path, write_key_file
):
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "inference-key")  # its management key is "mgmt-key"
    stub_ts.management_keys = {"mgmt-key"}
    stub_ts.batch_size, stub_ts.max_batch_delay_ms = 8, 200
    async with TorchServeClient(
        stub_ts.base_url, key_file=key_file, management_url=stub_ts.base_url
    ) as client:
        served = await client.describe_model()
    assert served == ServedModel(
        version="1.0",
        batch_size=8,
        max_batch_delay_s=0.2,
        response_timeout_s=120.0,
        workers=1,
        ready_workers=1,
    )


async def test_describe_with_a_refused_key_is_auth(stub_ts, tmp_path, write_key_file):
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "inference-key")
    stub_ts.management_keys = {"another-key"}
    async with TorchServeClient(
        stub_ts.base_url, key_file=key_file, management_url=stub_ts.base_url
    ) as client:
        with pytest.raises(TorchServeError) as info:
            await client.describe_model()
    assert info.value.reason == "auth"
    # The file did not change and no token API answered: read, re-read, then given up.
    assert stub_ts.describes == 1


async def test_describe_needs_a_management_url(stub_ts):
    async with TorchServeClient(stub_ts.base_url) as client:
        with pytest.raises(ValueError, match="management_url"):
            await client.describe_model()


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b"[]", "non-empty list"),
        (b"{}", "non-empty list"),
        (b'[{"batchSize": 8}]', "maxBatchDelay"),
        (b'[{"batchSize": "8", "maxBatchDelay": 5}]', "batchSize"),
        (b'[{"batchSize": 8, "maxBatchDelay": -1}]', "maxBatchDelay"),
        (b"<html>", "not JSON"),
    ],
)
def test_bad_descriptions_are_named(payload, named):
    with pytest.raises(TorchServeError, match=named) as info:
        parse_description(payload)
    assert info.value.reason == "bad_response"


# --- token auth ---------------------------------------------------------------------------------


async def test_token_is_sent_as_bearer(stub_ts):
    stub_ts.valid_keys = {"s3cret-token"}
    async with TorchServeClient(stub_ts.base_url, token="s3cret-token") as client:
        await client.predict(_window())
    assert stub_ts.requests[0].headers["Authorization"] == "Bearer s3cret-token"


async def test_no_authorization_header_without_a_token(stub_ts):
    async with TorchServeClient(stub_ts.base_url) as client:
        await client.predict(_window())
    assert "Authorization" not in stub_ts.requests[0].headers


async def test_wrong_token_is_auth_and_not_retried(stub_ts):
    stub_ts.valid_keys = {"right"}
    async with TorchServeClient(stub_ts.base_url, token="wrong") as client:
        assert await _reason(client) == "auth"
    assert len(stub_ts.requests) == 1


async def test_key_file_is_read_and_reread_after_rotation(stub_ts, tmp_path, write_key_file):
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "key-one")
    stub_ts.valid_keys = {"key-one"}
    async with TorchServeClient(stub_ts.base_url, key_file=key_file) as client:
        await client.predict(_window())
        # TorchServe rotates the key: the file changes (mtime), the old key stops working.
        write_key_file(key_file, "key-two")
        st = os.stat(key_file)
        os.utime(key_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        stub_ts.valid_keys = {"key-two"}
        await client.predict(_window())
    assert [r.headers["Authorization"] for r in stub_ts.requests] == [
        "Bearer key-one",
        "Bearer key-two",
    ]


async def test_invalid_key_answer_forces_a_reread(stub_ts, tmp_path, write_key_file):
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "key-aaa")
    stub_ts.valid_keys = {"key-aaa"}
    async with TorchServeClient(stub_ts.base_url, key_file=key_file) as client:
        await client.predict(_window())
        # Same size and same mtime: only the "invalid key" answer can reveal the rotation.
        st = os.stat(key_file)
        write_key_file(key_file, "key-bbb")
        os.utime(key_file, ns=(st.st_atime_ns, st.st_mtime_ns))
        stub_ts.valid_keys = {"key-bbb"}
        result = await client.predict(_window())
    assert result.prediction == "hello"
    assert [r.action for r in stub_ts.requests] == ["ok", "invalid_key", "ok"]
    assert stub_ts.requests[-1].headers["Authorization"] == "Bearer key-bbb"


async def test_missing_key_file_sends_no_key_and_fails_as_auth(stub_ts, tmp_path):
    stub_ts.valid_keys = {"whatever"}
    async with TorchServeClient(stub_ts.base_url, key_file=tmp_path / "absent.json") as client:
        assert await _reason(client) == "auth"
    assert "Authorization" not in stub_ts.requests[0].headers


async def test_half_written_key_file_keeps_the_last_good_key(stub_ts, tmp_path, write_key_file):
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "good-key")
    stub_ts.valid_keys = {"good-key"}
    async with TorchServeClient(stub_ts.base_url, key_file=key_file) as client:
        await client.predict(_window())
        key_file.write_text('{"inference": {"ke', encoding="utf-8")
        await client.predict(_window())
    assert stub_ts.requests[-1].headers["Authorization"] == "Bearer good-key"


async def test_token_never_appears_in_logs_or_errors(stub_ts, tmp_path, write_key_file, caplog):
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key_file.json"
    write_key_file(key_file, "TOPSECRET-1")
    stub_ts.valid_keys = {"TOPSECRET-2"}
    async with TorchServeClient(
        stub_ts.base_url,
        key_file=key_file,
        breaker_failures=1,
        breaker_cooldown_s=0.1,
        probe_successes=1,
    ) as client:
        with pytest.raises(TorchServeError) as info:
            await client.predict(_window())
        write_key_file(key_file, "TOPSECRET-2")
        os.utime(key_file, ns=(0, 10**18))
        await asyncio.sleep(0.15)
        assert await client.probe(_window(), fast_s=5.0) == "fast"
        await client.predict(_window())
        text = caplog.text + str(info.value) + repr(client) + repr(info.value)
    assert "TOPSECRET" not in text
    # The client did log the breaker and the rotation: the check above is meaningful.
    assert "circuit" in caplog.text
    assert "rotated" in caplog.text


async def test_replicas_are_used_round_robin_and_a_retry_goes_to_the_next(stub_ts, refused_url):
    # Two replicas, one down: every call still succeeds because its one retry lands on the
    # other replica, and the live replica sees exactly one request per call.
    async with TorchServeClient(f"{refused_url},{stub_ts.base_url}") as client:
        assert client.base_urls == [refused_url, stub_ts.base_url]
        results = [await client.predict(_window(i)) for i in range(6)]
    assert [r.prediction for r in results] == ["hello"] * 6
    assert len(stub_ts.requests) == 6
