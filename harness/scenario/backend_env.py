"""The backend's environment: which variables it reads, which the scenario owns, what leaks in.

The scenario decides the system under test. The backend reads its settings from environment
variables named after the fields of ``backend_patch.app.config.Settings`` (case-insensitive), so
a variable exported in the caller's shell (``REST_FRAMES_TO_END=40``) would silently change the
system under test. Rules, applied by the local stack and by ``harness validate``:

- Inherited variables that name a backend setting are DROPPED from the backend's environment;
  their names (values masked by the one secret rule) are recorded in provenance
  (``provenance.configs.backend.inherited_dropped``). To set one, use ``stack.backend.env``.
- Inherited runtime variables the backend's libraries read (``OMP_NUM_THREADS``,
  ``CUDA_VISIBLE_DEVICES``...: :data:`RUNTIME_PREFIXES`) are kept and recorded
  (``provenance.configs.backend.inherited_runtime``).
- A ``stack.backend.env`` entry for a variable the harness derives from a scenario key
  (:data:`SCENARIO_OWNED`) is a validation error: the scenario key is the one place to set it.
- A ``stack.backend.env`` value the backend would refuse at start (``TORCHSERVE_BREAKER_WINDOW_MS
  =-1``, ``TORCHSERVE_HEDGE_BATCH_SERVICE_MS=abc``) is a validation error with the backend's
  own reason: the values are checked by building the backend's ``Settings`` from them.
- A ``stack.backend.env`` name that is not a backend setting but looks like one (a backend-style
  prefix, or close to a real name: ``USE_TORCHSEVRE``) gets a warning with the likely name.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import Any

from harness.redact import is_secret_name, redact_text

# Variable -> the scenario key (or harness duty) that sets it; setting it in stack.backend.env
# would contradict the scenario.
SCENARIO_OWNED: dict[str, str] = {
    "USE_TORCHSERVE": "stack.use_torchserve",
    "TORCHSERVE_ROLLOUT_PERCENT": "stack.rollout_percent (and set_rollout events)",
    "INFERENCE_WORKERS": "stack.backend.inference_workers",
    "TORCHSERVE_URL": "the stack (it points the backend at the TorchServe it started)",
    "ADMIN_TOKEN": "the harness (a fresh token per run, used by set_rollout)",
    "TORCHSERVE_MANAGEMENT_URL": "the stack (the management API of the TorchServe it started)",
    "TORCHSERVE_KEY_FILE": "the stack (TorchServe's key file, with stack.torchserve.token_auth)",
}
# Names that look like backend settings: an unknown one of these is probably a typo.
BACKEND_STYLE_PREFIXES = ("TORCHSERVE_", "SIGNFLOW_", "USE_", "MODEL_", "MAX_", "MIN_", "TS_")
# Inherited variables read by the backend's libraries (torch, CUDA, Python): kept, recorded.
RUNTIME_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "CUDA_", "PYTORCH_", "TORCH_", "NVIDIA_")
RUNTIME_NAMES = frozenset({"PYTHONHASHSEED", "PYTHONOPTIMIZE", "LD_PRELOAD", "MALLOC_ARENA_MAX"})


@functools.cache
def backend_setting_names() -> frozenset[str]:
    """Upper-case names of every environment variable the backend's Settings read."""
    from backend_patch.app.config import Settings

    return frozenset(name.upper() for name in Settings.model_fields)


def backend_default(name: str) -> int:
    """The backend's default of an integer setting (``rest_frames_to_end`` -> 10)."""
    from backend_patch.app.config import Settings

    return int(Settings.model_fields[name].default)


def split_inherited(
    environ: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(kept, dropped, runtime) of an inherited environment for the backend process.

    ``dropped``: variables naming a backend setting (matched case-insensitively, as the backend
    reads them). ``runtime``: the kept variables that tune the backend's libraries, for
    provenance. ``kept`` includes ``runtime``.
    """
    settings = backend_setting_names()
    kept: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for name, value in environ.items():
        (dropped if name.upper() in settings else kept)[name] = value
    runtime = {
        k: v for k, v in kept.items() if k.startswith(RUNTIME_PREFIXES) or k in RUNTIME_NAMES
    }
    return kept, dropped, runtime


def env_problems(env: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) for ``stack.backend.env``, each as (variable name, message)."""
    settings = backend_setting_names()
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    for name in env:
        upper = name.upper()
        if upper in SCENARIO_OWNED:
            errors.append(
                (name, f"{upper} is set by {SCENARIO_OWNED[upper]}; set it there, not in env")
            )
        elif upper not in settings:
            hint = difflib.get_close_matches(upper, sorted(settings), n=1, cutoff=0.75)
            if hint or upper.startswith(BACKEND_STYLE_PREFIXES):
                tip = f"; did you mean {hint[0]}?" if hint else ""
                warnings.append(
                    (name, f"{name} is not a backend setting, the backend ignores it{tip}")
                )
    return errors, warnings


@functools.cache
def _given_settings() -> type[Any]:
    """The backend's Settings, read from the given values only (no env, no .env file)."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from backend_patch.app.config import Settings

    class Given(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return Given


def env_value_problems(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable name as written, reason) for each ``stack.backend.env`` value the backend
    would refuse at start, found by building the backend's ``Settings`` from these values.

    Only the values the user sets are checked (the scenario-owned ones are reported by
    :func:`env_problems`; the stack's own values are valid by construction), on top of the
    backend's defaults; the caller's shell is not read, as the stack drops it. A reason never
    shows the value of a secret-named variable. A cross-field rule (``MIN_SIGN_FRAMES`` above
    ``MAX_SIGN_FRAMES``) is reported on the first variable it names that the user set.
    """
    from pydantic import ValidationError

    settings = backend_setting_names()
    written: dict[str, str] = {}  # lower-case field name -> variable name as written
    values: dict[str, Any] = {}
    for name, value in env.items():
        upper = name.upper()
        if upper in settings and upper not in SCENARIO_OWNED:
            written[upper.lower()] = name
            values[upper.lower()] = value
    if not values:
        return []
    try:
        _given_settings()(**values)
    except ValidationError as exc:
        out: list[tuple[str, str]] = []
        for err in exc.errors():
            reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            field = next((str(p) for p in err.get("loc", ()) if str(p) in written), None)
            if field is None:  # a rule over several fields: name the first one set
                field = next((f for f in written if f.upper() in reason), None)
            name = written[field] if field else "(backend settings)"
            if field and not is_secret_name(name):
                reason += f" (got {redact_text(repr(values[field]))})"
            out.append((name, f"the backend refuses it: {reason}"))
        return out
    except ValueError as exc:  # a SettingsError/ValueError raised outside pydantic's checks
        return [("(backend settings)", f"the backend refuses it: {exc}")]
    return []


def effective_setting(env: Mapping[str, str], name: str) -> str | None:
    """The value ``stack.backend.env`` gives the backend setting ``name`` (case-insensitive)."""
    for key, value in env.items():
        if key.upper() == name.upper():
            return value
    return None
