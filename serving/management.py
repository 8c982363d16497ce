"""TorchServe's management API for the ``signflow`` model: one client for every launcher.

The local launcher, the harness's compose driver and the compose container's own start-up
registration all register, promote, drain and unregister archive versions through this module,
so each TorchServe quirk is handled once:

- keys expire (``token_expiration_min``, 60 min by default) and TorchServe rewrites
  ``key_file.json`` only when its token API is called: the client renews the management key
  through ``POST /token?type=management`` (authorized by the ``API`` key) shortly before it
  expires and whenever TorchServe answers that the key is invalid (see ``ManagementClient``);
- a newly registered version does not become the default, and unregistering a version kills
  its worker with no drain: ``reload`` registers, promotes, waits for the old version's queue
  and in-flight batch to empty (``drain``), and only then unregisters;
- TorchServe takes an archive's ``minWorkers`` over ``initial_workers``: the project's archives
  pin no worker count, and ``register`` still scales afterwards for archives that do;
- what TorchServe runs is read back (``running_config``), never assumed from what was asked.

What a version runs with is :class:`serving.settings.TorchServeSettings` (the one settings
type); ``key_file.json`` is read by the one key-file parser, ``backend_patch/app/ml/keys.py``.
Only those modules (pydantic; the standard library) and the standard library are imported: the
compose container copies the files as they are (docker/torchserve/Dockerfile).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from backend_patch.app.ml.keys import KeyEntry, parse_key_file
from serving.settings import TorchServeSettings

MODEL_NAME = "signflow"
UNREGISTER_SETTLE_S = 30.0
SCALE_TIMEOUT_S = 180.0
# Renew the management key when it has less than this left: a register call can take minutes
# on a loaded machine, and a key that expires between two calls of a reload fails the second.
RENEW_BEFORE_S = 15.0
# How long a reload waits for the old version to drain before unregistering it anyway.
DRAIN_TIMEOUT_S = 30.0
DRAIN_POLL_S = 0.05
# Without a probe answer, the queue must stay empty this long beyond the batch delay before the
# worker's last batch counts as answered (a batch of 16 runs in about 10 ms here; 0.5 s leaves
# room for a loaded machine).
IN_FLIGHT_GRACE_S = 0.5
_INVALID_KEY = re.compile(r"InvalidKeyException|Token Authorization failed", re.IGNORECASE)

KeyFileReader = Callable[[], Mapping[str, Any] | None]
DrainProbe = Callable[[str, float], bool]


class TorchServeError(RuntimeError):
    """TorchServe failed to start, died, or refused a management call (``status``: HTTP code)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RunningConfig:
    """What TorchServe REPORTS it runs for the default version (``GET /models/signflow``).

    ``workers``: workers it lists; ``ready_workers``: those whose status is READY.
    """

    version: str
    batch_size: int
    max_batch_delay_ms: int
    workers: int
    ready_workers: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for provenance."""
        return asdict(self)

    def mismatches(self, version: str, settings: TorchServeSettings) -> list[str]:
        """Each field that differs from what was asked, as ``field: asked X, running Y``.

        ``version`` is asked apart from ``settings.model_version`` (the version served first):
        after a reload the default version is another. ``response_timeout_s`` is not compared:
        the describe answer does not list it.
        """
        asked: dict[str, object] = {"model_version": version}
        running: dict[str, object] = {"model_version": self.version}
        for name in ("batch_size", "max_batch_delay_ms", "workers"):
            asked[name] = getattr(settings, name)
            running[name] = getattr(self, name)
        return [
            f"{name}: asked {asked[name]}, running {running[name]}"
            for name in asked
            if str(asked[name]) != str(running[name])
        ]


def key_expiry(doc: Mapping[str, Any], api: str = "management") -> datetime | None:
    """The expiration time TorchServe wrote for ``api``'s key (UTC), None when absent or
    unreadable. Parsed by the one key-file parser (``backend_patch/app/ml/keys.py``), which
    keeps TorchServe's nanoseconds to the float's precision."""
    entry = _key_entry(doc, api)
    return entry.expires if entry is not None else None


def _key_entry(doc: Mapping[str, Any] | None, api: str) -> KeyEntry | None:
    parsed = parse_key_file(doc)
    if parsed is None:
        return None
    if api == "API":
        return parsed.api
    return parsed.entry("inference" if api == "inference" else "management")


def _key(doc: Mapping[str, Any] | None, api: str) -> str | None:
    entry = _key_entry(doc, api)
    return entry.key if entry is not None else None


def read_key_file_text(text: str | bytes) -> dict[str, Any] | None:
    """Parse key_file.json; None while it is missing or half written."""
    try:
        doc = json.loads(text)
    except (ValueError, TypeError):
        return None
    return doc if isinstance(doc, dict) else None


class ManagementClient:
    """Calls on ``base_url`` (the management API), authorized from TorchServe's key file.

    ``read_keys`` returns the current content of ``key_file.json`` (None: token auth off, or the
    file is not written yet). The management key is renewed through the token API (with the
    ``API`` key) when it has less than ``renew_before_s`` left, and when TorchServe rejects it;
    the renewed key is read back from the file TorchServe rewrites. No key is ever part of a
    message or an exception. The inference key is never renewed here: the backend renews the
    one it uses, and renewing it from two places would invalidate the other's.
    """

    def __init__(
        self,
        base_url: str,
        read_keys: KeyFileReader | None = None,
        *,
        renew_before_s: float = RENEW_BEFORE_S,
        model_name: str = MODEL_NAME,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self._read_keys = read_keys
        self._renew_before_s = renew_before_s
        self.renewals = 0  # how many times this client renewed the management key

    # ----- keys ------------------------------------------------------------------------------
    def _keys(self) -> Mapping[str, Any] | None:
        return self._read_keys() if self._read_keys is not None else None

    def _management_key(self) -> str | None:
        doc = self._keys()
        if not doc:
            return None
        expiry = key_expiry(doc)
        if expiry is not None:
            left = (expiry - datetime.now(UTC)).total_seconds()
            if left < self._renew_before_s:
                # Best effort: the key may still work; a refusal is renewed in request().
                with contextlib.suppress(TorchServeError):
                    self.renew_key()
                    doc = self._keys() or doc
        return _key(doc, "management")

    def renew_key(self, api: str = "management") -> None:
        """Have TorchServe mint a new ``api`` key (``POST /token?type=...``) and rewrite the
        key file; TorchServeError (without the answer's body, which holds the key) on failure."""
        doc = self._keys()
        api_key = _key(doc, "API")
        if api_key is None:
            raise TorchServeError("cannot renew the TorchServe key: no API key in key_file.json")
        before = _key(doc, api)
        req = urllib.request.Request(
            f"{self.base_url}/token?type={api}",
            method="POST",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10.0) as resp:
                resp.read()  # the new key: never kept, the file is the one source
        except urllib.error.HTTPError as exc:
            raise TorchServeError(f"token renewal ({api}) -> HTTP {exc.code}", exc.code) from exc
        except OSError as exc:
            raise TorchServeError(f"token renewal ({api}) failed: {type(exc).__name__}") from exc
        self.renewals += 1
        # TorchServe rewrites the file before it answers; a reader on another filesystem view
        # (a container volume) may lag a moment.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if _key(self._keys(), api) != before:
                return
            time.sleep(0.05)

    # ----- calls -----------------------------------------------------------------------------
    def request(self, method: str, path: str, timeout_s: float = 30.0) -> Any:
        """One call; the decoded JSON answer (None when empty); TorchServeError otherwise.

        An "invalid key" answer (TorchServe says 400 InvalidKeyException for an expired key) is
        retried after re-reading the key file (another client may have renewed it) and, when
        the key there is still the one refused, after renewing it.
        """
        refused: str | None = None
        for attempt in range(3):
            key = self._management_key()
            if attempt > 0 and key is not None and key == refused:
                self.renew_key()
                key = self._management_key()
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            req = urllib.request.Request(self.base_url + path, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                    body = resp.read()
                return json.loads(body) if body else None
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")
                invalid_key = exc.code in (400, 401) and bool(_INVALID_KEY.search(text))
                if invalid_key and attempt < 2 and self._read_keys is not None:
                    refused = key
                    continue
                raise TorchServeError(
                    f"{method} {path} -> HTTP {exc.code}: {text[:500]}", exc.code
                ) from exc
        raise AssertionError("unreachable")

    def describe(self, version: str = "all") -> list[dict[str, Any]]:
        """The description of one version, of all of them (``all``), or of the default (``""``)."""
        path = f"/models/{self.model_name}" + (f"/{version}" if version else "")
        return self.request("GET", path, timeout_s=10.0) or []

    def versions(self) -> set[str]:
        """The registered versions of the model (empty when it is not registered at all)."""
        try:
            return {str(m.get("modelVersion")) for m in self.describe()}
        except TorchServeError as exc:
            if exc.status == 404:
                return set()
            raise

    def running_config(self) -> RunningConfig:
        """What TorchServe says the default version runs with (the source of truth)."""
        desc = self.describe("")
        if not desc:
            raise TorchServeError(f"GET /models/{self.model_name}: no version registered")
        d = desc[0]
        workers = d.get("workers") or []
        return RunningConfig(
            version=str(d.get("modelVersion")),
            batch_size=int(d.get("batchSize", 0)),
            max_batch_delay_ms=int(d.get("maxBatchDelay", 0)),
            workers=len(workers),
            ready_workers=sum(1 for w in workers if w.get("status") == "READY"),
        )

    def wait_for_config(
        self, version: str, settings: TorchServeSettings, timeout_s: float = 60.0
    ) -> RunningConfig:
        """Poll until the default version runs ``version`` with ``settings`` and every worker
        is READY (a scale may still be under way); TorchServeError naming each field that
        still differs at the deadline ("batch_size: asked 4, running 16")."""
        deadline = time.monotonic() + timeout_s
        while True:
            running = self.running_config()
            wrong = running.mismatches(version, settings)
            if not wrong and running.ready_workers == running.workers:
                return running
            if time.monotonic() > deadline:
                if not wrong:
                    wrong = [
                        f"ready_workers: asked {settings.workers}, running {running.ready_workers}"
                    ]
                raise TorchServeError(
                    "TorchServe does not run the configuration asked for: " + "; ".join(wrong)
                )
            time.sleep(0.25)

    def pending(self, version: str) -> int:
        """Requests queued for ``version`` and not yet taken by a worker."""
        desc = self.describe(version)
        status = (desc[0] if desc else {}).get("jobQueueStatus") or {}
        return int(status.get("pendingRequests", 0))

    def scale(self, version: str, workers: int, timeout_s: float = SCALE_TIMEOUT_S) -> None:
        """Run exactly ``workers`` READY workers for ``version``.

        Asynchronous scale, then polling: a synchronous scale-down answered 500 "Failed to
        start workers" inside the compose container although it went through.
        """
        desc = (self.describe(version) or [{}])[0]
        listed = len(desc.get("workers", []))
        if desc.get("minWorkers") == workers and listed == _ready(desc) == workers:
            return
        query = f"min_worker={workers}&max_worker={workers}&synchronous=false"
        self.request("PUT", f"/models/{self.model_name}/{version}?{query}", timeout_s=30.0)
        deadline = time.monotonic() + timeout_s
        while True:
            desc = (self.describe(version) or [{}])[0]
            listed = desc.get("workers", [])
            if len(listed) == workers and _ready(desc) == workers:
                return
            if time.monotonic() > deadline:
                raise TorchServeError(
                    f"version {version}: {_ready(desc)}/{len(listed)} workers READY after "
                    f"{timeout_s:.0f} s, asked {workers}"
                )
            time.sleep(0.2)

    def register(self, archive: str, version: str, settings: TorchServeSettings) -> Any:
        """Register ``archive`` (a file name in the model store) with ``settings``' batching
        (``TorchServeSettings.registration``) and exactly ``settings.workers`` workers."""
        query = urllib.parse.urlencode(
            {
                "url": archive,
                "model_name": self.model_name,
                **settings.registration(),
                "synchronous": "true",
            }
        )
        answer = self.request("POST", f"/models?{query}", timeout_s=SCALE_TIMEOUT_S)
        # TorchServe takes an archive's minWorkers over initial_workers (ours pin none).
        self.scale(version, settings.workers)
        return answer

    def set_default(self, version: str) -> Any:
        """Make ``version`` the one ``/predictions/signflow`` serves."""
        return self.request(
            "PUT", f"/models/{self.model_name}/{version}/set-default", timeout_s=30.0
        )

    def drain(
        self,
        version: str,
        max_batch_delay_ms: int,
        *,
        probe: DrainProbe | None = None,
        timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Wait until ``version`` (no longer the default) has nothing queued or in flight.

        The queue is read from ``jobQueueStatus.pendingRequests``. The batch a worker has
        already taken is not listed anywhere, so once the queue is empty ``probe(version,
        timeout_s)`` sends one request to that version: it joins or follows that batch, so its
        answer (True) means the batch was answered. Without a probe, or when it fails, the
        queue must stay empty for the batch delay plus ``IN_FLIGHT_GRACE_S``.

        Returns ``drain_s``, ``drained`` (False: the timeout passed first), ``pending_at_switch``
        (queued when the drain began) and ``drain_by`` (``probe`` or ``quiet``).
        """
        start = time.monotonic()
        deadline = start + timeout_s
        quiet_needed = max_batch_delay_ms / 1000.0 + IN_FLIGHT_GRACE_S
        pending_at_switch: int | None = None
        empty_since: float | None = None
        probed = False
        while True:
            now = time.monotonic()
            pending = self.pending(version)
            if pending_at_switch is None:
                pending_at_switch = pending
            if pending:
                empty_since = None
            else:
                empty_since = empty_since if empty_since is not None else now
                if probe is not None and not probed:
                    probed = True
                    if probe(version, max(0.5, deadline - now)) and self.pending(version) == 0:
                        return _drained(start, True, pending_at_switch, "probe")
                    empty_since = time.monotonic() - quiet_needed  # probe failed: idle enough?
                if time.monotonic() - empty_since >= quiet_needed:
                    return _drained(start, True, pending_at_switch, "quiet")
            if time.monotonic() > deadline:
                return _drained(start, False, pending_at_switch, "timeout")
            time.sleep(DRAIN_POLL_S)

    def unregister(self, version: str) -> Any:
        """Remove ``version`` (not the default one: TorchServe answers 403).

        TorchServe 0.12 can answer 500 "Interrupted while cleaning resources" while the
        version's workers are still stopping, and leave the version registered (seen in the
        compose stack). What matters is that it is gone: ask again until it is.
        """
        try:
            return self.request("DELETE", f"/models/{self.model_name}/{version}", timeout_s=60.0)
        except TorchServeError as exc:
            if exc.status != 500:
                raise
        deadline = time.monotonic() + UNREGISTER_SETTLE_S
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if version not in self.versions():
                return None
            try:
                self.request("DELETE", f"/models/{self.model_name}/{version}", timeout_s=60.0)
            except TorchServeError as exc:
                if exc.status not in (404, 500):
                    raise
        raise TorchServeError(f"version {version} still registered after {UNREGISTER_SETTLE_S} s")

    def reload(
        self,
        archive: str,
        old: str,
        new: str,
        settings: TorchServeSettings,
        *,
        probe: DrainProbe | None = None,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Hot reload without losing a request: register ``new``, make it the default, drain
        ``old`` (see ``drain``), unregister it. Timings in seconds; TorchServeError on failure.

        Keys: ``from_version``, ``to_version``, ``register_s``, ``set_default_s``, ``drain_s``,
        ``drained``, ``drain_by``, ``pending_at_switch``, ``unregister_s``, ``total_s``.
        """
        result: dict[str, Any] = {"from_version": old, "to_version": new}
        t0 = time.monotonic()
        if new not in self.versions():
            self.register(archive, new, settings)
        t1 = time.monotonic()
        self.set_default(new)
        t2 = time.monotonic()
        result.update(register_s=t1 - t0, set_default_s=t2 - t1)
        if old != new:
            result.update(
                self.drain(old, settings.max_batch_delay_ms, probe=probe, timeout_s=drain_timeout_s)
            )
            t3 = time.monotonic()
            self.unregister(old)
            result["unregister_s"] = time.monotonic() - t3
        else:
            result.update(
                drain_s=0.0, drained=True, drain_by="none", pending_at_switch=0, unregister_s=0.0
            )
        result["total_s"] = time.monotonic() - t0
        return result


def _ready(desc: Mapping[str, Any]) -> int:
    return sum(1 for w in desc.get("workers", []) if w.get("status") == "READY")


def _drained(start: float, ok: bool, pending: int | None, how: str) -> dict[str, Any]:
    return {
        "drain_s": time.monotonic() - start,
        "drained": ok,
        "drain_by": how,
        "pending_at_switch": pending or 0,
    }


def predict_probe(inference_url: str, read_keys: KeyFileReader | None, body: bytes) -> DrainProbe:
    """A drain probe: POST ``body`` (a valid window) to ``/predictions/signflow/<version>``.

    True only for a 200: an auth refusal is answered by the frontend at once and proves nothing
    about the worker's batch. The inference key is re-read from the key file at each call.
    """

    def probe(version: str, timeout_s: float) -> bool:
        key = _key(read_keys() if read_keys is not None else None, "inference")
        headers = {"Content-Type": "application/octet-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(
            f"{inference_url.rstrip('/')}/predictions/{MODEL_NAME}/{version}",
            data=body,
            method="POST",
            headers=headers,
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                resp.read()
                return bool(resp.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    return probe
