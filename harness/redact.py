"""The one masking rule for secrets in everything the harness writes or prints.

Rule for names: a key or variable name is secret when its LAST word (split at ``_``, ``.``,
``-`` and camelCase; case-insensitive) is, or ends with, one of :data:`SECRET_WORDS`
(``token``, ``key``, ``secret``, ``password``, ``passwd``, ``credential(s)``, ``signature``...):
``ADMIN_TOKEN``, ``api_key``, ``X-Amz-Signature``, ``accessToken`` are secret;
``token_expiration_min``, ``TORCHSERVE_KEY_FILE`` (a path), ``TORCHSERVE_KEY_RENEW_BEFORE_S``
(seconds) and ``torchserve_token_env`` (the NAME of a variable) are not, because their last word
says what the value is. :data:`NOT_SECRET_NAMES` lists the few names that end in such a word
but hold no secret (``token_auth``: auth on or off). The value of a secret name is replaced by
``***``, except booleans and nulls (they say a secret is used, not what it is) and nested
mappings (masked key by key instead).

Rule for text: inside every string the masker processes, a URL's userinfo password
(``wss://alice:***@host``) and the values of its query parameters with a secret name
(``?access_token=***``) are masked, the rest of the URL kept readable. Every secret value found
(under a secret name, or in a URL) is also cut out of free text (the scenario's YAML, error
messages, log files), so a secret given once is masked wherever it is echoed.

Values shorter than MIN_SCRUB_LEN (6) are masked under their key or in their URL but not cut out
of other text.

Used by: results.json and junit.xml writers, the report (it renders the masked document), the
``scenario_yaml`` dump, validation messages, stack provenance (``mask_secrets``), stack errors
naming URLs, the log files the harness keeps, and the CLI's printed output. This module imports
nothing from the harness so every layer can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# A name is secret when its last word is (or ends with: "apikey", "accesstoken") one of these.
SECRET_WORDS = (
    "token",
    "key",
    "keys",
    "secret",
    "secrets",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "credentials",
    "signature",
    "sig",
    "auth",
    "authorization",
    "cookie",
)
# Names whose last word is secret-like but whose value is not a secret (lower case).
NOT_SECRET_NAMES = frozenset({"token_auth", "ts_token_auth"})
# Word boundaries of a name: separators, and lower->upper case changes (camelCase).
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# A URL in free text: scheme://, then up to whitespace, a quote or an angle bracket.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# Shorter values are not cut out of free text: "on" or "1234" would mangle unrelated words and
# could hit the base64 of an encoded histogram (a 6-character value: ~1e-11 per position).
# They are still masked under their secret-named key.
MIN_SCRUB_LEN = 6
# How much of a file is looked at to tell binary from text.
_CHUNK = 1 << 20


def is_secret_name(name: object) -> bool:
    """True when a key/variable name says its value is a secret (rule: module doc)."""
    text = str(name)
    if text.lower() in NOT_SECRET_NAMES:
        return False
    words = [w for w in _WORD_SPLIT.split(text) if w]
    return bool(words) and words[-1].lower().endswith(SECRET_WORDS)


def _url_parts(url: str) -> tuple[str, list[str]]:
    """(``url`` with its password and secret query values masked, the secrets taken out)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed netloc (bad port, bracket): leave the text as it is
        return url, []
    found: list[str] = []
    netloc = parts.netloc
    if password:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}"
        found.append(password)
        found.append(userinfo.split(":", 1)[1])  # as written (percent-encoded) too
    query = parts.query
    if query:
        pieces = []
        for piece in query.split("&"):
            name, eq, value = piece.partition("=")
            if eq and value and is_secret_name(unquote(name)):
                found += [value, unquote(value)]
                piece = f"{name}={MASK}"
            pieces.append(piece)
        query = "&".join(pieces)
    if not found:
        return url, []
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), found


def url_secrets(text: str) -> set[str]:
    """Every URL password and secret-named query value in ``text`` (as written and decoded)."""
    return {s for m in _URL.finditer(text) for s in _url_parts(m[0])[1] if s.strip()}


def mask_urls(text: str) -> str:
    """``text`` with each URL's password and secret-named query values made ``***``."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: _url_parts(m[0])[0], text)


def _masks(name: object, value: Any) -> bool:
    return is_secret_name(name) and not isinstance(value, bool | None | Mapping)


def secret_values(obj: Any) -> set[str]:
    """Every non-empty string (or number, as text) held under a secret-looking key in ``obj``,
    and every password / secret query value of a URL in its strings."""
    found: set[str] = set()
    stack: list[Any] = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for k, v in node.items():
                if _masks(k, v) and not isinstance(v, list | tuple) and str(v).strip():
                    found.add(str(v))
                else:
                    stack.append(v)
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, str):
            found |= url_secrets(node)
    return found


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials masked (:func:`mask_urls`) and every occurrence of each
    secret (of >= MIN_SCRUB_LEN chars) made ``***``."""
    text = mask_urls(text)
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        if len(secret) >= MIN_SCRUB_LEN and secret in text:
            text = text.replace(secret, MASK)
    return text


def mask(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """Copy of a JSON-like tree with secret-named values masked and ``secrets`` cut from text.

    The secrets found in ``obj`` itself are always cut from its strings as well.
    """
    known = set(secrets) | secret_values(obj)
    return _mask(obj, known)


def _mask(obj: Any, known: set[str]) -> Any:
    if isinstance(obj, Mapping):
        return {k: (MASK if _masks(k, v) else _mask(v, known)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_mask(v, known) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, known)
    return obj


def mask_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """An environment mapping with secret-named values masked (names kept), URLs' credentials
    masked in the other values."""
    return {
        k: (MASK if _masks(k, v) else redact_text(v) if isinstance(v, str) else v)
        for k, v in env.items()
    }


def redact_files(root: Path, secrets: Iterable[str]) -> list[Path]:
    """Cut ``secrets`` and URL credentials out of every text file under ``root`` in place;
    returns the files changed.

    Binary files (a NUL byte in the first MiB) are left alone. Files are read whole: the logs a
    run keeps are a few MB at most.
    """
    wanted = sorted({s for s in secrets if len(s) >= MIN_SCRUB_LEN}, key=len, reverse=True)
    changed: list[Path] = []
    if not Path(root).exists():
        return changed
    paths = [Path(root)] if Path(root).is_file() else sorted(Path(root).rglob("*"))
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:_CHUNK]:
            continue
        text = data.decode("utf-8", errors="surrogateescape")
        clean = redact_text(text, wanted)
        if clean != text:
            path.write_bytes(clean.encode("utf-8", errors="surrogateescape"))
            changed.append(path)
    return changed


# One ``key: value`` line (spaces and tabs only: a match never runs into the next line).
_YAML_SCALAR = re.compile(r"^([ \t]*(?:-[ \t]+)?)([\w.-]+)([ \t]*:[ \t]+)(\S.*?)[ \t]*$", re.M)
_YAML_NOT_SECRET = ("true", "false", "null", "~", "{}", "[]")


def mask_yaml_text(text: str) -> str:
    """YAML text with each secret-named key's scalar value made ``***`` (the rule of ``mask``:
    names per :func:`is_secret_name`, booleans and nulls kept), and the values found cut from
    the rest of the text. For YAML that was written elsewhere (an older results file)."""
    found: set[str] = set()

    def one(m: re.Match[str]) -> str:
        value = m[4]
        if not is_secret_name(m[2]) or value.lower() in _YAML_NOT_SECRET:
            return m[0]
        found.add(value.strip("'\""))
        return f"{m[1]}{m[2]}{m[3]}{MASK}"

    return redact_text(_YAML_SCALAR.sub(one, text), found)
