"""Settings from the environment, and errors that name the env var."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend_patch.app.config import (
    DEFAULT_MODEL_DIR,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults() -> None:
    s = load_settings()
    assert s.use_torchserve is False
    assert s.torchserve_url == "http://127.0.0.1:8080"
    assert s.torchserve_timeout_ms == 2000 and s.torchserve_rollout_percent == 100
    assert s.model_dir == DEFAULT_MODEL_DIR and DEFAULT_MODEL_DIR.parts[-3:] == (
        "build",
        "models",
        "1.0",
    )
    assert (DEFAULT_MODEL_DIR.parents[2] / "pyproject.toml").is_file()
    assert s.inference_workers == 1 and s.rest_frames_to_end == 10
    assert s.max_message_bytes == 262_144 and s.admin_token is None and s.auth_token() is None


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("USE_TORCHSERVE", "true")
    monkeypatch.setenv("TORCHSERVE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("TORCHSERVE_ROLLOUT_PERCENT", "10")
    monkeypatch.setenv("TORCHSERVE_TOKEN", "s3cret")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("REST_FRAMES_TO_END", "5")
    s = load_settings()
    assert s.use_torchserve and s.torchserve_url.endswith(":9999")
    assert s.torchserve_rollout_percent == 10 and s.model_dir == tmp_path
    assert s.rest_frames_to_end == 5
    assert s.auth_token() == "s3cret" and "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TORCHSERVE_ROLLOUT_PERCENT", "150"),
        ("USE_TORCHSERVE", "maybe"),
        ("TORCHSERVE_TIMEOUT_MS", "-1"),
        ("INFERENCE_WORKERS", "0"),
        ("MAX_MESSAGE_BYTES", "abc"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_bad_value_names_the_env_var(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings()


def test_cross_field_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_SIGN_FRAMES", "50")
    monkeypatch.setenv("MAX_SIGN_FRAMES", "20")
    with pytest.raises(SettingsError, match="MIN_SIGN_FRAMES"):
        load_settings()


def test_secrets_stay_out_of_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "x" * 3)
    monkeypatch.setenv("TORCHSERVE_ROLLOUT_PERCENT", "101")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "xxx" not in str(info.value)


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("TORCHSERVE_ROLLOUT_PERCENT", "30")
        first = get_settings()
        monkeypatch.setenv("TORCHSERVE_ROLLOUT_PERCENT", "40")
        assert get_settings() is first and first.torchserve_rollout_percent == 30
    finally:
        get_settings.cache_clear()
