"""The results document has every key of docs/RESULTS.md; JUnit has one testcase per gate."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from core_builders import build_load

from harness.results.provenance import collect_provenance, mask
from harness.results.schema import missing_keys
from harness.results.writer import read_results
from harness.runner import _analyse, _Measured, _skeleton, _utc_now, _write_all
from harness.scenario.models import Scenario

GATES = ["errors.total == 0", "frame.latency_ms.p95 < 1", "gpu.util_mean between 40 70"]


def make_doc(tmp_path: Path, invalid: list[str] | None = None) -> tuple[dict, int]:
    sc = Scenario.model_validate(
        {"name": "r", "stack": {"use_torchserve": True},
         "workload": {"sessions": 2, "duration_s": 6, "warmup_s": 1}, "gates": GATES}
    )  # fmt: skip

    def reply(s: int, _t: float) -> tuple:
        return 0.02, "torchserve" if s else "local", "1.0", None

    load = build_load(sessions=2, fps=30, duration_s=6, warmup_s=1, reply=reply)
    load.invalid_reasons = list(invalid or [])
    doc = _skeleton(sc, "20261128T000000Z-r", _utc_now())
    code = _analyse(doc, sc, _Measured(load=load), None)
    doc["provenance"] = collect_provenance(None)
    _write_all(tmp_path, doc)
    return doc, code


def test_every_documented_key_is_present(tmp_path: Path) -> None:
    doc, code = make_doc(tmp_path)
    assert missing_keys(doc) == []
    on_disk = read_results(tmp_path / "results.json")  # strict JSON, schema checked
    assert on_disk["schema_version"] == 1 and on_disk["verdict"] == "failed" and code == 1
    s = on_disk["summary"]
    assert s["served_by"]["local"] == 0.5 and s["served_by"]["torchserve"] == 0.5
    assert s["frame"]["latency_ms"]["p50"] > 19.9
    assert s["gpu"]["present"] is False and s["gpu"]["util_mean"] is None
    series = on_disk["series"]
    assert len(series["t"]) == len(series["frame_p95_ms"]) == 6
    assert on_disk["histograms"]["frame_latency"].startswith("HIST")
    gates = {g["expr"]: g for g in on_disk["gates"]}
    assert gates["errors.total == 0"]["passed"] is True
    assert gates["gpu.util_mean between 40 70"]["reason"].startswith("metric is null: GPU")
    for key in ("git_commit", "packages", "cpu_model", "cpu_count", "gpu", "os"):
        assert key in on_disk["provenance"]


def test_junit_one_testcase_per_gate(tmp_path: Path) -> None:
    make_doc(tmp_path)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == GATES
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == GATES[1:]
    assert suite.get("tests") == "3" and suite.get("failures") == "2"


def test_invalid_run_exit_2_and_error_testcase(tmp_path: Path) -> None:
    doc, code = make_doc(tmp_path, ["generator fell behind: 3.2% of frames sent > 5 ms late"])
    assert code == 2 and doc["verdict"] == "invalid" and doc["valid"] is False
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    first = suite.findall("testcase")[0]
    assert first.get("name") == "measurement valid"
    assert "fell behind" in first.find("error").get("message")
    assert suite.get("errors") == "1"
    assert json.loads((tmp_path / "results.json").read_text())["invalid_reasons"]


def test_secrets_are_masked() -> None:
    cfg = {"token_auth": True, "env": {"ADMIN_TOKEN": "s3cret", "TORCHSERVE_KEY_FILE": "/k"}}
    assert "s3cret" not in json.dumps(mask(cfg))
    assert mask(cfg)["token_auth"] is True
