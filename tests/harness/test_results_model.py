"""The typed results contract (issue 12 item 2): the model matches what the harness writes,
docs/RESULTS.md's generated blocks match the model, version-1 files still read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from test_results import make_doc

from harness.cli import main
from harness.results.docs import stale_blocks
from harness.results.model import (
    METRICS,
    SCHEMA_VERSION,
    InvalidKind,
    LatencyStats,
    Results,
    reason_from_v1,
)
from harness.results.writer import read_results

FIXTURES = Path(__file__).resolve().parents[1] / "report" / "fixtures"


def _extras(model: BaseModel, path: str = "") -> list[str]:
    """Every key the model does not declare, anywhere in the tree."""
    out = [f"{path}.{k}".lstrip(".") for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, dict):
            values = list(value.values())
        for v in values:
            if isinstance(v, BaseModel):
                out += _extras(v, f"{path}.{name}")
    return out


def test_a_fresh_document_is_exactly_the_model(tmp_path: Path) -> None:
    make_doc(tmp_path, ["generator fell behind: 3.2% of frames sent > 5 ms late"])
    doc = json.loads((tmp_path / "results.json").read_text())
    results = Results.model_validate(doc)
    assert _extras(results) == [], "keys written but not in harness/results/model.py"
    assert results.schema_version == SCHEMA_VERSION == 2
    assert results.histograms.unit == "us"
    assert results.invalid_reasons[0].kind is InvalidKind.FELL_BEHIND
    assert results.summary.frame.latency_ms.p50 == doc["summary"]["frame"]["latency_ms"]["p50"]
    # The model writes back what it read (aliases included).
    again = results.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert again["schema"] == "signflow-harness/results"
    assert again["summary"]["frame"] == doc["summary"]["frame"]


def test_docs_generated_blocks_match_the_model() -> None:
    # Run `python -m harness.results.docs` after changing harness/results/model.py.
    assert stale_blocks() == []


def test_catalogue_units_and_types_come_from_the_model() -> None:
    by = {m.pattern: m for m in METRICS}
    p95 = by["frame.latency_ms.p95"]
    assert (p95.unit, p95.type) == ("ms", "trend")
    assert (by["errors.total"].unit, by["errors.total"].type) == ("count", "counter")
    assert by["served_by.local"].type == "rate"
    assert by["faults.outage.recovery_latency_ms.p99"].needs == (
        "kill_torchserve",
        "start_torchserve",
    )
    assert by["errors.by_code.*"].absent_is_zero
    # Every latency statistic of the summary is gateable, in ms.
    for stat in LatencyStats.model_fields:
        unit = by[f"inference.latency_ms.{stat}"].unit
        assert unit == ("count" if stat == "count" else "ms")


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.results.json")), ids=lambda p: p.name)
def test_version_1_files_read_as_version_2(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1
    doc = read_results(path)
    assert doc["schema_version"] == 2 and doc["upgraded_from"] == 1
    results = Results.model_validate(doc)
    assert len(results.invalid_reasons) == len(raw["invalid_reasons"])
    for old, new in zip(raw["invalid_reasons"], results.invalid_reasons, strict=True):
        assert new.message == old and new.kind is reason_from_v1(old).kind


def test_v1_reasons_get_their_kind_from_the_prefix() -> None:
    fell = reason_from_v1("generator fell behind: 3.2% of frames sent > 5 ms late")
    assert fell.kind is InvalidKind.FELL_BEHIND
    assert reason_from_v1("run interrupted before anything").kind is InvalidKind.INTERRUPTED
    assert reason_from_v1("something new").kind is InvalidKind.OTHER


def test_compare_and_report_read_version_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = FIXTURES / "recorded-hot-reload.results.json"
    base = FIXTURES / "recorded-baseline-quick.results.json"
    assert main(["compare", str(new), str(base), "--json"]) == 0
    comparison: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert comparison["metrics"]
    out = tmp_path / "r.html"
    assert main(["report", str(new), "--out", str(out)]) == 0
    assert "<html" in out.read_text()[:500].lower()
