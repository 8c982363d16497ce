"""The one masker (harness.redact): which NAMES hold secrets, and credentials inside URLs.

Every name the backend and TorchServe settings use is listed, with exactly the ones masked, so a
rule change that hides a setting (``token_expiration_min: '***'``) or shows a secret fails here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from harness.redact import MASK, is_secret_name, mask, mask_env, redact_files, redact_text

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "S3cretPassw0rd"
TOKEN = "abcdef123456"
URL = (
    f"wss://alice:{PASSWORD}@host.example:8443/api/v1/translate/stream?lang=en&access_token={TOKEN}"
)


def all_setting_names() -> set[str]:
    """Every setting name of the backend (env vars), TorchServe (fields and env vars)."""
    from backend_patch.app.config import Settings
    from serving.settings import ENV_NAMES, TorchServeSettings

    return (
        {n.upper() for n in Settings.model_fields}
        | set(TorchServeSettings.model_fields)
        | set(ENV_NAMES.values())
    )


def test_exactly_the_secret_settings_are_masked() -> None:
    names = all_setting_names()
    # Guard: the listing really covers the settings the reviewer named.
    assert {"TORCHSERVE_KEY_FILE", "TORCHSERVE_KEY_RENEW_BEFORE_S", "token_expiration_min",
            "token_auth", "TS_TOKEN_AUTH", "SIGNFLOW_TOKEN_EXPIRATION_MIN"} <= names  # fmt: skip
    assert {n for n in names if is_secret_name(n)} == {"ADMIN_TOKEN", "TORCHSERVE_TOKEN"}


@pytest.mark.parametrize(
    "name",
    ["API_KEY", "PASSWD", "db_password", "client_secret", "aws_secret_access_key",
     "SIGNFLOW_ADMIN_TOKEN", "accessToken", "X-Amz-Signature", "Authorization", "auth",
     "apikey", "github.token", "credentials", "sig"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["torchserve_token_env", "admin_token_env", "token_expiration_min", "token_auth",
     "TS_TOKEN_AUTH", "TORCHSERVE_KEY_FILE", "TORCHSERVE_KEY_RENEW_BEFORE_S", "PWD", "PATH",
     "key_count", "monkey_business", "lang"],
)  # fmt: skip
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_url_password_and_secret_query_values_are_masked_rest_kept() -> None:
    out = mask({"external": {"ws_url": URL}, "note": f"retry with {PASSWORD}"})
    assert out["external"]["ws_url"] == (
        f"wss://alice:{MASK}@host.example:8443/api/v1/translate/stream?lang=en&access_token={MASK}"
    )
    # A secret found in a URL is cut out of the rest of the document too.
    assert out["note"] == f"retry with {MASK}"
    text = redact_text(
        "GET https://h/p?X-Amz-Signature=zz99&key=k1&page=2#top and http://u:p%40ss@h:80/ ok"
    )
    assert text == f"GET https://h/p?X-Amz-Signature={MASK}&key={MASK}&page=2#top and " \
        f"http://u:{MASK}@h:80/ ok"  # fmt: skip
    # A user without a password, and a URL without secrets, are left exactly as written.
    plain = "http://bob@h/x?lang=en&token_expiration_min=5 and ftp://x"
    assert redact_text(plain) == plain
    assert mask_env({"TORCHSERVE_URL": f"http://a:{PASSWORD}@h"})["TORCHSERVE_URL"] == (
        f"http://a:{MASK}@h"
    )


def test_external_scenario_yaml_has_no_url_credentials(tmp_path: Path) -> None:
    from harness.scenario import load_scenario
    from harness.scenario.loader import scenario_to_yaml

    path = tmp_path / "ext.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: ext
        workload: {{sessions: 1, duration_s: 5}}
        stack:
          driver: external
          external:
            ws_url: "{URL}"
            http_url: "https://alice:{PASSWORD}@host.example:8443"
        """))  # fmt: skip
    text = scenario_to_yaml(load_scenario(path))
    assert PASSWORD not in text and TOKEN not in text
    assert f"wss://alice:{MASK}@host.example:8443/api/v1/translate/stream" in text


def test_key_expiry_settings_stay_readable_in_results() -> None:
    from harness.scenario import load_scenario
    from harness.scenario.loader import scenario_to_yaml

    doc = yaml.safe_load(scenario_to_yaml(load_scenario(REPO / "scenarios" / "key-expiry.yaml")))
    assert doc["stack"]["torchserve"]["token_expiration_min"] == 0.75
    assert doc["stack"]["torchserve"]["token_auth"] is True


def test_validation_error_shows_a_non_secret_value(tmp_path: Path) -> None:
    from harness.scenario import ScenarioError, load_scenario

    with pytest.raises(ScenarioError) as info:
        load_scenario(REPO / "scenarios" / "key-expiry.yaml",
                      ["stack.torchserve.token_expiration_min=5000"])  # fmt: skip
    assert "token_expiration_min" in str(info.value) and "5000" in str(info.value)
    assert "value hidden" not in str(info.value)


def test_stack_errors_naming_a_url_are_masked() -> None:
    from harness.stack.base import StackError, put_rollout
    from harness.stack.procs import free_port

    # Nothing listens on a fresh free port: httpx fails, and its message quotes the URL.
    with pytest.raises(StackError) as info:
        put_rollout(f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}", "admintoken", 50)
    assert PASSWORD not in str(info.value) and f"alice:{MASK}@127.0.0.1" in str(info.value)
    assert TOKEN not in str(StackError(f"stack.external.ws_url: {URL} not ready"))


def test_logs_lose_url_credentials_without_known_secrets(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "backend.log"
    log.parent.mkdir()
    log.write_text(f"connecting to {URL}\n")
    assert redact_files(tmp_path / "logs", ()) == [log]
    assert PASSWORD not in log.read_text() and TOKEN not in log.read_text()
