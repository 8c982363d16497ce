"""TorchServe's management API for the ``signflow`` model: one client for every launcher.

The local launcher and the harness's compose driver both register, promote and unregister
archive versions; they share this code so a TorchServe quirk is handled once (see
``unregister``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

MODEL_NAME = "signflow"
UNREGISTER_SETTLE_S = 30.0


class TorchServeError(RuntimeError):
    """TorchServe failed to start, died, or refused a management call (``status``: HTTP code)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ManagementClient:
    """Calls on ``base_url`` (the management API) with the headers ``headers()`` returns.

    ``refresh_keys`` is called once when TorchServe rejects the key (keys expire and the key
    file is rewritten), and the call is retried with the new headers.
    """

    def __init__(
        self,
        base_url: str,
        headers: Callable[[], dict[str, str]] = dict,
        refresh_keys: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = headers
        self._refresh_keys = refresh_keys

    def request(self, method: str, path: str, timeout_s: float = 30.0) -> Any:
        """One call; the decoded JSON answer (None when empty); TorchServeError otherwise."""
        for attempt in range(2):
            req = urllib.request.Request(
                self.base_url + path, method=method, headers=self._headers()
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                    body = resp.read()
                return json.loads(body) if body else None
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")
                stale_key = exc.code in (400, 401) and "key" in text.lower()
                if stale_key and attempt == 0 and self._refresh_keys is not None:
                    self._refresh_keys()
                    continue
                raise TorchServeError(
                    f"{method} {path} -> HTTP {exc.code}: {text[:500]}", exc.code
                ) from exc
        raise AssertionError("unreachable")

    def describe(self, version: str = "all") -> list[dict[str, Any]]:
        """The description of one version, or of all of them."""
        return self.request("GET", f"/models/{MODEL_NAME}/{version}", timeout_s=10.0) or []

    def versions(self) -> set[str]:
        """The registered versions of the model."""
        return {str(m.get("modelVersion")) for m in self.describe()}

    def scale(self, version: str, workers: int) -> None:
        """Run exactly ``workers`` workers for ``version`` (the archive's config sets its own)."""
        desc = (self.describe(version) or [{}])[0]
        if desc.get("minWorkers") != workers or len(desc.get("workers", [])) != workers:
            query = f"min_worker={workers}&max_worker={workers}&synchronous=true"
            self.request("PUT", f"/models/{MODEL_NAME}/{version}?{query}", timeout_s=180.0)

    def register(
        self,
        archive: str,
        version: str,
        *,
        batch_size: int,
        max_batch_delay_ms: int,
        workers: int,
        response_timeout_s: int,
        scale: bool = True,
    ) -> Any:
        """Register ``archive`` (a file name in the model store) with these batch settings.

        TorchServe takes the archive's minWorkers over ``initial_workers``, hence the scale
        afterwards; ``scale=False`` keeps the archive's worker count (a synchronous scale-down
        inside the compose container answered 500 "Failed to start workers").
        """
        query = urllib.parse.urlencode(
            {
                "url": archive,
                "model_name": MODEL_NAME,
                "batch_size": batch_size,
                "max_batch_delay": max_batch_delay_ms,
                "initial_workers": workers,
                "response_timeout": response_timeout_s,
                "synchronous": "true",
            }
        )
        answer = self.request("POST", f"/models?{query}", timeout_s=180.0)
        if scale:
            self.scale(version, workers)
        return answer

    def set_default(self, version: str) -> Any:
        """Make ``version`` the one ``/predictions/signflow`` serves."""
        return self.request("PUT", f"/models/{MODEL_NAME}/{version}/set-default", timeout_s=30.0)

    def unregister(self, version: str) -> Any:
        """Remove ``version`` (not the default one: TorchServe answers 403).

        TorchServe 0.12 can answer 500 "Interrupted while cleaning resources" while the
        version's workers are still stopping, and leave the version registered (seen in the
        compose stack). What matters is that it is gone: ask again until it is.
        """
        try:
            return self.request("DELETE", f"/models/{MODEL_NAME}/{version}", timeout_s=60.0)
        except TorchServeError as exc:
            if exc.status != 500:
                raise
        deadline = time.monotonic() + UNREGISTER_SETTLE_S
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if version not in self.versions():
                return None
            try:
                self.request("DELETE", f"/models/{MODEL_NAME}/{version}", timeout_s=60.0)
            except TorchServeError as exc:
                if exc.status not in (404, 500):
                    raise
        raise TorchServeError(f"version {version} still registered after {UNREGISTER_SETTLE_S} s")
