"""What a stack says of itself for a run's provenance: the types ``Stack.describe`` returns.

They live with the results, below the stacks, so that the provenance (``results.provenance``)
reads a description without knowing what a stack is: every driver (``harness.stack``) returns a
:class:`StackDescription`, and the provenance takes anything :class:`Describable`. Standard
library only (a leaf every layer may import).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, Required, TypedDict

__all__ = [
    "Describable",
    "LocalModelInfo",
    "RunningConfigDoc",
    "StackDescription",
    "sha256_file",
]


class RunningConfigDoc(TypedDict):
    """What a TorchServe REPORTS it runs for the default version (``GET /models/<model>``;
    ``serving.management.RunningConfig.as_dict``): ``ready_workers`` are those READY."""

    version: str
    batch_size: int
    max_batch_delay_ms: int
    workers: int
    ready_workers: int


class LocalModelInfo(TypedDict):
    """The backend's local model (its ``metadata.json``): folder, version and weights' sha256."""

    dir: str
    version: str | None
    sha256: str | None


class StackDescription(TypedDict, total=False):
    """What ``Stack.describe`` returns: the stack's configuration for the results'
    provenance (``configs``), never a secret. ``model_archives`` (archive file name -> sha256)
    is moved to ``provenance.model_archives``; the other keys depend on the driver."""

    driver: Required[str]
    model_archives: Required[dict[str, str]]
    endpoints: dict[str, str | None]
    use_torchserve: bool
    rollout_percent: int
    # local and compose: what was asked, and what TorchServe reported it runs ("running").
    torchserve: dict[str, Any] | None
    startup_s: dict[str, float]
    # local
    backend: dict[str, Any]
    local_model: LocalModelInfo | None
    # compose
    compose_cli: str
    project: str
    files: list[str]
    resolved_config: str
    gpu: bool | None  # None: decided at start (the NVIDIA runtime present or not)
    torchserve_replicas: int
    images: dict[str, str]
    env: dict[str, Any]
    # external
    model_name: str
    reload_supported: bool
    rollout_supported: bool
    torchserve_running: RunningConfigDoc | dict[str, str] | None


class Describable(Protocol):
    """What the provenance needs of a stack (every ``harness.stack.Stack`` is one)."""

    def describe(self) -> StackDescription: ...


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
