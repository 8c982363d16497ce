"""The results document has every key of docs/RESULTS.md; JUnit has one testcase per gate."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from core_builders import build_load

from harness.results.model import Provenance, Results, reason_from_v1
from harness.results.provenance import collect_provenance, mask
from harness.results.schema import missing_keys
from harness.results.writer import read_results, results_document
from harness.runner.execute import _analyse, _Measured, _skeleton, _utc_now, _write_all
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
    load.invalid_reasons = [reason_from_v1(r) for r in invalid or []]
    results = _skeleton(sc, "20261128T000000Z-r", _utc_now())
    code = _analyse(results, sc, _Measured(load=load), None)
    results.provenance = Provenance.model_validate(collect_provenance(None))
    return results_document(_write_all(tmp_path, results)), code


def test_every_documented_key_is_present(tmp_path: Path) -> None:
    doc, code = make_doc(tmp_path)
    assert missing_keys(doc) == []
    on_disk = results_document(read_results(tmp_path / "results.json"))  # schema checked
    assert on_disk["schema_version"] == 2 and on_disk["verdict"] == "failed" and code == 1
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
    (reason,) = json.loads((tmp_path / "results.json").read_text())["invalid_reasons"]
    assert reason["kind"] == "fell_behind" and reason["message"].startswith("generator fell")


def test_secrets_are_masked() -> None:
    cfg = {"token_auth": True, "env": {"ADMIN_TOKEN": "s3cret", "TORCHSERVE_KEY_FILE": "/k"}}
    assert "s3cret" not in json.dumps(mask(cfg))
    assert mask(cfg)["token_auth"] is True


# --------------------------------------------------------------------------- issue 11: 12, 17, 19

SECRET = "tok-9f8e7d6c5b4a"


def _secret_doc(tmp_path: Path) -> Results:
    """A finished run whose scenario carries a token, echoed in an error message as well."""
    sc = Scenario.model_validate(
        {"name": "r", "stack": {"backend": {"env": {"TORCHSERVE_TOKEN": SECRET}}},
         "workload": {"sessions": 2, "duration_s": 6, "warmup_s": 1}, "gates": GATES}
    )  # fmt: skip
    load = build_load(sessions=2, fps=30, duration_s=6, warmup_s=1,
                      reply=lambda s, _t: (0.02, "local", "1.0", None))  # fmt: skip
    doc = _skeleton(sc, "20261128T000000Z-r", _utc_now())
    _analyse(doc, sc, _Measured(load=load), None)
    doc.provenance = Provenance.model_validate(collect_provenance(None))
    doc.error = f"StackError: backend exited; env TORCHSERVE_TOKEN={SECRET}"
    return doc


def test_one_masking_rule_covers_every_written_place(tmp_path: Path) -> None:
    from harness.report import build_report

    doc = _secret_doc(tmp_path)
    assert SECRET in json.dumps(results_document(doc))  # in memory before writing
    doc = _write_all(tmp_path, doc)
    build_report(doc, None, tmp_path / "report.html")
    for name in ("results.json", "junit.xml", "report.html"):
        assert SECRET not in (tmp_path / name).read_text(), name
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["scenario"]["stack"]["backend"]["env"]["TORCHSERVE_TOKEN"] == "***"
    assert "TORCHSERVE_TOKEN: '***'" in on_disk["scenario_yaml"]
    assert on_disk["error"].endswith("TORCHSERVE_TOKEN=***")
    # The in-memory document is masked too: the report and the printed outcome come from it.
    assert SECRET not in json.dumps(results_document(doc))
    # What the masking must not touch: booleans under secret-looking names, env var NAMES.
    assert on_disk["scenario"]["stack"]["torchserve"]["token_auth"] is True


def test_mask_keeps_env_var_names_and_scrubs_echoes() -> None:
    from harness.redact import mask as one_rule
    from harness.stack.base import mask_secrets

    cfg = {"external": {"torchserve_token_env": "TS_TOKEN", "admin_token_env": None},
           "env": {"API_KEY": "abcd1234"}, "log": "started with abcd1234", "n": 1}  # fmt: skip
    out = one_rule(cfg)
    assert out["external"] == {"torchserve_token_env": "TS_TOKEN", "admin_token_env": None}
    assert out["env"] == {"API_KEY": "***"} and out["log"] == "started with ***"
    # The stack's provenance uses the same rule (one module, no second regex).
    assert mask_secrets({"ADMIN_TOKEN": "x", "PASSWD": "y", "PATH": "/bin"}) == {
        "ADMIN_TOKEN": "***", "PASSWD": "***", "PATH": "/bin"}  # fmt: skip


def test_redact_files_scrubs_text_logs_and_leaves_binaries(tmp_path: Path) -> None:
    from harness.redact import redact_files

    (tmp_path / "logs" / "ts").mkdir(parents=True)
    (tmp_path / "logs" / "backend.log").write_text(f"token={SECRET}\nok\n")
    (tmp_path / "logs" / "ts" / "model_log.log").write_text(f"a {SECRET} b {SECRET}\n")
    (tmp_path / "logs" / "blob.bin").write_bytes(b"\0" + SECRET.encode())
    changed = redact_files(tmp_path / "logs", {SECRET, "ab"})
    assert sorted(p.name for p in changed) == ["backend.log", "model_log.log"]
    assert (tmp_path / "logs" / "backend.log").read_text() == "token=***\nok\n"
    assert (tmp_path / "logs" / "ts" / "model_log.log").read_text() == "a *** b ***\n"
    assert (tmp_path / "logs" / "blob.bin").read_bytes() == b"\0" + SECRET.encode()


def test_junit_infrastructure_failure_is_not_called_measurement_valid(tmp_path: Path) -> None:
    from harness.results.junit import ERROR_CASE, junit_tree

    doc = {"name": "r", "run_id": "x", "verdict": "error", "valid": False,
           "invalid_reasons": [], "error": "StackError: TorchServe did not become ready",
           "gates": [{"expr": "errors.total == 0", "passed": False, "reason": "metric is null"}],
           "started_at": "2026-11-28T00:00:00.000Z",
           "finished_at": "2026-11-28T00:01:05.250Z", "summary": {"duration_s": 10}}  # fmt: skip
    suite = junit_tree(doc).getroot()
    case = suite.findall("testcase")[0]
    assert case.get("name") == ERROR_CASE == "run completed"
    assert case.find("error").get("type") == "error"
    assert "TorchServe did not become ready" in case.find("error").get("message")
    # time is the wall time of the run, not the configured 10 s of load
    assert suite.get("time") == "65.250"
    doc["error"] = "interrupted"
    assert junit_tree(doc).getroot().find("testcase/error").get("type") == "interrupted"


def test_junit_time_is_wall_time(tmp_path: Path) -> None:
    doc, _ = make_doc(tmp_path)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    from harness.results.junit import wall_time_s

    assert suite.get("time") == f"{wall_time_s(doc):.3f}"
    assert float(suite.get("time")) < 60
    assert float(suite.get("time")) != float(doc["summary"]["duration_s"])


def test_run_dir_handles(tmp_path: Path) -> None:
    from harness.runner.execute import LATEST, make_run_dir

    run_id, run_dir = make_run_dir(tmp_path, "demo")
    assert (tmp_path / LATEST).resolve() == run_dir.resolve()
    assert (tmp_path / LATEST).readlink() == Path(run_id)  # relative: the folder can move
    second_id, second = make_run_dir(tmp_path, "demo")
    assert second_id != run_id and (tmp_path / LATEST).resolve() == second.resolve()
    exact_id, exact = make_run_dir(tmp_path, "demo", run_dir=tmp_path / "ci" / "run-7")
    assert (exact_id, exact) == ("run-7", tmp_path / "ci" / "run-7") and exact.is_dir()
    assert (tmp_path / LATEST).resolve() == second.resolve()  # --run-dir leaves latest alone
    (exact / "results.json").write_text("{}")
    try:
        make_run_dir(tmp_path, "demo", run_dir=exact)
    except ValueError as exc:
        assert "already holds a run" in str(exc)
    else:
        raise AssertionError("an existing run was overwritten")


# --------------------------------------------------------------------------- docs/RESULTS.md sync

RESULTS_MD = Path(__file__).resolve().parents[2] / "docs" / "RESULTS.md"
# Maps whose keys are data (package names, error codes, versions...), not schema.
_DATA_MAPS = {"scenario", "packages", "by_code", "model_versions", "percentile_curve",
              "model_archives", "configs", "counts", "by_served_by", "batch_size_hist",
              "requests_by_replica", "cpu", "startup_s", "cpu_percent", "rss_mb"}  # fmt: skip


def _key_names(obj: object, path: str = "") -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else k
            out.add((p, k))
            if k not in _DATA_MAPS:
                out |= _key_names(v, p)
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        out |= _key_names(obj[0], f"{path}[]")
    return out


def test_every_key_written_is_documented(tmp_path: Path) -> None:
    import re

    doc, _ = make_doc(tmp_path)
    doc["run_dir"] = str(tmp_path)
    text = RESULTS_MD.read_text(encoding="utf-8")
    undocumented = sorted(
        path for path, name in _key_names(doc)
        if not re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text)
    )  # fmt: skip
    assert undocumented == [], f"docs/RESULTS.md lacks: {undocumented}"


def test_documented_error_codes_are_the_backends() -> None:
    import re

    source = (
        Path(__file__).resolve().parents[2] / "backend_patch/app/api/translate.py"
    ).read_text()
    # Every code the backend can put in an error reply: FrameError("code", ...), the receiver's
    # error=("code", ...), and _error_reply(idx, "code", ...).
    backend = set(re.findall(r'FrameError\(\s*"([a-z_]+)"', source))
    backend |= set(re.findall(r'error=\("([a-z_]+)"', source))
    backend |= set(re.findall(r'_error_reply\(\s*[\w.]+,\s*"([a-z_]+)"', source))
    assert backend >= {"invalid_json", "invalid_frame", "inference_failed"}, backend
    line = next(ln for ln in RESULTS_MD.read_text().splitlines() if "invalid_json |" in ln)
    documented = set(re.findall(r"[a-z]+_[a-z_]+", line.split("//", 1)[1]))
    assert documented == backend
    example = re.search(r'"by_code": \{"([a-z_]+)"', RESULTS_MD.read_text()).group(1)
    assert example in backend


def test_report_yaml_is_masked_by_the_one_rule() -> None:
    # The report's copy of scenario_yaml (from a file written elsewhere) uses harness.redact's
    # rule, like results.json: secret names masked, booleans and *_env names kept.
    from harness.redact import MASK, mask_yaml_text

    text = (
        "stack:\n  torchserve: {batch_size: 4}\n  token_auth: true\n"
        "  admin_token_env: SIGNFLOW_ADMIN_TOKEN\n  env:\n    ADMIN_TOKEN: s3cretvalue\n"
        "    NOTE: echo s3cretvalue here\n    API_KEY: 'quoted-secret'\n"
    )
    out = mask_yaml_text(text)
    assert "s3cretvalue" not in out and "quoted-secret" not in out
    assert f"ADMIN_TOKEN: {MASK}" in out and f"NOTE: echo {MASK} here" in out
    assert "token_auth: true" in out and "admin_token_env: SIGNFLOW_ADMIN_TOKEN" in out


def _record(session: int, cohort: str) -> dict:
    """A SessionRecord of a session open for the whole 6-s run."""
    return {
        "session": session, "planned_start_s": 0.0, "frames": 180, "sent": 180,
        "connected_s": 0.0, "closed_s": 6.0, "lifetime_s": 6.0, "connect_ms": 1.0,
        "close_ms": 1.0, "cohort": cohort, "outcome": "ended",
    }  # fmt: skip


def test_fallback_is_the_torchserve_cohorts_local_share(tmp_path: Path) -> None:
    """Issue 18 item 3: the old-pipeline cohort's local answers are never fallbacks. Session 0
    is in the old-pipeline cohort (the backend's route header), session 1 in TorchServe's and
    answered locally for 1 s of 6 (TorchServe down): the fallback share is that second's
    share of session 1's classifications, not the 58 % of ALL answers that were local."""
    sc = Scenario.model_validate(
        {"name": "r", "stack": {"use_torchserve": True, "rollout_percent": 50},
         "workload": {"sessions": 2, "duration_s": 6, "warmup_s": 0}, "gates": []}
    )  # fmt: skip

    def reply(s: int, t: float) -> tuple:
        served = "local" if s == 0 or 3.0 <= t < 4.0 else "torchserve"
        return 0.01, served, "1.0", None

    load = build_load(sessions=2, fps=30, duration_s=6, reply=reply)
    load.sessions = [_record(0, "local"), _record(1, "torchserve")]
    results = _skeleton(sc, "20261207T000000Z-r", _utc_now())
    _analyse(results, sc, _Measured(load=load), None)
    doc = results_document(results)
    fb, served = doc["summary"]["fallback"], doc["summary"]["served_by"]
    assert fb == {"share": 30 / 180, "count": 30, "torchserve_cohort": 180, "old_pipeline": 180}
    assert served["local"] == 210 / 360  # what the report once labelled "local fallback"
    assert doc["series"]["served_fallback"] == [0, 0, 0, 30, 0, 0]
    assert doc["series"]["served_local"] == [30, 30, 30, 60, 30, 30]
    # A TorchServe-off run (every session in the old pipeline): nothing fell back.
    off = build_load(
        sessions=2, fps=30, duration_s=6, reply=lambda s, t: (0.01, "local", "1.0", None)
    )
    off.sessions = [_record(0, "local"), _record(1, "local")]
    results = _skeleton(sc, "20261207T000000Z-r", _utc_now())
    _analyse(results, sc, _Measured(load=off), None)
    doc = results_document(results)
    assert doc["summary"]["fallback"]["share"] == 0.0
    assert doc["summary"]["served_by"]["local"] == 1.0
