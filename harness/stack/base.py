"""The Stack interface: what the runner and the timeline may ask of a system under test.

A stack owns the processes (or the URLs) of one run. The runner enters it (start + wait ready),
points the load generator and the collectors at its endpoints, lets the timeline call the fault
and reload operations, and always exits it (stop + logs), also on errors and Ctrl-C.
Every driver (``local``, ``external``, later ``compose``) implements the same protocol so the
runner never branches on the driver.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import (
    Any,
    Protocol,
    Required,
    TypedDict,
    cast,
    runtime_checkable,
)

import httpx

from harness.redact import mask_env, redact_text
from harness.results.description import LocalModelInfo as LocalModelInfo
from harness.results.description import RunningConfigDoc as RunningConfigDoc
from harness.results.description import StackDescription as StackDescription
from harness.results.description import sha256_file as sha256_file
from harness.scenario.models import StackSpec
from serving.management import ManagementClient, RunningConfig, TorchServeError
from serving.settings import TorchServeSettings


class StackError(RuntimeError):
    """The stack could not start, answer or stop: an infrastructure failure (harness exit 3).

    The message goes through the one masker (harness.redact): stack errors name URLs (the
    external ``ws_url``/``http_url``, a management URL) and echo library errors that quote
    them, and a URL may carry a password or a token; every raise site is covered this way.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact_text(str(message)), *args)


class StackOperationUnsupported(StackError):
    """This driver cannot do the operation (e.g. kill TorchServe on an external stack)."""


@dataclass(frozen=True)
class StackEndpoints:
    """Where the load generator and the collectors find the system under test.

    ``torchserve_*`` URLs are ``None`` when TorchServe is not part of the stack (or unknown for
    an external one); with replicas they are the first replica's, and
    ``torchserve_metrics_urls`` lists every replica's metrics URL (empty: just the one). No
    secret is ever part of an endpoint.
    """

    ws_url: str
    http_url: str
    backend_metrics_url: str
    torchserve_metrics_url: str | None = None
    torchserve_management_url: str | None = None
    torchserve_inference_url: str | None = None
    torchserve_metrics_urls: tuple[str, ...] = ()
    # A Prometheus server the stack runs (stack.prometheus), its HTTP API; None without one.
    prometheus_url: str | None = None

    def all_torchserve_metrics_urls(self) -> list[str]:
        """Every TorchServe metrics URL to scrape (one per replica); empty without TorchServe."""
        if self.torchserve_metrics_urls:
            return list(self.torchserve_metrics_urls)
        return [self.torchserve_metrics_url] if self.torchserve_metrics_url else []

    def as_dict(self) -> dict[str, str | None]:
        """Plain dict, for provenance and logs."""
        doc = asdict(self)
        doc["torchserve_metrics_urls"] = list(self.torchserve_metrics_urls)
        return doc


class ReplicaRunning(RunningConfigDoc):
    """One replica's :class:`RunningConfigDoc`, read after the stack operation ``checked_after``
    (``start``, ``reload_model``...); ``replica`` is ``torchserve`` or ``torchserve-N``."""

    replica: str
    checked_after: str


class ReloadResult(TypedDict, total=False):
    """What ``Stack.reload_model`` returns (an event's ``result`` in results.json); seconds.

    The steps are ``serving.management.ManagementClient.reload``'s (register, set default,
    drain the old version, unregister it); with replicas, the first replica's steps at the top
    and every replica's in ``replicas``. ``from_version`` is None when TorchServe never said.
    """

    from_version: Required[str | None]
    to_version: Required[str]
    total_s: Required[float]
    register_s: float
    set_default_s: float
    drain_s: float
    drained: bool
    drain_by: str  # how the drain was decided ("pending", "probe", "timeout", "none"...)
    pending_at_switch: int  # requests queued on the old version when the default changed
    unregister_s: float
    copy_s: float  # compose: copying the archive into the container's model store
    replicas: list[ReloadResult]


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

    def reload_model(self, version: str) -> ReloadResult: ...

    def set_rollout(self, percent: int) -> None: ...

    def describe(self) -> StackDescription: ...

    def collect_logs(self, dest: Path) -> None: ...


def mask_secrets(env: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``env`` with every secret-named value masked (the one rule: harness.redact)."""
    return mask_env(env)


def require_spec(spec: object, cls: str, driver: str) -> StackSpec:
    """``spec`` itself when it is a :class:`StackSpec` (the one type a driver reads: typed
    attributes, validated once, the replicas/token rule included) for ``driver``; ``cls``
    names the driver class in the messages.

    Raises TypeError for anything else (a mapping is validated at the door: ``make_stack``),
    ValueError for a spec of another driver (the model's rules hold for the driver it names).
    """
    if not isinstance(spec, StackSpec):
        raise TypeError(
            f"{cls} takes a harness.scenario.StackSpec, got {type(spec).__name__}: validate a "
            "mapping with harness.stack.make_stack(mapping, run_dir) or StackSpec.model_validate"
        )
    if spec.driver != driver:
        raise ValueError(
            f"{cls}: stack.driver is {spec.driver!r}, not {driver!r}; "
            "harness.stack.make_stack picks the driver the spec names"
        )
    return spec


def torchserve_provenance(settings: TorchServeSettings, current_version: str) -> dict[str, Any]:
    """The ``torchserve`` part of a stack's provenance: what was asked (``running`` is added
    by the driver: what TorchServe reported)."""
    return {
        "batch_size": settings.batch_size,
        "max_batch_delay_ms": settings.max_batch_delay_ms,
        "workers": settings.workers,
        "model_version": current_version,
        "initial_model_version": settings.model_version,
        "token_auth": settings.token_auth,
        "token_expiration_min": settings.token_expiration_min,
    }


# A scale started by the registration may still be under way when the model first answers.
RUNNING_CONFIG_SETTLE_S = 60.0


def verify_running(
    name: str,
    api: ManagementClient,
    version: str,
    settings: TorchServeSettings,
    timeout_s: float = RUNNING_CONFIG_SETTLE_S,
) -> RunningConfigDoc:
    """What TorchServe ``name`` REPORTS it runs, as a provenance dict; StackError (harness exit
    3) when it differs from what the scenario asked, naming each field, asked vs running."""
    try:
        running = api.wait_for_config(version, settings, timeout_s)
    except (TorchServeError, OSError) as exc:
        raise StackError(f"{name}: {exc}") from exc
    return running_doc(running)


def running_doc(running: RunningConfig) -> RunningConfigDoc:
    """``serving.management.RunningConfig`` (its dataclass, unchecked here) as provenance."""
    return cast(RunningConfigDoc, running.as_dict())


def validate_percent(percent: int) -> int:
    """Check a rollout percent (0..100) and return it as an int; ValueError names the field."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"rollout percent must be an integer 0..100, got {percent!r}")
    if not 0 <= percent <= 100 or int(percent) != percent:
        raise ValueError(f"rollout percent must be an integer 0..100, got {percent!r}")
    return int(percent)


def put_rollout(http_url: str, admin_token: str, percent: int) -> int:
    """PUT the backend's ``/admin/rollout``; returns the percent, StackError on any failure."""
    percent = validate_percent(percent)
    url = f"{http_url}/admin/rollout"
    try:
        response = httpx.put(
            url,
            json={"percent": percent},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=5.0,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        raise StackError(f"set_rollout: {url} failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise StackError(
            f"set_rollout: {url} answered HTTP {response.status_code}: {response.text[:200]}"
        )
    return percent


class DeferSigint:
    """Hold Ctrl-C back while a stack starts or stops, then re-raise it.

    A KeyboardInterrupt in the middle of a teardown would leave the remaining processes
    running; deferring it to the end makes the teardown complete. Only possible in the main
    thread (signal handlers live there); elsewhere it does nothing.
    """

    def __init__(self) -> None:
        # What SIGINT did before (a handler, SIG_DFL/SIG_IGN, or None: not set from Python).
        self._previous: signal._HANDLER = None
        self._pending = False
        self._active = False

    def __enter__(self) -> DeferSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._active = True
        return self

    def _handler(self, signum: int, frame: object) -> None:
        self._pending = True

    def __exit__(self, *exc: object) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            self._active = False
            if self._pending and exc[0] is None:
                raise KeyboardInterrupt
