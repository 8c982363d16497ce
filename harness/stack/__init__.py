"""Stacks: the system under test, behind one interface (see docs/HARNESS.md).

``make_stack(spec, run_dir)`` picks the driver named by ``spec.driver``:

- ``local``: TorchServe (serving.local) and the backend as processes on loopback (default);
- ``external``: already-running URLs, load and collection only;
- ``compose``: Docker Compose (``harness.stack.compose.ComposeStack``).

Each driver module is imported when chosen, so a run that does not use Docker never imports
the Docker client.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.scenario.loader import as_stack_spec
from harness.scenario.models import StackSpec

from .base import (
    ReloadResult,
    Stack,
    StackDescription,
    StackEndpoints,
    StackError,
    StackOperationUnsupported,
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


def make_stack(spec: StackSpec | Mapping[str, object], run_dir: Path) -> Stack:
    """Build (not start) the stack for ``spec`` (the scenario's ``stack`` section).

    The door where a spec is coerced, once: a :class:`StackSpec` goes to its driver as it is; a
    mapping of the same shape (a library user's) is validated into one first, by the rules of a
    scenario file's ``stack:`` block. Enter the returned object to start it.

    Raises ScenarioError (a ValueError) naming each bad field of a mapping (``stack.<field>``),
    TypeError for anything else, StackError for a driver that is not available.
    """
    spec = as_stack_spec(spec)
    run_dir = Path(run_dir)
    if spec.driver == "local":
        from .local import LocalStack

        return LocalStack(spec, run_dir)
    if spec.driver == "external":
        from .external import ExternalStack

        return ExternalStack(spec, run_dir)
    if spec.driver == "compose":
        from .compose import ComposeStack

        return ComposeStack(spec, run_dir)
    raise StackError(f"stack.driver: unknown driver {spec.driver!r}; expected one of {DRIVERS}")
