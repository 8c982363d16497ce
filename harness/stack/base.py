"""The Stack interface: what the runner and the timeline may ask of a system under test.

A stack owns the processes (or the URLs) of one run. The runner enters it (start + wait ready),
points the load generator and the collectors at its endpoints, lets the timeline call the fault
and reload operations, and always exits it (stop + logs), also on errors and Ctrl-C.
Every driver (``local``, ``external``, later ``compose``) implements the same protocol so the
runner never branches on the driver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class StackError(RuntimeError):
    """The stack could not start, answer or stop: an infrastructure failure (harness exit 3)."""


class StackOperationUnsupported(StackError):
    """This driver cannot do the operation (e.g. kill TorchServe on an external stack)."""


@dataclass(frozen=True)
class StackEndpoints:
    """Where the load generator and the collectors find the system under test.

    ``torchserve_*`` URLs are ``None`` when TorchServe is not part of the stack (or unknown for
    an external one). No secret is ever part of an endpoint.
    """

    ws_url: str
    http_url: str
    backend_metrics_url: str
    torchserve_metrics_url: str | None = None
    torchserve_management_url: str | None = None
    torchserve_inference_url: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Plain dict, for provenance and logs."""
        return asdict(self)


@runtime_checkable
class Stack(Protocol):
    """The protocol every driver implements (see docs/HARNESS.md)."""

    name: str

    def __enter__(self) -> Stack: ...

    def __exit__(self, *exc: object) -> None: ...

    @property
    def endpoints(self) -> StackEndpoints: ...

    def processes(self) -> dict[str, list[int]]: ...

    def kill_torchserve(self) -> None: ...

    def start_torchserve(self) -> None: ...

    def reload_model(self, version: str) -> dict[str, Any]: ...

    def set_rollout(self, percent: int) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def collect_logs(self, dest: Path) -> None: ...


# Names whose values must never reach results, logs or reports.
_SECRET_NAME = re.compile(r"token|key|secret|password|passwd|credential|auth", re.IGNORECASE)
MASK = "***"


def mask_secrets(env: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``env`` with the value of every secret-looking name replaced by ``***``."""
    return {k: (MASK if _SECRET_NAME.search(str(k)) else v) for k, v in env.items()}


def spec_get(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from a pydantic model, a plain object or a mapping.

    The stack spec is the scenario's pydantic model in production; tests and tools may pass a
    plain dict. Reading through one helper keeps the drivers indifferent to which.
    """
    if obj is None:
        return default
    value = obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)
    return default if value is None else value


def validate_percent(percent: int) -> int:
    """Check a rollout percent (0..100) and return it as an int; ValueError names the field."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"rollout percent must be an integer 0..100, got {percent!r}")
    if not 0 <= percent <= 100 or int(percent) != percent:
        raise ValueError(f"rollout percent must be an integer 0..100, got {percent!r}")
    return int(percent)
