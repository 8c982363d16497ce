"""Run the measurement coroutine on the best event loop available (uvloop when installed)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when installed (the load generator is cheaper on it).

    Ctrl-C cancels the coroutine (its ``finally`` blocks run) and then raises KeyboardInterrupt.
    """
    from harness.load import run_with_best_loop

    return run_with_best_loop(coro)
