"""Fixtures of the backend tests: trained model artifacts and real backend subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
# tests/ is not a package: make the shared tests/backend_server.py importable from here.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

REPO_ROOT = TESTS_DIR.parent
MODEL_DIR = REPO_ROOT / "build" / "models" / "1.0"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The trained 1.0 artifacts built by `make setup` (fail, not skip: make test builds them)."""
    if not (MODEL_DIR / "metadata.json").is_file():
        pytest.fail(f"{MODEL_DIR} has no trained model: run `make setup` first")
    return MODEL_DIR
