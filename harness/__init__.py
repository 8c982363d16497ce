"""SignFlow migration harness: scenarios, stacks, load, collectors, analysis, results, report.

The public Python API (also what the CLI, the sweep and the distributed engine build on)::

    import harness
    outcome = harness.run("scenarios/quickstart.yaml", out="reports")
    print(outcome.verdict, outcome.exit_code, outcome.results_path)
    decision = harness.decide("scenarios/migration.yaml")  # go / no-go / inconclusive

Everything listed in ``__all__`` is stable; other modules are internals.
"""

import importlib
import typing

# Only modules and the public names are attributes here (tests/harness/test_api.py checks it).
if typing.TYPE_CHECKING:
    from harness.api import (
        RepeatedOutcome,
        compare,
        load_scenario,
        open_stack,
        run,
        run_repeated,
    )
    from harness.decision import decide
    from harness.exitcodes import ExitCode
    from harness.runner.outcome import BaselineFailed, RunOutcome
    from harness.runner.progress import (
        Message,
        ProgressCallback,
        ProgressEvent,
        RunFinished,
        RunStarting,
        Tick,
    )
    from harness.scenario import Scenario, ScenarioError
    from harness.stack import Stack, StackError

# Each public name and the module that defines it. They load on first use (PEP 562), so
# importing one submodule (``harness.hdr``, ``harness.results.model``...) does not load the
# whole API: the run, the stacks, the analysis and their libraries.
_DEFINED_IN = {
    "BaselineFailed": "harness.runner.outcome",
    "ExitCode": "harness.exitcodes",
    "Message": "harness.runner.progress",
    "ProgressCallback": "harness.runner.progress",
    "ProgressEvent": "harness.runner.progress",
    "RepeatedOutcome": "harness.api",
    "RunFinished": "harness.runner.progress",
    "RunOutcome": "harness.runner.outcome",
    "RunStarting": "harness.runner.progress",
    "Scenario": "harness.scenario",
    "ScenarioError": "harness.scenario",
    "Stack": "harness.stack",
    "StackError": "harness.stack",
    "Tick": "harness.runner.progress",
    "compare": "harness.api",
    "decide": "harness.decision",
    "load_scenario": "harness.api",
    "open_stack": "harness.api",
    "run": "harness.api",
    "run_repeated": "harness.api",
}


def __getattr__(name: str) -> object:
    """The public name ``name``, imported from its module on first use (then cached here)."""
    module = _DEFINED_IN.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_DEFINED_IN})


__all__ = [
    "BaselineFailed",
    "ExitCode",
    "Message",
    "ProgressCallback",
    "ProgressEvent",
    "RepeatedOutcome",
    "RunFinished",
    "RunOutcome",
    "RunStarting",
    "Scenario",
    "ScenarioError",
    "Stack",
    "StackError",
    "Tick",
    "compare",
    "decide",
    "load_scenario",
    "open_stack",
    "run",
    "run_repeated",
]
