"""SignFlow migration harness: scenarios, stacks, load, collectors, analysis, results, report.

The public Python API (also what the CLI, the sweep and the distributed engine build on)::

    import harness
    outcome = harness.run("scenarios/quickstart.yaml", out="reports")
    print(outcome.verdict, outcome.exit_code, outcome.results_path)
    decision = harness.decide("scenarios/migration.yaml")  # go / no-go / inconclusive

Everything listed in ``__all__`` is stable; other modules are internals.
"""

from harness.api import (
    BaselineFailed,
    RepeatedOutcome,
    RunOutcome,
    compare,
    load_scenario,
    open_stack,
    run,
    run_repeated,
)
from harness.decision import decide
from harness.exitcodes import ExitCode
from harness.progress import (
    Message,
    ProgressCallback,
    ProgressEvent,
    RunFinished,
    RunStarting,
    Tick,
)
from harness.scenario import Scenario, ScenarioError
from harness.stack import Stack, StackError

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
