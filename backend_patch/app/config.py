"""Backend settings, read from environment variables (pydantic-settings).

Every field maps to the upper-case env var of the same name (``USE_TORCHSERVE``,
``TORCHSERVE_URL``, ``MODEL_DIR`` ...). Invalid values raise :class:`SettingsError` whose
message names the env var, so a typo in a deployment is found from the first log line.

One rule for blank values: an empty or whitespace-only value of an optional setting means
"unset" (``ADMIN_TOKEN=`` from ``${SIGNFLOW_ADMIN_TOKEN:-}`` leaves the admin endpoint off), and a
secret (any ``SecretStr`` field) never holds surrounding whitespace nor, when required, nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .ml.hedging import HedgeConfig

# The package lives at <repo>/backend_patch/app/config.py; artifacts are built under <repo>/build.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "build" / "models" / "1.0"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names the env var."""


class Settings(BaseSettings):
    """All knobs of the backend. Construct directly in tests, or from the env via get_settings()."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", protected_namespaces=()
    )

    # The migration flag and the TorchServe client.
    use_torchserve: bool = False
    torchserve_url: str = "http://127.0.0.1:8080"
    torchserve_model: str = "signflow"
    torchserve_timeout_ms: int = Field(2000, ge=1, le=600_000)
    torchserve_key_file: Path | None = None
    torchserve_token: SecretStr | None = None
    torchserve_rollout_percent: int = Field(100, ge=0, le=100)
    torchserve_max_connections: int = Field(64, ge=1, le=4096)

    # --- Zero downtime (issue 10): connect timeout, hedge, breaker, probes, key renewal. ---
    # Opening a connection has its own short bound: a killed container blackholes SYNs.
    torchserve_connect_timeout_ms: int = Field(150, ge=1, le=600_000)
    # Hedged fallback: after the hedge delay without an answer, classify locally too.
    torchserve_hedge_enabled: bool = True
    # Unset = adaptive: MULTIPLIER x TorchServe's rolling p99, clamped to [FLOOR, CEILING].
    torchserve_hedge_delay_ms: int | None = Field(None, ge=1, le=600_000)
    torchserve_hedge_multiplier: float = Field(2.0, gt=0, le=100)
    torchserve_hedge_floor_ms: int = Field(80, ge=1, le=600_000)
    torchserve_hedge_ceiling_ms: int = Field(200, ge=1, le=600_000)
    # What one batch takes a healthy TorchServe worker (decode, forward, answer): the adaptive
    # delay's floor is TorchServe's maxBatchDelay + 2 x this (hedging.healthy_batch_bound_s).
    torchserve_hedge_batch_service_ms: int = Field(15, ge=0, le=600_000)
    # Token bucket: tokens earned per window sent to TorchServe; one hedge costs one token.
    torchserve_hedge_budget_ratio: float = Field(0.1, ge=0, le=1)
    torchserve_hedge_budget_burst: int = Field(10, ge=1, le=100_000)
    # Circuit breaker: consecutive failures (errors, timeouts, hedges lost) that open it, how
    # long such a streak must last unless TorchServe is unreachable (one slow batch's burst of
    # hedge losses is one event, not three), the cool-down before shadow probes, and the fast
    # probes in a row that close it.
    torchserve_breaker_failures: int = Field(3, ge=1, le=10_000)
    torchserve_breaker_window_ms: int = Field(250, ge=0, le=600_000)
    torchserve_breaker_cooldown_s: float = Field(1.0, ge=0, le=3600)
    torchserve_probe_successes: int = Field(2, ge=1, le=1000)
    # Management API, for renewing the inference key through TorchServe's token API.
    torchserve_management_url: str | None = None
    torchserve_key_renew_before_s: float = Field(20.0, ge=0, le=86_400)

    # The local (old) inference path: loaded even when the flag is on, for the fallback.
    model_dir: Path = DEFAULT_MODEL_DIR
    # One inference at a time by default, like the old singleton pipeline.
    inference_workers: int = Field(1, ge=1, le=64)
    # One intra-op thread: with idle gaps between calls, more threads made batch-1 latency worse
    # on this kind of machine (see shared notes) and they fight the event loop for the cores.
    torch_threads: int = Field(1, ge=1, le=256)

    # State machine (frames at the client's camera rate, typically 30 fps).
    motion_threshold: float | None = Field(None, gt=0)  # None: features.DEFAULT_MOTION_THRESHOLD
    rest_frames_to_end: int = Field(10, ge=1, le=10_000)
    min_sign_frames: int = Field(8, ge=1, le=10_000)
    max_sign_frames: int = Field(120, ge=2, le=10_000)
    confidence_threshold: float = Field(0.5, ge=0.0, le=1.0)
    # Rest frames after the last accepted sign that complete a sentence (1.5 s at 30 fps).
    sentence_pause_frames: int = Field(45, ge=1, le=100_000)
    max_sentence_signs: int = Field(32, ge=1, le=10_000)

    # Protocol limits.
    max_message_bytes: int = Field(262_144, ge=1024, le=64 * 1024 * 1024)
    # Frames a session may have in flight before the server stops reading its socket.
    max_pending_frames: int = Field(256, ge=1, le=100_000)

    # Backend processes sharing the listening socket (python -m backend_patch). With more than
    # one, metrics, the live rollout percent and key renewal are shared (app/shared.py).
    backend_workers: int = Field(1, ge=1, le=64)

    # Admin endpoint (PUT/GET /admin/rollout): disabled (404) unless a non-blank token is set.
    admin_token: SecretStr | None = None
    log_level: LogLevel = "info"

    # WebSocket session deadlines (seconds). Close codes: docs/ARCHITECTURE.md "Session deadlines".
    # A connection must send its whole HTTP request head (the WebSocket upgrade) this soon.
    handshake_timeout_s: float = Field(10.0, gt=0, le=3600)
    # Keep-alive: a ping this often; no pong within the timeout closes with 1011.
    ws_ping_interval_s: float = Field(20.0, gt=0, le=3600)
    ws_ping_timeout_s: float = Field(20.0, gt=0, le=3600)
    # No message from the client for this long closes the session with 1001.
    ws_idle_timeout_s: float = Field(60.0, gt=0, le=86_400)
    # A client that does not read its replies (writes blocked this long) is closed with 1008 and
    # its connection aborted: it must not hold a session and megabytes of buffers forever.
    ws_send_timeout_s: float = Field(10.0, gt=0, le=3600)
    # After the server's close frame, how long to wait for the client's before dropping TCP.
    ws_close_timeout_s: float = Field(5.0, gt=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """THE rule for blank values, for every field (see the module doc)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(str(name).lower())
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if field is None or not isinstance(value, str):
                continue
            kinds = get_args(field.annotation) or (field.annotation,)
            if not value.strip() and type(None) in kinds:
                out[name] = None
            elif SecretStr in kinds:
                if not value.strip():
                    raise ValueError(f"{str(name).upper()} must not be empty")
                out[name] = value.strip()  # header values are trimmed: padding cannot match
        return out

    @model_validator(mode="after")
    def _check_lengths(self) -> Settings:
        if self.min_sign_frames > self.max_sign_frames:
            raise ValueError("MIN_SIGN_FRAMES must not exceed MAX_SIGN_FRAMES")
        if self.torchserve_hedge_floor_ms > self.torchserve_hedge_ceiling_ms:
            raise ValueError(
                "TORCHSERVE_HEDGE_FLOOR_MS must not exceed TORCHSERVE_HEDGE_CEILING_MS"
            )
        url = self.torchserve_management_url
        if url is not None and not url.strip():
            self.torchserve_management_url = None  # an empty value means unset
        elif url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("TORCHSERVE_MANAGEMENT_URL must start with http:// or https://")
        return self

    def hedge_config(self) -> HedgeConfig:
        """The hedge settings in the router's terms (seconds)."""
        delay = self.torchserve_hedge_delay_ms
        return HedgeConfig(
            enabled=self.torchserve_hedge_enabled,
            delay_s=None if delay is None else delay / 1000.0,
            multiplier=self.torchserve_hedge_multiplier,
            floor_s=self.torchserve_hedge_floor_ms / 1000.0,
            ceiling_s=self.torchserve_hedge_ceiling_ms / 1000.0,
            budget_ratio=self.torchserve_hedge_budget_ratio,
            budget_burst=float(self.torchserve_hedge_budget_burst),
            batch_service_s=self.torchserve_hedge_batch_service_ms / 1000.0,
        )

    def auth_token(self) -> str | None:
        """The TorchServe bearer token as plain text, or None (never log the result)."""
        return reveal(self.torchserve_token)


def reveal(secret: SecretStr | None) -> str | None:
    """A secret setting as plain text, or None when unset; never log the result.

    The one place secrets are read: it refuses an empty value, which would otherwise make an
    empty ``Authorization: Bearer`` header count as a match.
    """
    if secret is None:
        return None
    value = secret.get_secret_value()
    if not value.strip():
        raise SettingsError("a secret setting is empty; unset it instead")
    return value


def _describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "__root__"]
        name = loc[0].upper() if loc else "settings"
        value = item.get("input")
        # Secret-looking values never reach the message.
        shown = "" if "token" in name.lower() or isinstance(value, dict) else f" (got {value!r})"
        parts.append(f"{name}: {item.get('msg', 'invalid')}{shown}")
    return "invalid backend settings: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (overrides win); raise SettingsError naming the var."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise SettingsError(_describe(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment, read once."""
    return load_settings()
