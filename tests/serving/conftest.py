"""Fixtures for the TorchServe side: fresh archives of the current handler and ONE shared
TorchServe (real processes on loopback, token auth on) for the tests that only send requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import MODELS, VERSIONS

from serving.local import LocalTorchServe
from serving.package_model import build_archive
from serving.settings import TorchServeSettings


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Archives built from build/models with the handler as it is now (never a stale .mar)."""
    missing = [v for v in VERSIONS if not (MODELS / v / "metadata.json").is_file()]
    if missing:
        pytest.fail(
            f"model artifacts missing for {missing} under {MODELS}: run "
            "`make build/models/1.0/metadata.json build/models/2.0/metadata.json`"
        )
    store = tmp_path_factory.mktemp("model-store")
    for version in VERSIONS:
        build_archive(version, MODELS, store)
    return store


@pytest.fixture(scope="session")
def torchserve(model_store: Path) -> Iterator[LocalTorchServe]:
    """The shared instance: default batching (16 / 50 ms / 2 workers), token auth on."""
    with LocalTorchServe(model_store, TorchServeSettings(model_version="1.0")) as ts:
        yield ts
