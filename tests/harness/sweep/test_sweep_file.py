"""Sweep files: validated like scenarios, every error with file:line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.sweep import SweepError, load_sweep
from harness.sweep.loader import scenario_key

REPO = Path(__file__).resolve().parents[3]

GOOD = """\
name: t
base: {base}
space:
  grid:
    torchserve.batch_size: [1, 8]
    torchserve.max_batch_delay_ms: [5, 25]
load:
  search: {{start: 2, max: 16}}
constraints:
  - frame.latency_ms.p95 < 30
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SweepError) as info:
        load_sweep(_write(tmp_path, text))
    return str(info.value)


@pytest.mark.parametrize("name", ["batching.yaml", "capacity.yaml"])
def test_shipped_sweeps_are_valid(name: str) -> None:
    plan = load_sweep(REPO / "sweeps" / name)
    assert plan.configurations
    assert plan.estimate_s() <= plan.sweep.budget.max_minutes * 60


def test_shipped_batching_sweep_fits_six_minutes() -> None:
    plan = load_sweep(REPO / "sweeps" / "batching.yaml")
    assert plan.sweep.budget.max_minutes <= 6
    assert [c.label for c in plan.configurations] == [
        "batch_size=1, max_batch_delay_ms=5",
        "batch_size=1, max_batch_delay_ms=25",
        "batch_size=8, max_batch_delay_ms=5",
        "batch_size=8, max_batch_delay_ms=25",
    ]
    ts = plan.configurations[2].scenario.stack.torchserve
    assert (ts.batch_size, ts.max_batch_delay_ms) == (8, 5)
    # The constraints replace the base scenario's gates at run time; the set: keys apply.
    assert plan.configurations[0].scenario.workload.duration_s == 8


def test_grid_expands_in_file_order(tmp_path: Path) -> None:
    plan = load_sweep(_write(tmp_path, GOOD.format(base=REPO / "scenarios/torchserve.yaml")))
    assert [c.params for c in plan.configurations] == [
        {"torchserve.batch_size": 1, "torchserve.max_batch_delay_ms": 5},
        {"torchserve.batch_size": 1, "torchserve.max_batch_delay_ms": 25},
        {"torchserve.batch_size": 8, "torchserve.max_batch_delay_ms": 5},
        {"torchserve.batch_size": 8, "torchserve.max_batch_delay_ms": 25},
    ]
    assert [c.id for c in plan.configurations] == ["c01", "c02", "c03", "c04"]
    assert plan.configurations[0].scenario.workload.sessions == 2  # search.start
    assert plan.max_runs() == 4 * plan.sweep.load.search.max_runs()


def test_shorthand_keys() -> None:
    assert scenario_key("torchserve.batch_size") == "stack.torchserve.batch_size"
    assert scenario_key("torchserve_replicas") == "stack.torchserve_replicas"
    assert scenario_key("workload.fps") == "workload.fps"


def test_unknown_key_named_with_line_and_suggestion(tmp_path: Path) -> None:
    text = GOOD.format(base=REPO / "scenarios/torchserve.yaml") + "budgt: {max_runs: 3}\n"
    msg = _error(tmp_path, text)
    assert f"{tmp_path / 's.yaml'}:11: unknown key 'budgt'; did you mean 'budget'?" in msg


def test_every_problem_at_once_with_lines(tmp_path: Path) -> None:
    text = (
        "name: t\n"
        f"base: {REPO / 'scenarios/torchserve.yaml'}\n"
        "space:\n"
        "  grid:\n"
        "    torchserve.batch_sise: [1, 8]\n"  # line 5: typo in a scenario key
        "load:\n"
        "  search: {start: 2, max: 16}\n"
        "constraints:\n"
        "  - frame.latency_ms.p95 < 30\n"
        "  - frame.latncy_ms.p95 < 30\n"  # line 10: unknown metric
        "  - frame.latency_ms.p95 < baseline\n"  # line 11: relative
        "objective: {maximize: throughput.inference_per_s}\n"  # line 12
    )
    msg = _error(tmp_path, text)
    path = tmp_path / "s.yaml"
    assert (
        f"{path}:5: field 'space.grid.torchserve.batch_sise': 'torchserve.batch_sise' is not a "
        "scenario key; did you mean 'stack.torchserve.batch_size'?" in msg
    )
    assert f"{path}:10: field 'constraints[1]': unknown metric 'frame.latncy_ms.p95'" in msg
    assert f"{path}:11: field 'constraints[2]': a sweep constraint cannot be relative" in msg
    assert f"{path}:12: field 'objective': unknown metric 'throughput.inference_per_s'" in msg


def test_duplicate_key_refused_with_both_lines(tmp_path: Path) -> None:
    text = GOOD.format(base=REPO / "scenarios/torchserve.yaml") + "name: u\n"
    msg = _error(tmp_path, text)
    assert "s.yaml:11: duplicate key 'name' (first at line 1)" in msg


def test_hostile_yaml_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True)
    )
    msg = _error(tmp_path, bomb)
    assert "expands to more than" in msg


def test_configuration_that_is_no_valid_scenario(tmp_path: Path) -> None:
    text = GOOD.format(base=REPO / "scenarios/torchserve.yaml").replace("[1, 8]", "[1, 0]")
    msg = _error(tmp_path, text)
    assert f"{tmp_path / 's.yaml'}:4: configuration c03 (stack.torchserve.batch_size=0" in msg
    assert "field 'stack.torchserve.batch_size': Input should be greater than or equal to 1" in msg


def test_replicas_with_token_auth_on_refused_per_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The base has token auth on: the 2-replica point is refused up front, by --dry-run too,
    # naming its configuration and the field, not at its stack's start (exit 3).
    text = GOOD.format(base=REPO / "scenarios/torchserve.yaml").replace(
        "  grid:\n    torchserve.batch_size: [1, 8]\n    torchserve.max_batch_delay_ms: [5, 25]\n",
        "  grid:\n    torchserve_replicas: [1, 2]\n",
    )
    msg = _error(tmp_path, text)
    assert f"{tmp_path / 's.yaml'}:4: configuration c02 (stack.torchserve_replicas=2" in msg
    assert "field 'stack.torchserve_replicas': 2 replicas need" in msg
    assert "c01" not in msg
    assert main(["sweep", str(tmp_path / "s.yaml"), "--dry-run"]) == 2
    assert "2 replicas need stack.torchserve.token_auth: false" in capsys.readouterr().err
    off = ["--set", "stack.torchserve.token_auth=false"]
    assert main(["sweep", str(tmp_path / "s.yaml"), "--dry-run", *off]) == 0


def test_capacity_objective_needs_a_search(tmp_path: Path) -> None:
    text = GOOD.format(base=REPO / "scenarios/torchserve.yaml").replace(
        "  search: {start: 2, max: 16}", "  sessions: [2, 4]"
    )
    msg = _error(tmp_path, text)
    assert "objective 'maximize: capacity' needs 'load.search'" in msg


def test_missing_base_and_sessions_in_space(tmp_path: Path) -> None:
    text = (
        "name: t\nbase: nowhere.yaml\nspace:\n  points:\n    - {workload.sessions: 3}\n"
        "load: {sessions: [1]}\nobjective: {maximize: throughput.frames_per_s}\n"
    )
    msg = _error(tmp_path, text)
    field = "field 'space.points[0].workload.sessions'"
    assert f"s.yaml:5: {field}: 'workload.sessions' is set by the sweep" in msg
    text = text.replace("workload.sessions", "workload.fps")
    msg = _error(tmp_path, text)
    assert f"s.yaml:2: field 'base': no such scenario file {tmp_path / 'nowhere.yaml'}" in msg


def test_inline_base_errors_name_the_sweep_lines(tmp_path: Path) -> None:
    text = (
        "name: t\n"
        "base:\n"
        "  name: b\n"
        "  workload: {sessions: 1, duration_s: 2, fsp: 3}\n"  # line 4
        "space: {points: [{workload.fps: 10}]}\n"
        "load: {sessions: [1]}\n"
        "objective: {maximize: throughput.frames_per_s}\n"
    )
    msg = _error(tmp_path, text)
    assert f"{tmp_path / 's.yaml'}:4: unknown key 'workload.fsp'; did you mean 'fps'?" in msg


def test_cli_dry_run_and_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(REPO / "sweeps/batching.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep batching: 4 configurations x capacity search from 4 to 48 sessions" in out
    assert "estimated duration: at most 6.0 min" in out
    bad = _write(tmp_path, "name: t\n")
    assert main(["sweep", str(bad)]) == 2
    assert "missing required field 'base'" in capsys.readouterr().err
    # --set reaches the sweep (budget) and every configuration's scenario (workload).
    sets = ["--set", "budget.max_runs=3", "--set", "workload.duration_s=5"]
    assert main(["sweep", str(REPO / "sweeps/batching.yaml"), "--dry-run", *sets]) == 0
    out = capsys.readouterr().out
    assert "budget: 3 runs" in out and "each run 5 s" in out
