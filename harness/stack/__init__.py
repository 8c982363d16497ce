"""Stacks: the system under test, behind one interface (see docs/HARNESS.md).

``make_stack(spec, run_dir)`` picks the driver named by ``spec.driver``:

- ``local``: TorchServe (serving.local) and the backend as processes on loopback (default);
- ``external``: already-running URLs, load and collection only;
- ``compose``: Docker Compose (``harness.stack.compose.ComposeStack``).

Each driver module is imported when chosen, so a run that does not use Docker never imports
the Docker client.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    ReloadResult,
    Stack,
    StackDescription,
    StackEndpoints,
    StackError,
    StackOperationUnsupported,
    StackSpecLike,
    spec_get,
)

__all__ = [
    "ReloadResult",
    "Stack",
    "StackDescription",
    "StackEndpoints",
    "StackError",
    "StackOperationUnsupported",
    "make_stack",
]

DRIVERS = ("local", "compose", "external")


def make_stack(spec: StackSpecLike, run_dir: Path) -> Stack:
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
        from .compose import ComposeStack

        return ComposeStack(spec, run_dir)
    raise StackError(f"stack.driver: unknown driver {driver!r}; expected one of {DRIVERS}")
