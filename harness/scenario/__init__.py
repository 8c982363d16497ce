"""Scenario files: YAML -> validated pydantic :class:`Scenario` (errors name file:line:field)."""

from .loader import (
    ScenarioError,
    apply_overrides,
    as_stack_spec,
    load_scenario,
    scenario_to_yaml,
)
from .models import Event, Scenario, StackSpec, Workload

__all__ = [
    "Event",
    "Scenario",
    "ScenarioError",
    "StackSpec",
    "Workload",
    "apply_overrides",
    "as_stack_spec",
    "load_scenario",
    "scenario_to_yaml",
]
