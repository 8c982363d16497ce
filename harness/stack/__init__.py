"""Stacks: the system under test, behind one interface (see docs/HARNESS.md).

``make_stack(spec, run_dir)`` picks the driver named by ``spec.driver``:

- ``local``: TorchServe (serving.local) and the backend as processes on loopback (default);
- ``external``: already-running URLs, load and collection only;
- ``compose``: Docker Compose, from ``harness.stack.compose`` once that module exists. It must
  define ``ComposeStack(spec, run_dir)`` implementing :class:`Stack`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .base import (
    Stack,
    StackEndpoints,
    StackError,
    StackOperationUnsupported,
    spec_get,
)

__all__ = [
    "Stack",
    "StackEndpoints",
    "StackError",
    "StackOperationUnsupported",
    "make_stack",
]

DRIVERS = ("local", "compose", "external")


def make_stack(spec: Any, run_dir: Path) -> Stack:
    """Build (not start) the stack for ``spec`` (the scenario's ``stack`` section).

    Enter the returned object to start it. Raises StackError for an unknown or unavailable
    driver.
    """
    driver = str(spec_get(spec, "driver", "local"))
    run_dir = Path(run_dir)
    if driver == "local":
        from .local import LocalStack

        return LocalStack(spec, run_dir)
    if driver == "external":
        from .external import ExternalStack

        return ExternalStack(spec, run_dir)
    if driver == "compose":
        try:
            module = importlib.import_module(f"{__name__}.compose")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.compose":
                raise  # the module exists but one of its imports is missing: show that
            raise StackError("compose driver not available yet") from exc
        return module.ComposeStack(spec, run_dir)
    raise StackError(f"stack.driver: unknown driver {driver!r}; expected one of {DRIVERS}")
