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
from typing import Any

import httpx

from .base import (
    StackEndpoints,
    StackError,
    StackOperationUnsupported,
    put_rollout,
    spec_get,
    validate_percent,
)

READY_TIMEOUT_S = 10.0
MODEL_NAME = "signflow"


class ExternalStack:
    """Already-running URLs from ``stack.external``; load and collection only."""

    name = "external"

    def __init__(self, spec: Any, run_dir: Path, *, ready_timeout_s: float = READY_TIMEOUT_S):
        ext = spec_get(spec, "external", None)
        if ext is None:
            raise StackError("stack.external: required when stack.driver is external")
        ws_url = spec_get(ext, "ws_url")
        http_url = spec_get(ext, "http_url")
        if not ws_url or not http_url:
            raise StackError("stack.external: ws_url and http_url are both required")
        self.run_dir = Path(run_dir)
        self.ready_timeout_s = ready_timeout_s
        self.model_name = str(spec_get(ext, "model_name", MODEL_NAME))
        management = spec_get(ext, "torchserve_management_url")
        metrics = spec_get(ext, "torchserve_metrics_url")
        backend_metrics = spec_get(ext, "backend_metrics_url")
        self._endpoints = StackEndpoints(
            ws_url=str(ws_url),
            http_url=str(http_url).rstrip("/"),
            backend_metrics_url=str(backend_metrics or str(http_url).rstrip("/") + "/metrics"),
            torchserve_metrics_url=str(metrics) if metrics else None,
            torchserve_management_url=str(management).rstrip("/") if management else None,
        )
        # Names of environment variables, not the secrets themselves.
        self._ts_token_env = spec_get(ext, "torchserve_token_env")
        self._admin_token_env = spec_get(ext, "admin_token_env")
        self._current_version: str | None = None

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

    def _secret(self, env_name: Any, field: str) -> str | None:
        if not env_name:
            return None
        value = os.environ.get(str(env_name))
        if value is None:
            raise StackError(f"stack.external.{field}: environment variable {env_name} is not set")
        return value

    def _management(self, operation: str) -> tuple[str, dict[str, str]]:
        url = self._endpoints.torchserve_management_url
        if not url:
            raise StackOperationUnsupported(
                f"{operation}: needs stack.external.torchserve_management_url"
            )
        token = self._secret(self._ts_token_env, "torchserve_token_env")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return url, headers

    def _call(self, client: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            response = client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise StackError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise StackError(f"{method} {url}: HTTP {response.status_code}: {response.text[:200]}")
        return response

    def _default_version(self, client: httpx.Client, base: str, headers: dict[str, str]) -> str:
        response = self._call(client, "GET", f"{base}/models/{self.model_name}", headers=headers)
        try:
            models = response.json()
            entry = next((m for m in models if m.get("isDefault")), models[0])
            return str(entry["modelVersion"])
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise StackError(f"cannot read the default version of {self.model_name}") from exc

    def reload_model(self, version: str) -> dict[str, Any]:
        """Register ``version`` (archive ``<model>-<version>.mar`` in the remote model store),
        make it the default, unregister the old one; return the timings of each step."""
        base, headers = self._management("reload_model")
        version = str(version)
        with httpx.Client(timeout=120.0, trust_env=False) as client:
            old = self._current_version or self._default_version(client, base, headers)
            t0 = time.monotonic()
            self._call(
                client,
                "POST",
                f"{base}/models",
                params={
                    "url": f"{self.model_name}-{version}.mar",
                    "model_name": self.model_name,
                    "initial_workers": "1",
                    "synchronous": "true",
                },
                headers=headers,
            )
            t1 = time.monotonic()
            self._call(
                client,
                "PUT",
                f"{base}/models/{self.model_name}/{version}/set-default",
                headers=headers,
            )
            t2 = time.monotonic()
            if old != version:
                self._call(
                    client, "DELETE", f"{base}/models/{self.model_name}/{old}", headers=headers
                )
            t3 = time.monotonic()
        self._current_version = version
        return {
            "from_version": old,
            "to_version": version,
            "register_s": t1 - t0,
            "set_default_s": t2 - t1,
            "unregister_s": t3 - t2,
            "total_s": t3 - t0,
        }

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

    def describe(self) -> dict[str, Any]:
        """The URLs (no tokens) and which optional operations are possible."""
        return {
            "driver": self.name,
            "endpoints": self._endpoints.as_dict(),
            "model_name": self.model_name,
            "reload_supported": self._endpoints.torchserve_management_url is not None,
            "rollout_supported": bool(self._admin_token_env),
            "model_archives": {},
        }

    def collect_logs(self, dest: Path) -> None:
        """Leave a note: the logs of an external system stay with that system."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "EXTERNAL_STACK.txt").write_text(
            "The stack was external: its process logs were not collected by the harness.\n"
            f"Backend: {self._endpoints.http_url}\n"
        )
