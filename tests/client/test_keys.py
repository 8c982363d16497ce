"""The one key-file parser (issue 21 part E): backend_patch/app/ml/keys.py reads TorchServe's
key_file.json for the backend's KeySource and for serving/management.py alike."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend_patch.app.ml.keys import KeySource, parse_key_file
from serving.management import key_expiry

ROOT = Path(__file__).resolve().parents[2]
NANOS = "2026-11-30T06:56:56.048682742Z"


def test_key_expiry_is_parsed_in_one_place() -> None:
    readers = [
        str(p.relative_to(ROOT))
        for package in ("serving", "backend_patch", "harness", "docker")
        for p in sorted((ROOT / package).rglob("*.py"))
        if '"expiration time"' in p.read_text()
    ]
    assert readers == ["backend_patch/app/ml/keys.py"]


def test_backend_and_serving_read_the_same_expiry(tmp_path: Path) -> None:
    doc = {
        "management": {"key": "m", "expiration time": NANOS},
        "inference": {"key": "i", "expiration time": "2026-11-30T07:00:00Z"},
        "API": {"key": "a"},
    }
    path = tmp_path / "key_file.json"
    path.write_text(__import__("json").dumps(doc))
    backend = KeySource(path, None, kind="management")
    assert backend.current() == "m"
    served = key_expiry(doc)
    assert served is not None and backend.expires_at is not None
    assert served.timestamp() == pytest.approx(backend.expires_at, abs=1e-6)
    assert key_expiry(doc, "inference") == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["", "{", "[]", '{"management": {"key": ""}}', '{"management": {"key": 3}}'],
)
def test_half_written_or_keyless_files_give_no_key(text: str) -> None:
    parsed = parse_key_file(text)
    assert parsed is None or parsed.management is None


def test_an_unreadable_expiry_keeps_the_key_and_says_so() -> None:
    parsed = parse_key_file('{"inference": {"key": "k", "expiration time": "soon"}}')
    assert parsed is not None and parsed.inference is not None
    assert parsed.inference.key == "k"
    assert parsed.inference.expires_at is None and parsed.inference.expiry_unreadable
