"""The verdict of a run in one sentence: what the console prints and the report's banner shows.

One function (:func:`verdict_line`) for both, so the terminal can never say less than the
page: a run whose gates passed while its comparison with the baseline found metrics worse reads
``PASSED: all 5 gates passed, but 4 compared metrics worse`` everywhere, followed by the
comparison's own headline (``harness.analysis.compare.headline``, stored in results.json).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .model import Document, Results, results_of

Status = Literal["passed", "failed", "inconclusive", "invalid", "error"]


class VerdictLine(BaseModel):
    """A run's verdict in words.

    ``status``: passed | failed | inconclusive (a rollout ran out of evidence with nothing
    failed, exit 4) | invalid | error (an interrupted or crashed run);
    ``headline``: the sentence (``FAILED: 2 of 5 gates failed``); ``comparison``: ``compared
    with <baseline run>: <the comparison's headline>``, None without a baseline;
    ``worse``: compared metrics judged worse (0 without a comparison).
    """

    status: Status
    headline: str
    comparison: str | None = None
    worse: int = Field(0, ge=0)


def comparison_line(comparison: Mapping[str, Any] | None) -> str | None:
    """One line on the comparison: its headline (older documents without one: the count of
    worse rows), so a PASSED run never sits silently over worse metrics. None without one."""
    if not comparison:
        return None
    base = comparison.get("baseline_run_id") or "the baseline"
    if comparison.get("headline"):
        return f"compared with {base}: {comparison['headline']}"
    worse = [str(m.get("metric")) for m in _rows(comparison) if m.get("verdict") == "worse"]
    if worse:
        return f"compared with {base}: {len(worse)} metrics worse ({', '.join(worse[:3])})"
    return f"compared with {base}: no metric judged worse"


def _rows(comparison: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in comparison.get("metrics") or [] if isinstance(m, Mapping)]


def verdict_line(
    results: Results | Document, comparison: Mapping[str, Any] | None = None
) -> VerdictLine:
    """The verdict sentence of a run's results (docs/RESULTS.md; a parsed results.json is read
    with :func:`harness.results.model.results_of`).

    ``comparison``: the comparison to speak of, as recorded in results.json (default: the
    results' own ``comparison`` block; the report passes one it computed for an older document).
    """
    if not isinstance(results, Results):
        results = results_of(results)
    if comparison is None:
        comparison = results.comparison or None
    status: Status
    verdict = str(results.verdict).lower()
    gates = results.gates
    if results.valid is False and verdict != "error":
        verdict = "invalid"
    if verdict == "invalid":
        status, headline = "invalid", "INVALID: this measurement cannot be trusted"
    elif verdict == "failed":
        failed = sum(1 for g in gates if not g.passed)
        status, headline = "failed", f"FAILED: {failed} of {len(gates)} gates failed"
    elif verdict == "inconclusive":
        status = "inconclusive"
        headline = "INCONCLUSIVE: the rollout ran out of evidence with nothing failed"
    elif verdict == "passed":
        status = "passed"
        headline = (
            f"PASSED: all {len(gates)} gates passed" if gates else "PASSED (no gates were set)"
        )
    else:
        status = "error"
        headline = (
            "INTERRUPTED: partial figures, no verdict"
            if results.error == "interrupted"
            else "ERROR: the run did not complete"
        )
    worse = sum(1 for m in _rows(comparison or {}) if m.get("verdict") == "worse")
    if worse and status == "passed":
        headline += f", but {worse} compared metric{'s' if worse != 1 else ''} worse"
    return VerdictLine(
        status=status, headline=headline, comparison=comparison_line(comparison), worse=worse
    )
