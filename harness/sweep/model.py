"""Pydantic models of a sweep file (``sweeps/*.yaml``, docs/HARNESS.md "Sweeps").

A sweep is a base scenario, a parameter space over scenario keys (a grid, or a list of points),
the load levels of each configuration (fixed ``sessions`` or a capacity ``search``),
constraints written as gates, an objective and a budget. Every model forbids unknown keys, like
the scenario models, so a typo is an error with its line rather than a silently ignored key.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.scenario.models import MAX_DURATION_S

MAX_CONFIGURATIONS = 256  # a grid larger than this is a typo, not a plan for one machine
MAX_SESSIONS = 10_000  # the scenario's own bound on workload.sessions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Space(_Strict):
    """Exactly one of ``grid`` (key -> values, every combination) or ``points`` (a list)."""

    grid: dict[str, list[Any]] | None = None
    points: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Space:
        if (self.grid is None) == (self.points is None):
            raise ValueError("give exactly one of 'grid' or 'points'")
        if self.grid is not None:
            empty = [k for k, v in self.grid.items() if not v]
            if empty:
                raise ValueError(f"grid key '{empty[0]}' has no values")
        if self.points is not None and not self.points:
            raise ValueError("'points' is empty")
        if len(self.configurations()) > MAX_CONFIGURATIONS:
            raise ValueError(
                f"{len(self.configurations())} configurations; at most {MAX_CONFIGURATIONS}"
            )
        return self

    def names(self) -> list[str]:
        """Every key the space varies, in file order."""
        if self.grid is not None:
            return list(self.grid)
        return list(dict.fromkeys(k for p in self.points or [] for k in p))

    def configurations(self) -> list[dict[str, Any]]:
        """The configurations, in file order (a grid: the last key varies fastest)."""
        if self.grid is not None:
            keys = list(self.grid)
            combos = itertools.product(*(self.grid[k] for k in keys))
            return [dict(zip(keys, c, strict=True)) for c in combos]
        return [dict(p) for p in self.points or []]


class Search(_Strict):
    """Capacity search over ``workload.sessions``: exponential steps from ``start`` (doubling,
    capped at ``max``) until a level fails, then bisection between the highest pass and the
    lowest fail. ``resolution``: the capacity found is at most this many sessions below the
    true knee (0: exact), so the search stops once ``fail - pass <= resolution + 1``."""

    start: int = Field(1, ge=1, le=MAX_SESSIONS)
    max: int = Field(64, ge=1, le=MAX_SESSIONS)
    resolution: int = Field(1, ge=0, le=MAX_SESSIONS)
    # Best of N at a failing level. A busy machine only ever adds latency, so a run that
    # passes is evidence the system holds that load, while one failing run may be the machine:
    # a level counts as failed only after `confirm` failing runs in a row (an A/A control of
    # two identical configurations put one at >= 128 sessions, the other at 96, from one run
    # each at 128 on a shared 2-core host).
    confirm: int = Field(1, ge=1, le=5)

    @model_validator(mode="after")
    def _order(self) -> Search:
        if self.start > self.max:
            raise ValueError(f"search.start ({self.start}) is above search.max ({self.max})")
        return self

    def max_runs(self) -> int:
        """Upper bound on the runs one configuration's search takes. A pass ends its level; a
        fail may take ``confirm`` runs, and at most one level of the doubling fails (it ends
        the doubling) plus each bisection's."""
        steps, n = 1, self.start
        while n < self.max:
            n, steps = min(n * 2, self.max), steps + 1
        width, bisect = max(self.max // 2, 1), 0
        while width > self.resolution + 1:
            width, bisect = (width + 1) // 2, bisect + 1
        return steps + bisect + (self.confirm - 1) * (1 + bisect)


class Load(_Strict):
    """Exactly one of ``sessions`` (fixed levels) or ``search`` (find the capacity)."""

    sessions: list[int] | None = None
    search: Search | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Load:
        if (self.sessions is None) == (self.search is None):
            raise ValueError("give exactly one of 'sessions' (fixed levels) or 'search'")
        if self.sessions is not None:
            if not self.sessions:
                raise ValueError("'sessions' is empty")
            bad = [n for n in self.sessions if not 1 <= n <= MAX_SESSIONS]
            if bad:
                raise ValueError(f"sessions must be 1..{MAX_SESSIONS}, got {bad[0]}")
        return self

    def levels(self) -> list[int]:
        """The fixed levels, ascending and distinct (search: empty)."""
        return sorted(set(self.sessions or []))


class Objective(_Strict):
    """What "best" means: ``maximize`` or ``minimize`` a gate metric, or maximise ``capacity``."""

    maximize: str | None = None
    minimize: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Objective:
        if (self.maximize is None) == (self.minimize is None):
            raise ValueError("give exactly one of 'maximize' or 'minimize'")
        if self.minimize == "capacity":
            raise ValueError("capacity can only be maximised")
        return self

    @property
    def metric(self) -> str:
        """The metric name (``capacity`` or a gate metric)."""
        return str(self.maximize or self.minimize)

    @property
    def higher_is_better(self) -> bool:
        """True for ``maximize``."""
        return self.maximize is not None


class Budget(_Strict):
    """Limits over the whole sweep: runs, and wall minutes (stack starts included)."""

    max_runs: int = Field(50, ge=1, le=10_000)
    max_minutes: float = Field(60, gt=0, le=MAX_DURATION_S / 60)


class SweepFile(_Strict):
    """A validated sweep file (the base scenario is validated separately, per configuration)."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    base: str | dict[str, Any]
    set: dict[str, Any] = Field(default_factory=dict)
    space: Space
    load: Load
    constraints: list[str] = Field(default_factory=list)
    objective: Objective = Field(default_factory=lambda: Objective(maximize="capacity"))
    budget: Budget = Field(default_factory=Budget)
    # Seconds a stack of this sweep needs to start, for the plan's estimate only.
    stack_start_s: float = Field(20, ge=0, le=3600)

    @model_validator(mode="after")
    def _capacity_needs_search(self) -> SweepFile:
        if self.objective.metric == "capacity" and self.load.search is None:
            raise ValueError("objective 'maximize: capacity' needs 'load.search'")
        return self


Status = Literal["met", "not met", "unknown", "error", "not run"]


class SearchLevel(BaseModel):
    """One load level a capacity search ran: sessions and the run's outcome."""

    sessions: int
    outcome: str


class ConfigurationResult(BaseModel):
    """One configuration in sweep.json (``configurations[]``).

    ``capacity``: sessions, only when measured (the search bracketed the knee); else None with
    ``capacity_note`` saying why. ``censored``: the capacity is a lower bound, not a measurement
    (it passed at ``search.max``, or the search stopped early at the machine's limit or the
    budget after passing ``capacity_at_least`` sessions): a reader must call it "at least
    ``capacity_at_least``" (``harness decide``: unknown), never compare it as a number.
    ``value``: the objective's value (for capacity, the bound when censored and met).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    label: str
    params: dict[str, Any]
    stack: dict[str, Any]
    fps: float
    cost: list[float]
    cost_words: str
    status: Status
    value: float | None = None
    capacity: int | None = None
    capacity_at_least: int | None = None
    censored: bool = False
    capacity_note: str | None = None
    note: str | None = None
    points: list[str] = Field(default_factory=list)
    best_point: str | None = None
    search: list[SearchLevel] | None = None


class Recommendation(BaseModel):
    """sweep.json ``recommendation``: the configuration named and why.

    ``equivalent``: configurations whose difference is inside the noise (never a censored
    one). ``censored``: the recommended capacity is a lower bound; ``tied``: the other
    configurations that passed the same largest load (bounds, not equal capacities), ordered by
    ``tie_break`` (the constraint metrics compared at that load, or the cost when none
    differs beyond the noise).
    """

    model_config = ConfigDict(extra="forbid")

    config: str
    best_measured: str
    equivalent: list[str] = Field(default_factory=list)
    censored: bool = False
    tied: list[str] = Field(default_factory=list)
    tie_break: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    why: str = ""
