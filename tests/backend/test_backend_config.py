"""Settings from the environment, and errors that name the env var."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import SecretStr

from backend_patch.app.config import (
    DEFAULT_MODEL_DIR,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
    reveal,
)
from backend_patch.app.ml.features import DEFAULT_MOTION_THRESHOLD


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


def _secret_fields() -> list[str]:
    """Every secret setting: the fields typed SecretStr (whatever is added later)."""
    return [
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (get_args(field.annotation) or (field.annotation,))
    ]


def test_secret_settings_are_known() -> None:
    assert set(_secret_fields()) >= {"admin_token", "torchserve_token"}


@pytest.mark.parametrize("blank", ["", " ", "\t \n"])
def test_a_blank_secret_counts_as_unset(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    for name in _secret_fields():
        monkeypatch.setenv(name.upper(), blank)
    s = load_settings()
    for name in _secret_fields():
        assert getattr(s, name) is None, name
    assert s.auth_token() is None
    # Also when passed in code (as tests and the harness do), as text or SecretStr.
    for name in _secret_fields():
        assert getattr(load_settings(**{name: blank}), name) is None
        assert getattr(load_settings(**{name: SecretStr(blank)}), name) is None


def test_a_secret_loses_surrounding_whitespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", " s3cret\n")
    monkeypatch.setenv("TORCHSERVE_TOKEN", "\tts-token ")
    s = load_settings()
    assert reveal(s.admin_token) == "s3cret" and s.auth_token() == "ts-token"


def test_reveal_refuses_an_empty_secret() -> None:
    assert reveal(None) is None
    with pytest.raises(SettingsError, match="empty"):
        reveal(SecretStr("  "))


@pytest.mark.parametrize("var", ["TORCHSERVE_KEY_FILE", "MOTION_THRESHOLD"])
def test_a_blank_optional_setting_is_unset(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, " ")
    assert getattr(load_settings(), var.lower()) is None  # not Path("."), not an error


def test_a_blank_required_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_WORKERS", " ")
    with pytest.raises(SettingsError, match="INFERENCE_WORKERS"):
        load_settings()


def test_deadline_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.handshake_timeout_s, s.ws_idle_timeout_s, s.ws_send_timeout_s) == (10, 60, 10)
    assert (s.ws_ping_interval_s, s.ws_ping_timeout_s, s.ws_close_timeout_s) == (20, 20, 5)
    monkeypatch.setenv("WS_IDLE_TIMEOUT_S", "0")
    with pytest.raises(SettingsError, match="WS_IDLE_TIMEOUT_S"):
        load_settings()


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_settings_table() -> dict[str, str]:
    """README's backend settings table: {VARIABLE: default column}."""
    text = README.read_text()
    section = text[text.index("## The backend and its flag") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section, flags=re.MULTILINE)
    return {var: default.strip().strip("`") for var, default in rows}


def test_readme_lists_every_setting_with_its_default() -> None:
    table = _readme_settings_table()
    fields = {name.upper(): field for name, field in Settings.model_fields.items()}
    assert sorted(set(fields) - set(table)) == [], "settings missing from README's table"
    assert sorted(set(table) - set(fields)) == [], "README documents settings that do not exist"
    for var, field in fields.items():
        default = field.default
        if isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, float):
            assert float(table[var]) == default, var  # "1.0" and "1" both say 1.0
            continue
        elif isinstance(default, int | str):
            expected = str(default)
        elif default is None and var != "MOTION_THRESHOLD":  # resolved from features.py
            expected = "-"
        else:
            continue
        assert table[var] == expected, var
    assert table["MOTION_THRESHOLD"] == f"{DEFAULT_MOTION_THRESHOLD:g}"
