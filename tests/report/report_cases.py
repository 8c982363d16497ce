"""Report test cases (fixtures, expected figures) and the session fixture that builds them.

Reports are written next to a copy of their results.json under test-artifacts/report/<case>/
(ignored by git) so a reviewer can open them after the run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.report import build_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report"

BASE_FIGURES = {
    "latency-over-time",
    "throughput-over-time",
    "latency-distribution",
    "served-by",
    "cpu-over-time",
}


@dataclass(frozen=True)
class Case:
    """One report to build: results fixture, optional baseline, the figures it must show."""

    name: str
    results: str
    baseline: str | None
    figures: frozenset[str]


CASES = [
    Case("baseline", "synthetic-baseline.results.json", None, frozenset(BASE_FIGURES)),
    Case(
        "fallback-kill",
        "synthetic-fallback-kill.results.json",
        "synthetic-baseline.results.json",
        frozenset(BASE_FIGURES | {"torchserve-batching"}),
    ),
    Case(
        "hot-reload",
        "synthetic-hot-reload.results.json",
        "synthetic-baseline.results.json",
        frozenset(BASE_FIGURES | {"torchserve-batching"}),
    ),
    Case(
        "gpu",
        "synthetic-gpu-torchserve.results.json",
        "synthetic-baseline.results.json",
        frozenset(BASE_FIGURES | {"torchserve-batching", "gpu-over-time"}),
    ),
]
# Results recorded from real `harness run`s, added when present (see fixtures/README.md).
for _rec in sorted(FIXTURES.glob("recorded-*.results.json")):
    _doc = json.loads(_rec.read_text(encoding="utf-8"))
    _figs = {"latency-over-time", "throughput-over-time", "latency-distribution", "cpu-over-time"}
    if any(_doc.get("series", {}).get(k) for k in ("served_local", "served_torchserve")):
        _figs.add("served-by")
    _ts = (_doc.get("summary") or {}).get("torchserve") or {}
    _ser = _doc.get("series") or {}
    if _ts.get("batch_size_hist") or any(
        v is not None
        for k in ("ts_queue_ms", "ts_inference_ms", "ts_end_to_end_ms", "ts_handler_ms")
        for v in _ser.get(k) or []
    ):
        _figs.add("torchserve-batching")
    if (_doc.get("series") or {}).get("gpu_util"):
        _figs.add("gpu-over-time")
    # A recorded run compared with another recorded run gets that run as its baseline.
    _base_id = (_doc.get("comparison") or {}).get("baseline_run_id")
    _base = next(
        (
            b.name
            for b in FIXTURES.glob("recorded-*.results.json")
            if _base_id and json.loads(b.read_text(encoding="utf-8")).get("run_id") == _base_id
        ),
        None,
    )
    CASES.append(Case(_rec.name.removesuffix(".results.json"), _rec.name, _base, frozenset(_figs)))


def load_fixture(name: str) -> dict:
    """A fixture results document, parsed."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Built:
    """A built report and what it was built from."""

    case: Case
    results: dict
    html_path: Path

    @property
    def html(self) -> str:
        return self.html_path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def built_reports() -> dict[str, Built]:
    """Every case's report, built once (matplotlib is the slow part)."""
    out: dict[str, Built] = {}
    for case in CASES:
        run_dir = ARTIFACTS / case.name
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        shutil.copy(FIXTURES / case.results, run_dir / "results.json")
        results = load_fixture(case.results)
        baseline = load_fixture(case.baseline) if case.baseline else None
        path = build_report(results, baseline, run_dir / "report.html")
        out[case.name] = Built(case, results, path)
    return out
