"""The external stack: a system that already runs somewhere (a user's real backend).

The harness only sends load and reads metrics here. It cannot kill or start anything. It can
reload the model when a TorchServe management URL is given, and change the rollout when the
name of an environment variable holding the backend's admin token is given. Tokens are read
from environment variables named in the scenario, never written in the scenario itself.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import cast

import httpx

from harness.redact import redact_text
from harness.scenario.models import StackSpec
from serving.management import ManagementClient, TorchServeError
from serving.settings import TorchServeSettings

from .base import (
    ReloadResult,
    RunningConfigDoc,
    StackDescription,
    StackEndpoints,
    StackError,
    StackOperationUnsupported,
    put_rollout,
    require_spec,
    running_doc,
    validate_percent,
)

READY_TIMEOUT_S = 10.0


def _name_or_none(value: str | None) -> str | None:
    """An environment variable's NAME from the spec (None when not given or empty)."""
    return value or None


class ExternalStack:
    """Already-running URLs from ``stack.external``; load and collection only."""

    name = "external"

    def __init__(
        self, spec: StackSpec, run_dir: Path, *, ready_timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        ext = require_spec(spec, "ExternalStack", "external").external
        if ext is None:  # never for driver external: the model requires the section
            raise StackError("stack.external: required when stack.driver is external")
        if not ext.ws_url or not ext.http_url:
            raise StackError("stack.external: ws_url and http_url are both required")
        self.run_dir = Path(run_dir)
        self.ready_timeout_s = ready_timeout_s
        self.model_name = ext.model_name
        http_url = ext.http_url.rstrip("/")
        management = ext.torchserve_management_url
        self._endpoints = StackEndpoints(
            ws_url=ext.ws_url,
            http_url=http_url,
            backend_metrics_url=ext.backend_metrics_url or http_url + "/metrics",
            torchserve_metrics_url=ext.torchserve_metrics_url or None,
            torchserve_management_url=management.rstrip("/") if management else None,
        )
        # Names of environment variables, not the secrets themselves.
        self._ts_token_env: str | None = _name_or_none(ext.torchserve_token_env)
        self._admin_token_env: str | None = _name_or_none(ext.admin_token_env)
        self._current_version: str | None = None
        # What the external TorchServe reported it runs, or {"error": ...} when it could not.
        self._running: RunningConfigDoc | dict[str, str] | None = None

    def __enter__(self) -> ExternalStack:
        """Check that the backend answers GET /ready (nothing to start)."""
        url = f"{self._endpoints.http_url}/ready"
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        if self._endpoints.torchserve_management_url:
                            self._read_running()
                        return self
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"stack.external.http_url: {url} not ready after "
                        f"{self.ready_timeout_s:.0f} s ({last})"
                    )
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        """Nothing to stop: the external system is not ours."""

    @property
    def endpoints(self) -> StackEndpoints:
        """The URLs from the scenario."""
        return self._endpoints

    def processes(self) -> dict[str, list[int]]:
        """No pids: the processes are not ours to sample."""
        return {}

    def kill_torchserve(self) -> None:
        """Unsupported: the harness does not own an external TorchServe."""
        raise StackOperationUnsupported("kill_torchserve is not possible on an external stack")

    def start_torchserve(self) -> None:
        """Unsupported: the harness does not own an external TorchServe."""
        raise StackOperationUnsupported("start_torchserve is not possible on an external stack")

    # ---- TorchServe management (only with a management URL) --------------------------------

    def _secret(self, env_name: str | None, field: str) -> str | None:
        """The value of the environment variable named ``env_name`` (None: no name given);
        StackError naming ``stack.external.<field>`` when that variable is not set."""
        if not env_name:
            return None
        value = os.environ.get(env_name)
        if value is None:
            raise StackError(f"stack.external.{field}: environment variable {env_name} is not set")
        return value

    def _management(self, operation: str) -> ManagementClient:
        """The shared management client (fixed token from the named environment variable)."""
        url = self._endpoints.torchserve_management_url
        if not url:
            raise StackOperationUnsupported(
                f"{operation}: needs stack.external.torchserve_management_url"
            )
        token = self._secret(self._ts_token_env, "torchserve_token_env")
        keys = {"management": {"key": token}} if token else None
        return ManagementClient(url, (lambda: keys) if keys else None, model_name=self.model_name)

    def _read_running(self) -> None:
        """What the external TorchServe reports it runs (provenance only: not ours to set)."""
        try:
            running = self._management("describe").running_config()
        except (StackError, TorchServeError, OSError) as exc:
            self._running = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            return
        self._running = running_doc(running)

    def reload_model(self, version: str) -> ReloadResult:
        """Register ``version`` (archive ``<model>-<version>.mar`` in the remote model store)
        with the batching the current default runs, make it the default, drain the old version
        and unregister it (the shared ``ManagementClient.reload``); timings of each step."""
        api = self._management("reload_model")
        version = str(version)
        try:
            current = api.running_config()
            old = self._current_version or current.version
            # What it runs now, through the one settings type (its ranges refuse a batching
            # this project would never register: ValueError, a StackError below).
            settings = TorchServeSettings.build(
                batch_size=current.batch_size,
                max_batch_delay_ms=current.max_batch_delay_ms,
                workers=max(1, current.workers),
            )
            result = cast(
                ReloadResult,
                api.reload(f"{self.model_name}-{version}.mar", old, version, settings),
            )
        except (TorchServeError, OSError, ValueError) as exc:
            raise StackError(f"reload_model on {api.base_url}: {exc}") from exc
        self._current_version = version
        self._read_running()
        return result

    def set_rollout(self, percent: int) -> None:
        """PUT /admin/rollout on the backend; needs ``stack.external.admin_token_env``."""
        percent = validate_percent(percent)
        token = self._secret(self._admin_token_env, "admin_token_env")
        if token is None:
            raise StackOperationUnsupported(
                "set_rollout: needs stack.external.admin_token_env (the NAME of an environment "
                "variable holding the backend's admin token)"
            )
        put_rollout(self._endpoints.http_url, token, percent)

    def describe(self) -> StackDescription:
        """The URLs (no tokens) and which optional operations are possible."""
        return {
            "driver": self.name,
            "endpoints": self._endpoints.as_dict(),
            "model_name": self.model_name,
            "reload_supported": self._endpoints.torchserve_management_url is not None,
            "rollout_supported": bool(self._admin_token_env),
            "model_archives": {},
            # What the external TorchServe REPORTED it runs (with a management URL), else None.
            "torchserve_running": self._running,
        }

    def collect_logs(self, dest: Path) -> None:
        """Leave a note: the logs of an external system stay with that system."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "EXTERNAL_STACK.txt").write_text(
            "The stack was external: its process logs were not collected by the harness.\n"
            f"Backend: {redact_text(self._endpoints.http_url)}\n"
        )
