"""The typed results contract (issue 12 item 2): the model matches what the harness writes,
docs/RESULTS.md's generated blocks match the model, version-1 files still read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

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
    unknown_keys,
)
from harness.results.writer import read_results, results_document

FIXTURES = Path(__file__).resolve().parents[1] / "report" / "fixtures"


def test_a_fresh_document_is_exactly_the_model(tmp_path: Path) -> None:
    make_doc(tmp_path, ["generator fell behind: 3.2% of frames sent > 5 ms late"])
    doc = json.loads((tmp_path / "results.json").read_text())
    results = Results.model_validate(doc)
    assert unknown_keys(results) == [], "keys written but not in harness/results/model.py"
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
    results = read_results(path)
    doc = results_document(results)
    assert doc["schema_version"] == 2 and doc["upgraded_from"] == 1
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
    # Two recorded runs of different workloads: this test is about reading version 1, so the
    # comparison is asked for across them (without the flag: exit 2, no verdicts).
    assert main(["compare", str(new), str(base), "--json", "--allow-unlike-workloads"]) == 0
    comparison: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert comparison["metrics"]
    out = tmp_path / "r.html"
    assert main(["report", str(new), "--out", str(out)]) == 0
    assert "<html" in out.read_text()[:500].lower()


def test_unknown_keys_finds_keys_beyond_the_contract_at_any_depth() -> None:
    doc = {"run_id": "r", "name": "n", "started_at": "t", "scenario": {}, "scenario_yaml": "",
           "valid": True, "verdict": "passed", "series": {}, "histograms": {},
           "summary": {"frame": {"latency_ms": {"p50": 1.0, "p42": 2.0}}, "extra_top": 1},
           "sessions": [{"session": 0, "planned_start_s": 0.0, "frames": 1, "sent": 1,
                         "outcome": "ended", "colour": "red"}]}  # fmt: skip
    found = unknown_keys(Results.model_validate(doc))
    assert sorted(found) == ["sessions.colour", "summary.extra_top", "summary.frame.latency_ms.p42"]


def test_load_section_is_the_model() -> None:
    """engine locust's ``load`` section as the merge writes it (one worker done, one lost)."""
    import numpy as np

    from harness.load.distributed import WorkerOutcome, merge_worker_results
    from harness.load.recording import FRAME_DTYPE, LoadResult
    from harness.results.model import LoadDistribution

    rows = np.zeros(20, dtype=FRAME_DTYPE)
    rows["session"] = np.repeat(np.arange(2), 10)
    rows["frame_idx"] = np.tile(np.arange(10), 2)
    rows["t_scheduled"] = 1.0 + rows["frame_idx"] / 10.0
    rows["t_sent"] = rows["t_scheduled"]
    rows["t_reply"] = rows["t_sent"] + 0.02
    for name in ("served_by", "model_version", "prediction", "truth", "error_code"):
        rows[name] = -1
    done = LoadResult(frames=rows, labels=[], fps=10.0, duration_s=4.0, warmup_s=1.0,
                      late_threshold_ms=5.0, disconnects=0, send_failures=0,
                      generator_late_share=0.0, generator_cpu_percent=10.0,
                      generator_cpu_saturated=False)  # fmt: skip
    outcomes = [
        WorkerOutcome(index=0, name="0 (h pid 1)", session_offset=0, sessions=2, status="done",
                      result=done, host="h", engine_cpu_percent=12.5, messages=9,
                      message_bytes=900),
        WorkerOutcome(index=1, name="1 (h pid 2)", session_offset=2, sessions=2,
                      status="missing", detail="went missing", missing_at_s=2.5),
    ]  # fmt: skip
    master = {"bind": "127.0.0.1:5557", "messages": 9, "message_bytes": 900,
              "handler_cpu_s": 0.01, "cpu_percent": 3.0}  # fmt: skip
    merged = merge_worker_results(
        outcomes, total_sessions=4, fps=10.0, duration_s=4.0, warmup_s=1.0, ramp_up_s=0.0,
        start_s=1.0, late_threshold_ms=5.0, reply_timeout_s=5.0, master=master,
    )  # fmt: skip
    load = LoadDistribution.model_validate(merged.distribution)
    assert unknown_keys(load) == []
    assert [w.status for w in load.workers] == ["done", "missing"]
    assert load.workers[0].answered == 20 and load.workers[0].late_share == 0.0
    assert load.workers[1].sent == 0 and load.workers[1].late_share is None
    assert load.master.bind == "127.0.0.1:5557" and load.max_late_share == 0.01


def test_traffic_is_gateable_with_units() -> None:
    from harness.analysis.gates import resolve_metric
    from harness.analysis.traffic import traffic_summary

    records = [
        {"session": 0, "connected_s": 0.1, "lifetime_s": 2.0, "connect_ms": 3.0,
         "close_ms": 1.0, "cohort": "local", "outcome": "ended"},
        {"session": 1, "connected_s": None, "lifetime_s": None, "connect_ms": None,
         "close_ms": None, "cohort": None, "outcome": "refused"},
    ]  # fmt: skip
    traffic = traffic_summary(records)
    assert (traffic.started, traffic.refused, traffic.cohorts) == (1, 1, {"local": 1})
    assert traffic.lifetime_s.p50 == 2.0 and traffic.connect_ms.count == 1
    summary = {"traffic": traffic.model_dump(mode="json")}
    assert resolve_metric("traffic.refused", summary) == (1.0, None)
    assert resolve_metric("traffic.cohorts.torchserve", summary) == (0.0, None)
    by = {m.pattern: m for m in METRICS}
    assert (by["traffic.connect_ms.p95"].unit, by["traffic.connect_ms.p95"].type) == ("ms", "trend")
    assert by["traffic.lifetime_s.max"].unit == "s"


def test_abort_gate_validates() -> None:
    from harness.results.model import GateResult
    from harness.runner.watch import abort_gate

    gate = abort_gate({"at_s": 6.5, "measured_until_s": 1.5, "gate": "x < 1", "measured": 2.0,
                       "reason": "measured 2, required < 1"})  # fmt: skip
    assert GateResult.model_validate(gate).op is None


def test_schema_keys_are_the_models() -> None:
    """results/schema.py keeps no key list of its own (issue 21 A): the keys every readable
    document holds are the model's required and ALWAYS fields, in its order, and every key path
    the readers require names model fields."""
    from harness.results.schema import REQUIRED_KEY_PATHS, TOP_KEYS

    aliases = [f.alias or n for n, f in Results.model_fields.items()]
    assert list(TOP_KEYS) == [k for k in aliases if k in TOP_KEYS]
    assert {"schema", "finished_at", "summary", "comparison", "provenance"} <= set(TOP_KEYS)
    assert not {"error", "run_dir", "rollout", "aborted", "load"} & set(TOP_KEYS)  # newer keys
    for path in REQUIRED_KEY_PATHS:
        model: type[BaseModel] | None = Results
        for part in path.split("."):
            assert model is not None and part in model.model_fields, path
            model = next(
                (a for a in get_args(model.model_fields[part].annotation) or
                 (model.model_fields[part].annotation,)
                 if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )  # fmt: skip


def _key_order_differences(raw: Any, model: Any, path: str = "") -> list[str]:
    """Where ``raw``'s keys come in another order than ``model``'s dump (the writer's)."""
    out: list[str] = []
    if isinstance(model, BaseModel) and isinstance(raw, dict):
        dumped = list(model.model_dump(mode="json", by_alias=True, exclude_unset=True))
        if list(raw) != dumped:
            out.append(f"{path or '<top>'}: {list(raw)} != {dumped}")
        for name, field in type(model).model_fields.items():
            if (key := field.alias or name) in raw:
                out += _key_order_differences(raw[key], getattr(model, name), f"{path}.{key}")
    elif isinstance(model, list) and isinstance(raw, list):
        for i, (r, m) in enumerate(zip(raw, model, strict=False)):
            out += _key_order_differences(r, m, f"{path}[{i}]")
    elif isinstance(model, dict) and isinstance(raw, dict):
        for k in raw:
            if k in model:
                out += _key_order_differences(raw[k], model[k], f"{path}.{k}")
    return out


def test_the_model_declares_keys_in_the_order_the_harness_writes(tmp_path: Path) -> None:
    """results.json is the model's dump (issue 21 A): its bytes stay the same only if each model
    declares its fields in the order the analysis wrote them (summary.traffic, gpu.name, the
    histograms' curves, a reload's fallbacks, run_dir were out of order)."""
    from core_builders import build_load
    from pydantic import TypeAdapter
    from test_faults import outage_reply

    from harness.analysis.faults import analyze_faults
    from harness.analysis.frames import columns
    from harness.results.model import Fault

    doc, _ = make_doc(tmp_path)
    doc = {**json.loads(json.dumps(doc)), "run_dir": str(tmp_path)}
    assert _key_order_differences(doc, Results.model_validate(doc)) == []
    load = build_load(sessions=2, fps=20, duration_s=10, reply=outage_reply)
    events = [
        {"at_s": 3.0, "action": "kill_torchserve", "params": {}, "started_s": 3.0,
         "finished_s": 3.05, "ok": True},
        {"at_s": 6.0, "action": "start_torchserve", "params": {}, "started_s": 6.0,
         "finished_s": 7.2, "ok": True},
        {"at_s": 8.0, "action": "reload_model", "params": {"version": "2.0"}, "started_s": 8.0,
         "finished_s": 8.5, "ok": True},
    ]  # fmt: skip
    faults = json.loads(json.dumps(analyze_faults(columns(load), events, "1.0", 10.0)))
    assert [f["kind"] for f in faults] == ["outage", "reload"]
    typed = TypeAdapter(list[Fault]).validate_python(faults)
    assert _key_order_differences(faults, typed) == []


def test_tiers_keep_the_order_they_first_answered_in() -> None:
    """served_by.counts and accuracy_detail.by_served_by are keyed by the data (the tier that
    answered first comes first): the model's dump keeps that order, so results.json does not
    change when TorchServe answered before the local engine."""
    from core_builders import build_load

    from harness.analysis.summary import summarize
    from harness.results.model import Summary
    from harness.scenario.models import Scenario

    sc = Scenario.model_validate(
        {"name": "r", "stack": {"use_torchserve": True},
         "workload": {"sessions": 2, "duration_s": 6, "warmup_s": 1}}
    )  # fmt: skip
    load = build_load(
        sessions=2, fps=30, duration_s=6, warmup_s=1,
        reply=lambda s, _t: (0.02, "local" if s else "torchserve", "1.0", None),
    )  # fmt: skip
    summary = json.loads(json.dumps(summarize(load, {}, [], sc)[0]))
    assert list(summary["served_by"]["counts"]) == ["torchserve", "local"]
    assert list(summary["accuracy_detail"]["by_served_by"]) == ["torchserve", "local"]
    assert _key_order_differences(summary, Summary.model_validate(summary)) == []
