"""The capacity search of one configuration: exponential steps, then bisection.

Pure bookkeeping (no I/O), so it is tested on its own: the executor asks :meth:`next_level`,
runs that many sessions and tells :meth:`record` the outcome. The capacity is the highest level
that passed once the lowest failing level is at most ``resolution + 1`` above it (the true knee
lies between them); a level fails only after ``confirm`` failing runs in a row (any pass there
is a pass: machine noise only adds latency); a level
whose measurement was INVALID because this machine could not offer the load ends the search
with no number ("capacity above what this load machine can offer").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .model import Search

Outcome = Literal["pass", "fail", "machine-limit", "error"]
MACHINE_LIMIT_NOTE = "capacity above what this load machine can offer"


@dataclass
class CapacitySearch:
    """State of one configuration's search; ``levels`` lists (sessions, outcome) in run order."""

    spec: Search
    passed: int | None = None  # highest level that passed
    failed: int | None = None  # lowest level that failed
    levels: list[tuple[int, Outcome]] = field(default_factory=list)
    stopped: str | None = None  # why it ended without a bracket (machine limit, error, budget)
    retry: int | None = None  # a level that failed fewer than spec.confirm times: run it again
    _fails: dict[int, int] = field(default_factory=dict)

    def next_level(self) -> int | None:
        """The next load to run, or None when the search is over."""
        if self.stopped is not None:
            return None
        if self.retry is not None:
            return self.retry
        if not self.levels:
            return self.spec.start
        if self.failed is None:  # still stepping up
            assert self.passed is not None
            if self.passed >= self.spec.max:
                return None
            return min(self.passed * 2, self.spec.max)
        if self._bracketed():
            return None
        return ((self.passed or 0) + self.failed) // 2

    def _bracketed(self) -> bool:
        """The bracket is narrow enough (nothing passed: only once 1 session failed, since
        "fails at any load" is a claim the search must have measured)."""
        if self.failed is None:
            return False
        if self.passed is None:
            return self.failed <= 1
        return self.failed - self.passed <= self.spec.resolution + 1

    def record(self, sessions: int, outcome: Outcome, why: str | None = None) -> None:
        """The outcome of the run at ``sessions``."""
        self.levels.append((sessions, outcome))
        self.retry = None
        if outcome == "pass":
            self.passed = max(self.passed or 0, sessions)
        elif outcome == "fail":
            self._fails[sessions] = self._fails.get(sessions, 0) + 1
            if self._fails[sessions] < self.spec.confirm:
                self.retry = sessions
                return
            self.failed = sessions if self.failed is None else min(self.failed, sessions)
        elif outcome == "machine-limit":
            self.stopped = MACHINE_LIMIT_NOTE
        else:
            self.stopped = why or "a run failed to complete"

    def stop(self, why: str) -> None:
        """End the search early (the budget ran out, or the sweep was interrupted)."""
        if self.next_level() is not None:
            self.stopped = why
            self.retry = None

    def tries(self, sessions: int) -> int:
        """How many runs the search has made at ``sessions`` so far."""
        return sum(1 for n, _ in self.levels if n == sessions)

    @property
    def capacity(self) -> int | None:
        """The capacity in sessions, only once found (None: not found, see :attr:`note`)."""
        if self.stopped is not None or not self.levels:
            return None
        if self.failed is None:
            return None  # passed up to search.max: at least that, not a number
        return (self.passed or 0) if self._bracketed() else None

    @property
    def censored(self) -> bool:
        """The result is a lower bound (``passed`` sessions held, the knee not found): it
        passed at search.max, or the search stopped (machine limit, budget) after a pass."""
        return self.capacity is None and self.passed is not None

    @property
    def note(self) -> str:
        """The result in words."""
        if self.stopped == MACHINE_LIMIT_NOTE:
            low = f" (passed at {self.passed} sessions)" if self.passed else ""
            return f"{MACHINE_LIMIT_NOTE}{low}"
        if self.stopped is not None:
            low = f"; at least {self.passed} sessions" if self.passed else ""
            return f"search ended early: {self.stopped}{low}"
        if self.failed is None and self.passed is not None:
            return f"at least {self.passed} sessions (passed at search.max; raise search.max)"
        cap = self.capacity
        if cap == 0:
            return f"fails the constraints already at {self.failed} session(s)"
        if cap is not None:
            return f"{cap} sessions (passes at {cap}, fails at {self.failed})"
        return "not searched"
