"""The pure parts of issue 10's backend side: hedge delay, hedge budget, key expiry, settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend_patch.app.config import SettingsError, load_settings
from backend_patch.app.ml.hedging import (
    HedgeBudget,
    HedgeConfig,
    HedgePolicy,
    healthy_batch_bound_s,
)
from backend_patch.app.ml.keys import KeySource, parse_instant

# --- hedge delay --------------------------------------------------------------------------------


def test_adaptive_delay_is_the_ceiling_until_enough_samples():
    policy = HedgePolicy(HedgeConfig(min_samples=20))
    assert policy.delay_s() == 0.2
    for _ in range(19):
        policy.tracker.observe(0.06)
    assert policy.delay_s() == 0.2
    policy.tracker.observe(0.06)
    assert policy.delay_s() == pytest.approx(0.12)  # 2 x p99 of 60 ms


@pytest.mark.parametrize(("latency", "delay"), [(0.01, 0.08), (0.07, 0.14), (0.5, 0.2)])
def test_adaptive_delay_is_clamped_to_floor_and_ceiling(latency, delay):
    policy = HedgePolicy(HedgeConfig())
    for _ in range(50):
        policy.tracker.observe(latency)
    assert policy.delay_s() == pytest.approx(delay)


def test_p99_follows_the_rolling_window():
    policy = HedgePolicy(HedgeConfig(window=100, multiplier=1.0, floor_s=0.001, ceiling_s=10))
    for _ in range(100):
        policy.tracker.observe(0.05)
    for _ in range(5):
        policy.tracker.observe(1.0)  # 5 % slow answers: the p99 sees them
    assert policy.delay_s() == pytest.approx(1.0)
    for _ in range(100):
        policy.tracker.observe(0.05)  # ...and forgets them once they leave the window
    assert policy.delay_s() == pytest.approx(0.05)


def test_fixed_delay_wins():
    policy = HedgePolicy(HedgeConfig(delay_s=0.03))
    for _ in range(50):
        policy.tracker.observe(1.0)
    assert policy.delay_s() == 0.03


@pytest.mark.parametrize(
    ("delay", "service", "bound"), [(0.05, 0.015, 0.08), (0.2, 0.015, 0.23), (0.005, 0.0, 0.005)]
)
def test_healthy_batch_bound_is_the_delay_plus_two_batch_services(delay, service, bound):
    assert healthy_batch_bound_s(delay, service) == pytest.approx(bound)


def test_a_long_batch_delay_raises_floor_and_ceiling():
    policy = HedgePolicy(HedgeConfig())  # floor 80 ms, ceiling 200 ms, multiplier 2
    policy.set_batch_delay(0.2)
    assert policy.floor_s() == pytest.approx(0.23)
    assert policy.ceiling_s() == pytest.approx(0.46)
    assert policy.delay_s() == pytest.approx(0.46)  # the ceiling until 20 answers were seen
    for _ in range(50):
        policy.tracker.observe(0.1)  # faster than the batch delay could allow: a fuller queue
    assert policy.delay_s() == pytest.approx(0.23)  # 2 x p99 = 0.2 < floor
    for _ in range(256):
        policy.tracker.observe(0.21)  # every answer waits out the 200 ms delay
    assert policy.delay_s() == pytest.approx(0.42)  # 2 x p99, not hedged at the 200 ms ceiling
    for _ in range(256):
        policy.tracker.observe(0.3)
    assert policy.delay_s() == pytest.approx(0.46)


def test_the_ceiling_never_falls_below_the_floor():
    policy = HedgePolicy(HedgeConfig(multiplier=0.5))
    policy.set_batch_delay(0.5)  # H = 0.53 s; 0.5 x H would cut below it
    for _ in range(50):
        policy.tracker.observe(0.6)
    assert policy.floor_s() == policy.ceiling_s() == pytest.approx(0.53)
    assert policy.delay_s() == pytest.approx(0.53)


def test_a_short_batch_delay_keeps_the_configured_bounds():
    policy = HedgePolicy(HedgeConfig())
    policy.set_batch_delay(0.005)  # fallback-kill's 5 ms: H = 35 ms, below the 80 ms floor
    assert (policy.floor_s(), policy.ceiling_s()) == (pytest.approx(0.08), pytest.approx(0.2))
    policy.set_batch_delay(None)  # unknown again: no batch floor
    assert policy.healthy_s is None and policy.floor_s() == pytest.approx(0.08)


def test_fixed_delay_below_the_batch_floor_is_flagged_but_kept():
    policy = HedgePolicy(HedgeConfig(delay_s=0.1))
    assert not policy.fixed_below_floor()  # batch delay unknown
    policy.set_batch_delay(0.2)
    assert policy.fixed_below_floor()
    assert policy.delay_s() == 0.1
    assert not HedgePolicy(HedgeConfig()).fixed_below_floor()  # adaptive: never


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay_s": 0},
        {"multiplier": 0},
        {"floor_s": 0.3, "ceiling_s": 0.2},
        {"budget_burst": 0},
        {"batch_service_s": -0.001},
    ],
)
def test_bad_hedge_config_is_refused(kwargs):
    with pytest.raises(ValueError, match="hedge"):
        HedgeConfig(**kwargs)


# --- hedge budget -------------------------------------------------------------------------------


def test_budget_bounds_hedges_to_the_ratio_over_time():
    budget = HedgeBudget(ratio=0.1, burst=10)
    hedges = 0
    for _ in range(1000):  # a TorchServe that is always slow: every window wants a hedge
        budget.deposit()
        hedges += budget.try_spend()
    # The burst of 10, then one hedge per 10 windows: about 10 % plus the burst.
    assert 100 <= hedges <= 111
    assert budget.tokens < 1


def test_budget_never_exceeds_its_burst():
    budget = HedgeBudget(ratio=0.5, burst=3)
    for _ in range(100):
        budget.deposit()
    assert budget.tokens == 3
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


# --- key expiry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "posix"),
    [
        ("2026-11-30T07:10:00Z", 1796022600.0),
        ("2026-11-30T07:10:00.5Z", 1796022600.5),
        ("2026-11-30T07:10:00.123456789Z", 1796022600.123456789),
    ],
)
def test_java_instants_are_parsed(text, posix):
    assert parse_instant(text) == pytest.approx(posix, abs=1e-6)


@pytest.mark.parametrize("text", ["2026-11-30 07:10:00", "yesterday", "", None])
def test_bad_instants_are_refused(text):
    with pytest.raises(ValueError):
        parse_instant(text)  # type: ignore[arg-type]


def _key_file(path: Path, expires: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "management": {"key": "m", "expiration time": expires},
                "inference": {"key": "i", "expiration time": expires},
                "API": {"key": "a"},
            }
        )
    )
    return path


def test_renewal_is_due_shortly_before_expiry(tmp_path):
    now = [parse_instant("2026-11-30T07:00:00Z")]
    keys = KeySource(
        _key_file(tmp_path / "key_file.json", "2026-11-30T07:01:00Z"),
        None,
        management_url="http://127.0.0.1:9",
        renew_before_s=20,
        clock=lambda: now[0],
    )
    assert keys.current() == "i"
    assert keys.expires_at == parse_instant("2026-11-30T07:01:00Z")
    assert not keys.needs_renewal()
    now[0] += 40
    assert keys.needs_renewal()


def test_no_renewal_without_a_management_url_or_with_a_fixed_token(tmp_path):
    key_file = _key_file(tmp_path / "key_file.json", "2000-01-01T00:00:00Z")
    assert not KeySource(key_file, None).needs_renewal()
    fixed = KeySource(key_file, "fixed", management_url="http://127.0.0.1:9")
    assert not fixed.needs_renewal()


# --- settings -----------------------------------------------------------------------------------


def test_hedge_settings_map_to_the_router_config(monkeypatch):
    monkeypatch.setenv("TORCHSERVE_HEDGE_ENABLED", "false")
    monkeypatch.setenv("TORCHSERVE_HEDGE_DELAY_MS", "120")
    monkeypatch.setenv("TORCHSERVE_HEDGE_BUDGET_RATIO", "0.05")
    config = load_settings().hedge_config()
    assert config.enabled is False
    assert config.delay_s == pytest.approx(0.12)
    assert config.budget_ratio == 0.05
    assert config.floor_s == pytest.approx(0.08) and config.ceiling_s == pytest.approx(0.2)


def test_batch_service_and_breaker_window_settings(monkeypatch):
    assert load_settings().hedge_config().batch_service_s == pytest.approx(0.015)
    assert load_settings().torchserve_breaker_window_ms == 250
    monkeypatch.setenv("TORCHSERVE_HEDGE_BATCH_SERVICE_MS", "40")
    monkeypatch.setenv("TORCHSERVE_BREAKER_WINDOW_MS", "0")
    s = load_settings()
    assert s.hedge_config().batch_service_s == pytest.approx(0.04)
    assert s.torchserve_breaker_window_ms == 0


def test_hedge_defaults():
    s = load_settings()
    assert s.torchserve_hedge_enabled is True
    assert s.torchserve_hedge_delay_ms is None
    assert s.torchserve_connect_timeout_ms == 150
    assert s.torchserve_management_url is None


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("TORCHSERVE_HEDGE_FLOOR_MS", "500", "TORCHSERVE_HEDGE_FLOOR_MS"),
        ("TORCHSERVE_HEDGE_BUDGET_RATIO", "2", "TORCHSERVE_HEDGE_BUDGET_RATIO"),
        ("TORCHSERVE_MANAGEMENT_URL", "torchserve:8081", "TORCHSERVE_MANAGEMENT_URL"),
        ("TORCHSERVE_CONNECT_TIMEOUT_MS", "0", "TORCHSERVE_CONNECT_TIMEOUT_MS"),
        ("TORCHSERVE_HEDGE_BATCH_SERVICE_MS", "-1", "TORCHSERVE_HEDGE_BATCH_SERVICE_MS"),
        ("TORCHSERVE_BREAKER_WINDOW_MS", "-1", "TORCHSERVE_BREAKER_WINDOW_MS"),
    ],
)
def test_bad_hedge_settings_name_the_variable(monkeypatch, env, value, named):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_blank_management_url_counts_as_unset(monkeypatch):
    monkeypatch.setenv("TORCHSERVE_MANAGEMENT_URL", "   ")
    assert load_settings().torchserve_management_url is None
