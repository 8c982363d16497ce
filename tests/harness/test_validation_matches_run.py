"""Validation that matches the run (issue 20 item 8, and the validate side of item 5).

Each case is one a new user met: a message blaming an unchanged file's line for an option's
doing, a scenario that validates although part of it can never run, an error without the
name of the variable that caused it, a unit glued to a gate's number, a fraction for a percent,
and help texts that list a command's options wrongly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.cli import _parser, main, shorthand_overrides
from harness.scenario import ScenarioError, load_scenario
from harness.scenario.gates import GateSyntaxError, parse_gate
from harness.scenario.loader import COLLECTOR_METRICS

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "scenarios" / "baseline-quick.yaml"
ARRIVALS = (
    "workload:\n  arrivals:\n"
    "    stages: [{duration_s: 10, target: 2}, {duration_s: 15, target: 0}]\n"
    "    session_length: {distribution: fixed, seconds: 3}\n  duration_s: 20\n"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\n" + text)
    return path


def _error(path: Path, *overrides: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, list(overrides))
    return str(info.value)


def test_an_option_that_creates_a_block_is_blamed_not_a_file_line() -> None:
    # --arrival-rate on a fixed-sessions scenario: workload.arrivals is not in the file.
    (overrides,) = [shorthand_overrides(argparse.Namespace(arrival_rate="2"), {})]
    msg = _error(QUICK, *overrides)
    assert "(--set workload.arrivals: not in the file, an override created it)" in msg
    assert "baseline-quick.yaml:" not in msg  # no line of the unchanged file is blamed


def test_stages_longer_than_the_run_are_refused(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, ARRIVALS))
    assert "workload.arrivals.stages" in msg
    assert "the stages last 25 s, past workload.duration_s (20 s)" in msg
    closed = _write(tmp_path, "workload:\n  stages: [{duration_s: 30, target: 2}]\n"
                    "  duration_s: 20\n")  # fmt: skip
    assert "the last 10 s would never run" in _error(closed)
    assert load_scenario(_write(tmp_path, ARRIVALS.replace("duration_s: 20", "duration_s: 25")))


def test_abort_on_fail_that_could_never_check_is_refused(tmp_path: Path) -> None:
    text = ("workload: {sessions: 1, duration_s: 10, warmup_s: 2}\n"
            "abort_on_fail: {gates: ['errors.total == 0'], min_measured_s: 8}\n")  # fmt: skip
    msg = _error(_write(tmp_path, text))
    assert "abort_on_fail.min_measured_s (8 s) is not shorter than the measured time" in msg
    assert load_scenario(_write(tmp_path, text.replace("min_measured_s: 8", "min_measured_s: 7")))


@pytest.mark.parametrize(
    "gate",
    ["cpu.backend.mean_percent < 90", "torchserve.queue_ms_mean < 50", "gpu.util_mean < 99",
     "memory.backend.rss_mb_per_h < 20"],
)  # fmt: skip
def test_abort_on_fail_gates_on_collector_metrics_are_refused_with_the_reason(
    tmp_path: Path, gate: str
) -> None:
    """Issue 20 item 5: the check while the run goes has no collector figures; such a gate was
    null there and stopped every run at its first check, while the same gate passed at the end.
    The same gate under ``gates`` stays accepted."""
    text = f"workload: {{sessions: 1, duration_s: 30}}\nabort_on_fail: {{gates: ['{gate}']}}\n"
    msg = _error(_write(tmp_path, text))
    assert "the check while the run goes cannot see it" in msg and "abort_on_fail.gates[0]" in msg
    assert load_scenario(_write(tmp_path, f"workload: {{sessions: 1, duration_s: 30}}\n"
                                          f"gates: ['{gate}']\n"))  # fmt: skip
    assert gate.split()[0].startswith(COLLECTOR_METRICS)


def test_a_bad_environment_value_names_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"HARNESS_SESSIONS \(environment\)='abc': not a whole"):
        shorthand_overrides(argparse.Namespace(), {"HARNESS_SESSIONS": "abc"})
    with pytest.raises(ValueError, match=r"--fps='fast': not a number"):
        shorthand_overrides(argparse.Namespace(fps="fast"), {})
    with pytest.raises(ValueError, match=r"HARNESS_DURATION \(environment\)='0': not a dur"):
        shorthand_overrides(argparse.Namespace(), {"HARNESS_DURATION": "0"})


@pytest.mark.parametrize(
    ("expr", "bare"),
    [("frame.latency_ms.p99 < 30ms", "frame.latency_ms.p99 < 30"),
     ("stall.max_ms <= 2.5 ms", "stall.max_ms <= 2.5"),
     ("served_by.local < 5%", "served_by.local < 5")],
)  # fmt: skip
def test_a_unit_in_a_gate_gets_its_own_message(expr: str, bare: str) -> None:
    with pytest.raises(GateSyntaxError) as info:
        parse_gate(expr)
    assert f"write {bare!r}" in str(info.value)
    assert "the metric's name gives it" in str(info.value)
    assert parse_gate(bare).threshold is not None


def test_rollout_steps_given_as_fractions_get_the_percent_hint() -> None:
    msg = _error(QUICK, "rollout={steps: [0.1, 0.5], hold_s: 2}")
    assert "steps are percent: write 10 for 10 %" in msg
    assert "write 50 for 50 %" in msg


def test_help_lists_every_command_and_only_the_variables_a_command_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert parser.description is not None
    for name in commands.choices:
        assert name in parser.description, name  # `worker` was missing
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    assert "HARNESS_OUT" not in capsys.readouterr().out  # validate writes nothing
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "HARNESS_OUT" in capsys.readouterr().out
