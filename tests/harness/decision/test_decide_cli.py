"""``harness decide`` end to end on recorded evidence (``--from DIR --no-run``): exit codes,
console lines, decision.json as the typed model, evidence paths, ``--help``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from decision_builders import GPU_TS, OLD, decision_file, level, sweep_doc, write_from_dir

import harness
from harness.cli import main
from harness.decision import Decision, Outcome

GO = "  frame_latency: {p95_below_ms: 30}\n  errors: {}\n  accuracy: {}\n  gpu: {}\n"


def _decide(
    tmp_path: Path, criteria: str, capsys: pytest.CaptureFixture[str], **from_kw: object
) -> tuple[int, str, Decision, Path]:
    src = write_from_dir(tmp_path / "from", **from_kw)  # type: ignore[arg-type]
    path = decision_file(tmp_path / "decision.yaml", criteria)
    code = main(["decide", str(path), "--from", str(src), "--no-run", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    found = [p for p in (tmp_path / "o").glob("*/decision.json") if p.parent.name != "latest"]
    assert len(found) == 1
    decision = Decision.model_validate_json(found[0].read_text(encoding="utf-8"))
    return code, out, decision, found[0].parent


def test_go_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # TorchServe on a GPU (synthetic) against the old pipeline: every criterion met.
    code, out, d, folder = _decide(tmp_path, GO, capsys, baseline=OLD, candidate=GPU_TS)
    assert code == 0 and d.decision == Outcome.GO and d.exit_code == 0
    assert [c.status.value for c in d.criteria] == ["met"] * 4
    assert out.count("  MET      ") == 4
    assert "test-decision: GO on this host" in out
    assert (folder / "decision.html").is_file()


def test_no_go_exits_1_and_names_the_criterion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, d, _ = _decide(tmp_path, GO, capsys, baseline=GPU_TS, candidate=OLD)
    assert code == 1 and d.decision == Outcome.NO_GO
    assert "NOT MET  frame latency" in out
    assert "not met: frame latency" in d.sentence
    # GPU is still judged, and unknown with its reason, beside the failure.
    gpu = next(c for c in d.criteria if c.name == "gpu")
    assert gpu.status.value == "unknown" and gpu.settle == "run on a GPU host: scripts/gpu-run.sh"


def test_inconclusive_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Inference p95 22 ms < 30, but the comparison has too little data to judge it.
    criteria = GO + "  inference_latency: {}\n"
    code, out, d, _ = _decide(tmp_path, criteria, capsys, baseline=OLD, candidate=GPU_TS)
    assert code == 4 and d.decision == Outcome.INCONCLUSIVE
    assert "UNKNOWN  inference latency" in out and "->" in out


def test_from_reuses_every_file_and_links_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = sweep_doc(
        [level(8, "pass"), level(16, "pass"), level(32, "pass"), level(64, "pass")],
        [level(8, "pass"), level(16, "pass"), level(32, "fail")],
    )
    criteria = (
        "  throughput: {}\n  frame_latency: {}\n  gpu: {}\n"
        "  kill: {gates: [errors.total == 0, faults.outage.outage_latency_ms.p99 <= 250]}\n"
        "  reload: {gates: [frames.lost == 0]}\n  rollout: {}\n"
    )
    code, _out, d, folder = _decide(
        tmp_path, criteria, capsys, baseline=OLD, candidate=GPU_TS, sweep=sweep
    )
    by = {e.source: e for e in d.evidence}
    assert {k: e.origin for k, e in by.items()} == {
        "runs": "reused",
        "capacity": "reused",
        "fallback_kill": "reused",
        "hot_reload": "reused",
        "rollout": "missing",  # not in --from, and --no-run
    }
    for c in d.criteria:
        for p in c.evidence:  # relative to decision.json, and there
            assert (folder / p).is_file(), (c.name, p)
    status = {c.name: c.status.value for c in d.criteria}
    assert status == {
        "throughput": "not_met",  # 16 sessions vs >= 64
        "frame_latency": "met",
        "gpu": "met",
        "kill": "met",
        "reload": "met",
        "rollout": "unknown",
    }
    assert code == 1
    rollout = next(c for c in d.criteria if c.name == "rollout")
    assert rollout.settle and "--no-run" in rollout.settle


def test_library_decide_is_the_same_decision(tmp_path: Path) -> None:
    src = write_from_dir(tmp_path / "from", baseline=OLD, candidate=GPU_TS)
    path = decision_file(tmp_path / "decision.yaml", GO)
    outcome = harness.decide(path, out=tmp_path / "o", from_dir=src, run_missing=False)
    assert outcome.exit_code == 0
    on_disk = json.loads(outcome.json_path.read_text(encoding="utf-8"))
    assert on_disk == json.loads(outcome.decision.to_json())  # the object is the file
    assert on_disk["schema"] == "signflow.decision" and on_disk["schema_version"] == 1


def test_invalid_decision_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = decision_file(tmp_path / "decision.yaml", "  latency: {}\n")
    assert main(["decide", str(path), "--no-run", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "unknown key 'criteria.latency'" in err


def test_a_missing_from_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = decision_file(tmp_path / "decision.yaml", GO)
    code = main(["decide", str(path), "--from", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2 and "no such folder" in capsys.readouterr().err


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["decide", "--help"])
    text = capsys.readouterr().out
    for line in ("0    go", "1    no-go", "4    inconclusive", "--from", "--no-run"):
        assert line in text


def test_validate_checks_a_decision_file_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness validate` on a decision file (scenarios/migration.yaml is one) validates it with
    everything it names, instead of refusing it as a scenario without a workload."""
    shipped = Path(__file__).resolve().parents[3] / "scenarios" / "migration.yaml"
    assert main(["validate", str(shipped)]) == 0
    assert "OK - decision file 'migration'" in capsys.readouterr().out
    bad = decision_file(tmp_path / "decision.yaml", "  latency: {}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid decision file" in err and "unknown key 'criteria.latency'" in err
