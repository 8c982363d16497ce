"""The one masking rule for secrets in everything the harness writes or prints.

Rule: the value of a key whose NAME looks secret (``token``, ``key``, ``secret``, ``password``,
``passwd``, ``credential``, ``auth``; case-insensitive, anywhere in the name) is replaced by
``***``. Exceptions, because they carry no secret: booleans and nulls (``token_auth: true`` says
auth is on, not what the token is), nested mappings (masked key by key instead), and keys ending
in ``_env``, which hold the NAME of an environment variable (``torchserve_token_env``), never
its value. Every secret value found that way is also cut out of free text (the scenario's YAML,
error messages, log files), so a secret given once under a secret name is masked wherever it is
echoed.

Values shorter than MIN_SCRUB_LEN (6) are masked under their key but not cut out of text.

Used by: results.json and junit.xml writers, the report (it renders the masked document), the
``scenario_yaml`` dump, validation messages, stack provenance (``mask_secrets``), the log files
the harness keeps, and the CLI's printed output. This module imports nothing from the harness so
every layer can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(r"token|key|secret|password|passwd|credential|auth", re.IGNORECASE)
# Shorter values are not cut out of free text: "on" or "1234" would mangle unrelated words and
# could hit the base64 of an encoded histogram (a 6-character value: ~1e-11 per position).
# They are still masked under their secret-named key.
MIN_SCRUB_LEN = 6
# How much of a file is looked at to tell binary from text.
_CHUNK = 1 << 20


def is_secret_name(name: object) -> bool:
    """True when a key/variable name says its value is a secret (``_env`` names excluded)."""
    text = str(name)
    return bool(SECRET_NAME.search(text)) and not text.lower().endswith("_env")


def _masks(name: object, value: Any) -> bool:
    return is_secret_name(name) and not isinstance(value, bool | None | Mapping)


def secret_values(obj: Any) -> set[str]:
    """Every non-empty string (or number, as text) held under a secret-looking key in ``obj``."""
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
    return found


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (of >= MIN_SCRUB_LEN chars) made ``***``."""
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
    """An environment mapping with secret-named values masked (names kept)."""
    return {k: (MASK if _masks(k, v) else v) for k, v in env.items()}


def redact_files(root: Path, secrets: Iterable[str]) -> list[Path]:
    """Cut ``secrets`` out of every text file under ``root`` in place; returns the files changed.

    Binary files (a NUL byte in the first MiB) are left alone. Files are read whole: the logs a
    run keeps are a few MB at most.
    """
    wanted = sorted({s for s in secrets if len(s) >= MIN_SCRUB_LEN}, key=len, reverse=True)
    changed: list[Path] = []
    if not wanted or not Path(root).exists():
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
