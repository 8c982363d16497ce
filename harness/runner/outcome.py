"""What a run produced (:class:`RunOutcome`), and the baseline run that could not start.

Below the orchestration that makes them (``harness.runner.execute``, ``harness.api``) and the
progress events that carry them (``harness.runner.progress.RunFinished``), so none of those
imports another to name them; the public names are ``harness.RunOutcome`` and
``harness.BaselineFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.compare import Comparison
from harness.exitcodes import ExitCode
from harness.results.model import Results

__all__ = ["BASELINE_PREFIX", "BaselineFailed", "RunOutcome"]

BASELINE_PREFIX = "baseline:"


@dataclass(frozen=True)
class RunOutcome:
    """What one run produced.

    ``results``: the results document as written to ``results.json`` (secrets masked;
    docs/RESULTS.md). ``exit_code``: the run's :class:`ExitCode` after the baseline rule (an
    INVALID baseline run makes a passed or failed run INVALID: its comparison cannot be trusted).
    ``baseline``: the baseline run this call made first (None when the baseline was read from a
    file, or there was none).
    """

    results: dict[str, Any]
    exit_code: ExitCode
    baseline: RunOutcome | None = None

    @property
    def verdict(self) -> str:
        """``passed`` | ``failed`` | ``invalid`` | ``error``."""
        return str(self.results["verdict"])

    @property
    def valid(self) -> bool:
        """False when the measurement is INVALID (see ``results['invalid_reasons']``)."""
        return bool(self.results["valid"])

    @property
    def model(self) -> Results:
        """``results`` as the typed model (harness/results/model.py)."""
        return Results.model_validate(self.results)

    @property
    def comparison(self) -> Comparison | None:
        """The comparison with the baseline, typed (None without a baseline)."""
        doc = self.results.get("comparison")
        return None if doc is None else Comparison.model_validate(doc)

    @property
    def run_dir(self) -> Path:
        """The run's folder (results.json, junit.xml, report.html, logs/)."""
        return Path(self.results["run_dir"])

    @property
    def results_path(self) -> Path:
        """``<run_dir>/results.json``."""
        return self.run_dir / "results.json"


class BaselineFailed(RuntimeError):
    """The baseline scenario run first could not start its stack; the scenario did not run.

    ``outcome``: the baseline's RunOutcome (results written, ``exit_code`` INFRASTRUCTURE).
    """

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__("the baseline run failed to start its stack; not running the scenario")
        self.outcome = outcome

    @property
    def exit_code(self) -> ExitCode:
        """The baseline run's code (INFRASTRUCTURE)."""
        return self.outcome.exit_code
