"""TorchServe's ``key_file.json``: the one parser, and the backend's source of Bearer tokens.

TorchServe (0.12, token authorization on) writes, in its working directory::

    {"management": {"key": "...", "expiration time": "2026-11-30T06:56:56.048682742Z"},
     "inference":  {"key": "...", "expiration time": "..."},
     "API":        {"key": "..."}}

The ``management`` and ``inference`` keys expire ``token_expiration_min`` after they were
issued; TorchServe only issues new ones (and rewrites the file) when its token API is called,
``POST {management}/token?type=<kind>`` with the ``API`` key, which never expires.

:func:`parse_key_file` is the one reading of that file, for the backend (:class:`KeySource`)
and for ``serving/management.py`` (the launchers' management client). This module imports the
standard library only at module level: the TorchServe image copies it next to
``serving/management.py`` (docker/torchserve/Dockerfile) and has no aiohttp; ``KeySource.renew``
takes the backend's aiohttp session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import aiohttp

__all__ = ["KeyEntry", "KeyFile", "KeyKind", "KeySource", "parse_instant", "parse_key_file"]

log = logging.getLogger("backend_patch.app.ml.torchserve_client")

KeyKind = Literal["inference", "management"]

# Java's Instant.toString(): 2026-11-30T07:10:00Z or with 1-9 fractional digits.
_INSTANT = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def parse_instant(text: object) -> float:
    """A Java ``Instant`` string (UTC, up to nanoseconds) -> POSIX seconds; ValueError if not."""
    m = _INSTANT.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"not an ISO-8601 UTC instant: {text!r}")
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = float("0." + m.group(2)) if m.group(2) else 0.0
    return whole.timestamp() + fraction


@dataclass(frozen=True)
class KeyEntry:
    """One key of the file: ``key`` (never logged) and ``expires_at`` (POSIX seconds; None when
    the file gives no expiry, or one that cannot be read: ``expiry_unreadable``)."""

    key: str
    expires_at: float | None = None
    expiry_unreadable: bool = False

    @property
    def expires(self) -> datetime | None:
        """``expires_at`` as an aware UTC datetime (None when unknown)."""
        if self.expires_at is None:
            return None
        return datetime.fromtimestamp(self.expires_at, tz=UTC)


@dataclass(frozen=True)
class KeyFile:
    """A parsed ``key_file.json``: each entry that holds a non-empty string key."""

    management: KeyEntry | None = None
    inference: KeyEntry | None = None
    api: KeyEntry | None = None

    def entry(self, kind: KeyKind) -> KeyEntry | None:
        """The ``inference`` or ``management`` entry."""
        return self.inference if kind == "inference" else self.management


def _entry(doc: Mapping[str, Any], name: str) -> KeyEntry | None:
    raw = doc.get(name)
    if not isinstance(raw, Mapping):
        return None
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        return None
    expiry = raw.get("expiration time")
    if expiry is None:
        return KeyEntry(key)
    try:
        return KeyEntry(key, parse_instant(expiry))
    except ValueError:
        return KeyEntry(key, None, expiry_unreadable=True)


def parse_key_file(text: str | bytes | Mapping[str, Any] | None) -> KeyFile | None:
    """Parse ``key_file.json`` (its text, or the JSON object already read).

    Returns None while the file is missing, half written or not a JSON object (TorchServe may be
    writing it: try again later). A key that is missing or not a non-empty string is None in the
    result; an unreadable expiration time gives ``expires_at`` None with ``expiry_unreadable``.
    """
    if text is None:
        return None
    if isinstance(text, Mapping):
        doc: object = text
    else:
        try:
            doc = json.loads(text)
        except (ValueError, TypeError):
            return None
    if not isinstance(doc, Mapping):
        return None
    return KeyFile(
        management=_entry(doc, "management"),
        inference=_entry(doc, "inference"),
        api=_entry(doc, "API"),
    )


class KeySource:
    """The Bearer token: a fixed one, or the ``kind`` key of TorchServe's key file.

    ``kind`` is ``inference`` (the predictions API) or ``management`` (the management API, whose
    key expires and is renewed the same way, with ``type=management``).

    The file is re-read when its mtime or size changes, or on ``refresh()`` (after an "invalid
    key" answer). A missing or half-written file keeps the last good key.

    With ``management_url`` set, ``renew()`` asks TorchServe for a new key (module doc), and
    ``needs_renewal()`` says when: less than ``renew_before_s`` left before the file's
    ``expiration time``. Keys are never logged; ``clock`` (POSIX seconds, default ``time.time``)
    is injectable for tests.
    """

    def __init__(
        self,
        key_file: Path | None,
        token: str | None,
        *,
        management_url: str | None = None,
        renew_before_s: float = 20.0,
        clock: Callable[[], float] = time.time,
        kind: KeyKind = "inference",
    ) -> None:
        self.kind: KeyKind = kind
        self._token = token or None
        self._key_file = Path(key_file) if key_file is not None else None
        self._management_url = management_url.rstrip("/") if management_url else None
        self._renew_before_s = renew_before_s
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._key: str | None = None
        self._api_key: str | None = None
        self._expires_at: float | None = None
        self._renewing: asyncio.Lock | None = None
        self.renewals = 0

    @property
    def can_renew(self) -> bool:
        """Whether keys come from a file and a management URL to renew them is known."""
        return self._token is None and self._key_file is not None and bool(self._management_url)

    @property
    def expires_at(self) -> float | None:
        """POSIX time at which the current key expires (None: unknown/never)."""
        self.current()
        return self._expires_at

    def current(self) -> str | None:
        """The token to send now (None: send no Authorization header)."""
        if self._token is not None or self._key_file is None:
            return self._token
        try:
            st = os.stat(self._key_file)
        except OSError:
            return self._key
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._load(stamp)
        return self._key

    def needs_renewal(self) -> bool:
        """True when the key can be renewed and expires within ``renew_before_s``."""
        if not self.can_renew:
            return False
        expires_at = self.expires_at
        return expires_at is not None and expires_at - self._clock() <= self._renew_before_s

    def refresh(self) -> bool:
        """Re-read the key file now; True when the key changed."""
        if self._token is not None or self._key_file is None:
            return False
        before = self._key
        try:
            st = os.stat(self._key_file)
        except OSError:
            return False
        self._load((st.st_mtime_ns, st.st_size))
        return self._key != before

    async def renew(self, session: aiohttp.ClientSession, *, force: bool = False) -> bool:
        """Ask TorchServe for a new key of this kind; True when the key in use changed.

        Only one renewal runs at a time; a caller that waited for another one's renewal gets
        that result without a second call. Unless ``force`` (after an "invalid key" answer),
        nothing is done when the key no longer needs renewing (another process renewed it:
        TorchServe rewrote the file). Failures are logged (status only) and return False.
        """
        import aiohttp  # here: the TorchServe image imports this module without aiohttp

        if not self.can_renew:
            return False
        if self._renewing is None:
            self._renewing = asyncio.Lock()
        before = self._key
        async with self._renewing:
            if self._key != before:
                return True  # renewed by the call we waited for
            if self.refresh():
                return True  # another process renewed it: the file already holds a new key
            if not force and not self.needs_renewal():
                return False
            api_key = self._api_key
            if not api_key:
                log.warning("torchserve key file %s has no API key: cannot renew", self._key_file)
                return False
            url = f"{self._management_url}/token?type={self.kind}"
            try:
                async with asyncio.timeout(5.0):
                    async with session.post(
                        url, headers={"Authorization": f"Bearer {api_key}"}
                    ) as resp:
                        status = resp.status
                        await resp.read()  # the body holds keys: read and drop it
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("torchserve %s key renewal failed: %s", self.kind, type(exc).__name__)
                return False
            if status != 200:
                log.warning("torchserve %s key renewal answered HTTP %d", self.kind, status)
                return False
            changed = self.refresh()
            self.renewals += 1
            log.info("torchserve %s key renewed through %s/token", self.kind, self._management_url)
            return changed

    def _load(self, stamp: tuple[int, int]) -> None:
        assert self._key_file is not None
        try:
            text = self._key_file.read_bytes()
        except OSError as exc:
            log.warning("torchserve key file %s unusable (%s)", self._key_file, type(exc).__name__)
            return
        parsed = parse_key_file(text)
        entry = parsed.entry(self.kind) if parsed is not None else None
        if parsed is None or entry is None:
            # Not remembered as read: TorchServe may still be writing it, try again next call.
            log.warning(
                "torchserve key file %s unusable (no %s key yet)", self._key_file, self.kind
            )
            return
        if self._key is not None and entry.key != self._key:
            log.info("torchserve %s key rotated (re-read %s)", self.kind, self._key_file)
        self._key = entry.key
        self._stamp = stamp
        self._api_key = parsed.api.key if parsed.api is not None else None
        if entry.expiry_unreadable:
            log.warning("torchserve key file %s: unreadable expiration time", self._key_file)
        self._expires_at = entry.expires_at
