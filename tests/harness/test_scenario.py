"""Scenario files: validation errors name file:line:field, typos get suggestions, --set works."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.scenario import ScenarioError, load_scenario

GOOD = """\
name: demo
stack:
  use_torchserve: true
  torchserve:
    model_version: "1.0"
workload:
  sessions: 4
  duration_s: 20
  warmup_s: 2
timeline:
  - at_s: 5
    action: kill_torchserve
  - at_s: 10
    action: start_torchserve
gates:
  - frame.latency_ms.p95 < 30
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides)
    return str(info.value)


def test_good_scenario_fills_defaults(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.workload.fps == 30
    assert sc.stack.torchserve.batch_size == 16
    assert [e.action for e in sc.timeline] == ["kill_torchserve", "start_torchserve"]
    assert sc.workload.trace.synthetic is not None


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    text = GOOD.replace("  sessions: 4", "  sesions: 4\n  sessions: 4")
    msg = error_of(write(tmp_path, text))
    assert "s.yaml:7:" in msg
    assert "workload.sesions" in msg
    assert "did you mean 'sessions'" in msg


def test_nested_typo_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace('    model_version: "1.0"', '    model_verison: "1.0"')
    msg = error_of(write(tmp_path, text))
    assert "s.yaml:5:" in msg and "did you mean 'model_version'" in msg


def test_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("sessions: 4", "sessions: four")))
    assert "s.yaml:7:" in msg
    assert "workload.sessions" in msg and "'four'" in msg


def test_missing_required_field(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("  duration_s: 20\n", "")))
    assert "missing required field 'workload.duration_s'" in msg
    assert "s.yaml:6:" in msg  # the workload mapping's line


def test_event_beyond_duration(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("at_s: 10", "at_s: 25")))
    assert "s.yaml:13:" in msg and "timeline[1].at_s" in msg and "beyond" in msg


def test_start_without_kill(tmp_path: Path) -> None:
    reload = "    action: reload_model\n    version: '2.0'"
    text = GOOD.replace("    action: kill_torchserve", reload)
    msg = error_of(write(tmp_path, text))
    assert "start_torchserve without a prior kill_torchserve" in msg
    assert "s.yaml:15:" in msg


def test_kill_without_torchserve(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("use_torchserve: true", "use_torchserve: false")))
    assert "s.yaml:12:" in msg and "use_torchserve is false" in msg


def test_reload_to_loaded_version(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - at_s: 5\n    action: kill_torchserve\n  - at_s: 10\n    action: start_torchserve\n",
        "  - {at_s: 5, action: reload_model, version: '1.0'}\n",
    )
    msg = error_of(write(tmp_path, text))
    assert "already loaded" in msg and "s.yaml:11:" in msg


def test_negative_time_and_rollout_out_of_range(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("at_s: 5", "at_s: -1")))
    assert "s.yaml:11:" in msg and "timeline[0].at_s" in msg
    text = GOOD.replace(
        "  - at_s: 10\n    action: start_torchserve\n",
        "  - at_s: 10\n    action: start_torchserve\n"
        "  - {at_s: 12, action: set_rollout, percent: 150}\n",
    )
    msg = error_of(write(tmp_path, text))
    assert "s.yaml:15:" in msg and "timeline[2].percent" in msg


def test_replicas_with_token_auth_on_refused_at_the_field(tmp_path: Path) -> None:
    # Passed validate (and a sweep's --dry-run) before and only failed at stack start (exit 3).
    text = GOOD.replace(
        "  use_torchserve: true\n", "  use_torchserve: true\n  torchserve_replicas: 2\n"
    )
    path = write(tmp_path, text)
    msg = error_of(path)
    assert (
        f"{path}:4: field 'stack.torchserve_replicas': 2 replicas need "
        "stack.torchserve.token_auth: false" in msg
    )
    # Token auth off, or replicas a stack never starts (local without TorchServe): valid.
    assert load_scenario(path, ["stack.torchserve.token_auth=false"]).stack.torchserve_replicas == 2
    no_ts = text.replace("use_torchserve: true", "use_torchserve: false").split("timeline:")[0]
    assert load_scenario(write(tmp_path, no_ts, "n.yaml")).stack.torchserve_replicas == 2
    # The compose stack starts them whatever use_torchserve says.
    msg = error_of(
        write(tmp_path, no_ts.replace("stack:\n", "stack:\n  driver: compose\n"), "c.yaml")
    )
    assert "c.yaml:5: field 'stack.torchserve_replicas': 2 replicas need" in msg


def test_external_stack_cannot_kill_nor_reload_without_management_url(tmp_path: Path) -> None:
    text = GOOD.replace(
        "stack:\n",
        "stack:\n  driver: external\n  external: {ws_url: 'ws://127.0.0.1:1/x', "
        "http_url: 'http://127.0.0.1:1'}\n",
    )
    msg = error_of(write(tmp_path, text))
    assert "not possible on an external stack" in msg
    text2 = text.replace(
        "  - at_s: 5\n    action: kill_torchserve\n  - at_s: 10\n    action: start_torchserve\n",
        "  - {at_s: 5, action: reload_model, version: '2.0'}\n",
    )
    assert "torchserve_management_url" in error_of(write(tmp_path, text2))


def test_gates_checked_up_front(tmp_path: Path) -> None:
    typo = GOOD.replace("frame.latency_ms.p95 < 30", "frame.latncy_ms.p95 < 30")
    msg = error_of(write(tmp_path, typo))
    assert "s.yaml:16:" in msg and "did you mean 'frame.latency_ms.p95'" in msg
    msg = error_of(write(tmp_path, GOOD.replace("frame.latency_ms.p95 < 30", "p95 is low")))
    assert "s.yaml:16:" in msg and "not a gate" in msg


def test_relative_gate_needs_a_baseline(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("< 30", "<= baseline * 1.10"))
    assert "relative to a baseline" in error_of(path)
    # A baseline results file given on the command line makes it valid.
    assert load_scenario(path, has_external_baseline=True).gates


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    sc = load_scenario(path, ["workload.sessions=16", "stack.torchserve.token_auth=false",
                              "workload.trace.synthetic.sign_mix=[hello, thanks]"])  # fmt: skip
    assert sc.workload.sessions == 16
    assert sc.stack.torchserve.token_auth is False
    assert sc.workload.trace.synthetic.sign_mix == ["hello", "thanks"]
    msg = error_of(path, "workload.sessions=many")
    assert "--set workload.sessions" in msg and "workload.sessions" in msg
    assert "did you mean 'sessions'" in error_of(path, "workload.sesions=3")
    with pytest.raises(ScenarioError, match=r"key\.path=value"):
        load_scenario(path, ["workload.sessions"])


def test_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "t.jsonl").write_text('{"hands": null}\n')
    (tmp_path / "base.yaml").write_text(GOOD)
    text = (
        GOOD.replace("  warmup_s: 2\n", "  warmup_s: 2\n  trace: {file: traces/t.jsonl}\n")
        + "baseline: {scenario: base.yaml}\n"
    )
    sc = load_scenario(write(tmp_path, text))
    assert sc.workload.trace.file == str((tmp_path / "traces" / "t.jsonl").resolve())
    assert sc.baseline is not None
    assert sc.baseline.scenario == str((tmp_path / "base.yaml").resolve())
    msg = error_of(write(tmp_path, text.replace("t.jsonl", "missing.jsonl")))
    assert "workload.trace.file" in msg and "no such file" in msg and "s.yaml:10:" in msg


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("  sessions: 4", "  sessions: [4")))
    assert "s.yaml:" in msg and "invalid YAML" in msg


def test_shipped_scenarios_are_valid() -> None:
    """Every YAML file in scenarios/ loads: a decision file (``criteria:``, harness decide)
    through the decision loader, which checks every scenario and sweep it names, the rest as
    scenarios."""
    from harness.decision import is_decision_file, load_decision

    root = Path(__file__).resolve().parents[2] / "scenarios"
    files = sorted(root.glob("*.yaml"))
    assert files, "no shipped scenarios"
    decisions = 0
    for path in files:
        if is_decision_file(path):
            load_decision(path)
            decisions += 1
        else:
            load_scenario(path)
    assert decisions >= 1, "scenarios/migration.yaml: the shipped decision file is missing"
