"""The one TorchServe settings type: what a SignFlow TorchServe runs with, ranges included.

Every place that configures TorchServe takes :class:`TorchServeSettings` and renders it to the
form it needs, so a name, a unit, a default and a range are written once, here:

- a scenario's ``stack.torchserve:`` block (``harness.scenario.models.TorchServeSpec`` extends
  this model; its errors name ``stack.torchserve.<field>`` with file:line);
- ``python -m serving.local`` and ``serving.local.LocalTorchServe`` (config.properties:
  :meth:`TorchServeSettings.properties`);
- the management client's registration and the asked-vs-running check
  (``serving.management``: :meth:`TorchServeSettings.registration`);
- the compose stack's container environment (:meth:`TorchServeSettings.env`) and the
  container's registrar, which reads it back (:meth:`TorchServeSettings.from_env`);
- ``harness sweep --emit-config`` (config.properties and model-config.yaml:
  :meth:`TorchServeSettings.per_model`);
- ``python -m serving.package_model`` (the archive's model-config.yaml batching).

Only pydantic and the standard library are imported: the harness's scenario layer and the
TorchServe container (which has neither torch in the harness nor the harness in the
container) import this file as it is.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# What the container's environment calls each field (docker-compose.yml, docker/torchserve/).
ENV_NAMES: dict[str, str] = {
    "model_version": "MODEL_VERSION",
    "token_auth": "TS_TOKEN_AUTH",
    "batch_size": "SIGNFLOW_BATCH_SIZE",
    "max_batch_delay_ms": "SIGNFLOW_MAX_BATCH_DELAY_MS",
    "workers": "SIGNFLOW_WORKERS",
    "response_timeout_s": "SIGNFLOW_RESPONSE_TIMEOUT_S",
    "token_expiration_min": "SIGNFLOW_TOKEN_EXPIRATION_MIN",
}


class TorchServeSettings(BaseModel):
    """What one SignFlow TorchServe runs with. Frozen; unknown keys, NaN and inf refused.

    Raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field; :func:`problem`
    turns one into a line such as ``batch_size = 0 is out of range (1..1024)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # The largest batch (requests) a worker takes; TorchServe's ``batch_size``.
    batch_size: int = Field(16, ge=1, le=1024, description="largest batch, requests")
    # How long (milliseconds) a worker waits to fill a batch; TorchServe's ``max_batch_delay``.
    max_batch_delay_ms: int = Field(50, ge=0, le=60_000, description="batch wait, ms")
    # Python worker processes per version. At least 1: with 0, no worker ever becomes READY
    # and a start waited out its whole ready timeout (120 s) before failing.
    workers: int = Field(2, ge=1, le=64, description="workers per model version")
    # Seconds TorchServe gives a worker to answer a batch before it restarts the worker;
    # TorchServe's ``default_response_timeout`` / per-model ``responseTimeout``.
    response_timeout_s: int = Field(30, ge=1, le=86_400, description="batch answer timeout, s")
    # The archive ``signflow-<model_version>.mar`` served first.
    model_version: str = Field("1.0", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # TorchServe's token authorization (keys in key_file.json); on by default.
    token_auth: bool = True
    # Minutes before TorchServe's inference/management keys expire (None: TorchServe's 60).
    # Short values test key renewal: the backend and the harness renew before expiry.
    token_expiration_min: float | None = Field(None, gt=0, le=1440, description="minutes")

    # The fields TorchServe batches by: what a registration sets and the running check reads.
    BATCHING: ClassVar[tuple[str, ...]] = (
        "batch_size",
        "max_batch_delay_ms",
        "workers",
        "response_timeout_s",
    )

    @field_validator(
        "batch_size",
        "max_batch_delay_ms",
        "workers",
        "response_timeout_s",
        "token_expiration_min",
        mode="before",
    )
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        # pydantic reads True as 1: `workers: true` would quietly run one worker.
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    # ----- renderings ------------------------------------------------------------------------
    def properties(self) -> dict[str, str]:
        """config.properties keys TorchServe reads at start (defaults of every model)."""
        props = {
            "batch_size": str(self.batch_size),
            "max_batch_delay": str(self.max_batch_delay_ms),
            "default_workers_per_model": str(self.workers),
            "default_response_timeout": str(self.response_timeout_s),
        }
        if self.token_expiration_min is not None:
            props["token_expiration_min"] = _number(self.token_expiration_min)
        return props

    def per_model(self) -> dict[str, int]:
        """model-config.yaml keys (``torch-model-archiver --config-file``): one version's
        batching, exactly ``workers`` workers."""
        return {
            "minWorkers": self.workers,
            "maxWorkers": self.workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
        }

    def registration(self) -> dict[str, int]:
        """Query parameters of a management API registration (``POST /models``)."""
        return {
            "batch_size": self.batch_size,
            "max_batch_delay": self.max_batch_delay_ms,
            "initial_workers": self.workers,
            "response_timeout": self.response_timeout_s,
        }

    def env(self) -> dict[str, str]:
        """The TorchServe container's environment (``ENV_NAMES``; an unset expiry is empty:
        TorchServe's default). :meth:`from_env` reads it back."""
        out: dict[str, str] = {}
        for field, name in ENV_NAMES.items():
            value = getattr(self, field)
            if isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif value is None:
                out[name] = ""
            elif isinstance(value, float):
                out[name] = _number(value)
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TorchServeSettings:
        """Settings from a container environment (``ENV_NAMES``; unset or empty: default).

        ValueError naming the variable and its range, e.g. ``SIGNFLOW_WORKERS = 0 is out of
        range (1..64)``; a boolean is ``true`` or ``false`` in any case (:func:`env_bool`).
        """
        raw: dict[str, Any] = {}
        for field, name in ENV_NAMES.items():
            text = env.get(name, "").strip()
            if not text:
                continue
            raw[field] = env_bool(name, text) if field == "token_auth" else text
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(problem(exc, ENV_NAMES)) from None

    @classmethod
    def build(cls, labels: Mapping[str, str] | None = None, /, **values: Any) -> TorchServeSettings:
        """``cls(**values)``, with a ValidationError turned into a one-line ValueError whose
        field names come from ``labels`` (e.g. ``{"workers": "--workers"}``)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValueError(problem(exc, labels or {})) from None

    def replace(self, **changes: Any) -> TorchServeSettings:
        """A validated copy with ``changes`` (``model_copy`` does not validate)."""
        return type(self).build(**{**self.model_dump(), **changes})


def env_bool(name: str, text: str) -> bool:
    """Environment variable ``name``'s ``text`` as a boolean: ``true`` or ``false``, any case.

    Anything else (``0``, ``no``, ``off``, a typo) is a ValueError such as ``TS_TOKEN_AUTH: must
    be true or false (got off)``: docker/torchserve/signflow-env.sh parses the same variable
    for TorchServe's own command line with the same rule, so the container and its registrar
    can never disagree about token auth.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(f"{name}: must be true or false (got {_shown(text)})")


def arg_type(field: str) -> Callable[[str], int]:
    """argparse ``type=`` of whole-number setting ``field``, checked by
    :class:`TorchServeSettings` itself: a command line, a scenario and the container accept
    exactly the same values. Anything else is a usage error (exit 2) such as ``argument
    --workers: workers = 0 is out of range (1..64)``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        try:
            TorchServeSettings.build(**{field: value})
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def arg_help(field: str) -> str:
    """``--help`` text of setting ``field``: its description, range and default."""
    info = TorchServeSettings.model_fields[field]
    return f"{info.description}, {range_text(field)} (default {info.default})"


# pydantic's error types of a number outside its range.
RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def limits(
    field: str, model: type[BaseModel] = TorchServeSettings
) -> tuple[float | None, float | None]:
    """The ``(lowest, highest)`` accepted for ``model``'s ``field`` (None: unbounded). A
    ``gt``/``lt`` bound is returned as its value: it is exclusive, :func:`range_text` says so."""
    lo: float | None = None
    hi: float | None = None
    for rule in model.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge):
            lo = float(rule.ge)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Gt):
            lo = float(rule.gt)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Le):
            hi = float(rule.le)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Lt):
            hi = float(rule.lt)  # type: ignore[arg-type]
    return lo, hi


def range_text(field: str, model: type[BaseModel] = TorchServeSettings) -> str:
    """``model``'s ``field`` range as text: ``1..1024``, ``>0..1440`` (exclusive bounds get
    ``>``/``<``), ``0..`` (no upper bound); empty when it has no bound at all. Any pydantic
    model's field works: the scenario loader uses it for every range error it reports."""
    lo, hi = limits(field, model)
    if lo is None and hi is None:
        return ""
    rules = model.model_fields[field].metadata
    gt = any(isinstance(r, annotated_types.Gt) for r in rules)
    lt = any(isinstance(r, annotated_types.Lt) for r in rules)
    low = "" if lo is None else f"{'>' if gt else ''}{_number(lo)}"
    high = "" if hi is None else f"{'<' if lt else ''}{_number(hi)}"
    return f"{low}..{high}"


def _number(value: float) -> str:
    # 4294967295, not 4.29497e+09; 0.5 as 0.5.
    return str(int(value)) if value.is_integer() else repr(value)


def problem(exc: ValidationError, labels: Mapping[str, str]) -> str:
    """One line per error of ``exc``: ``LABEL = VALUE is out of range (LO..HI)`` for a number
    outside its range, ``LABEL: pydantic's message (got VALUE)`` otherwise. ``labels`` maps a
    field to the name the user gave it (a CLI option, an env variable); default: the field."""
    lines: list[str] = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        label = labels.get(field, field)
        got = err.get("input")
        if err["type"] in RANGE_ERRORS:
            lines.append(f"{label} = {_shown(got)} is out of range ({range_text(field)})")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{label}: {message} (got {_shown(got)})")
    return "; ".join(lines)


def _shown(value: object) -> str:
    # Text from a command line or an environment is shown as typed; anything else as Python.
    return value if isinstance(value, str) and value else repr(value)
