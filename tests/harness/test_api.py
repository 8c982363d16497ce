"""The public Python API (issue 12 item 3): what ``import harness`` exports, and one run
through it against a real (tiny) backend on loopback, external driver."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_builders import served_port

import harness
from harness.runner.progress import ProgressEvent

HERE = Path(__file__).resolve().parent

PUBLIC = {
    "BaselineFailed", "ExitCode", "Message", "ProgressCallback", "ProgressEvent", "RunFinished",
    "RepeatedOutcome", "RunOutcome", "RunStarting", "Scenario", "ScenarioError", "Stack",
    "StackError", "Tick", "compare", "decide", "load_scenario", "open_stack", "run", "run_repeated",
}  # fmt: skip


def test_all_is_the_public_api() -> None:
    # As httpx guards its namespace: a name added or removed is a deliberate API change.
    assert set(harness.__all__) == PUBLIC
    assert sorted(harness.__all__) == harness.__all__
    for name in harness.__all__:
        assert getattr(harness, name) is not None
    public_attrs = {
        name
        for name, value in vars(harness).items()
        if not name.startswith("_") and type(value).__name__ != "module"
    }
    assert public_attrs == PUBLIC, "exported without __all__ (or listed but missing)"


def test_exit_codes_are_one_int_enum() -> None:
    code = harness.ExitCode
    assert [int(c) for c in code] == [0, 1, 2, 3, 4, 129, 130, 143]
    assert code.for_signal(signal.SIGTERM) is code.TERMINATED
    assert code.for_signal(signal.SIGINT) is code.INTERRUPTED
    assert code.HANGUP.interrupted and not code.INFRASTRUCTURE.interrupted


@pytest.fixture
def backend_port() -> Iterator[int]:
    with served_port(HERE / "fake_backend.py") as port:
        yield port


def _scenario_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "ext.yaml"
    path.write_text(
        "name: ext\n"
        "stack:\n  driver: external\n  external:\n"
        f"    ws_url: ws://127.0.0.1:{port}/api/v1/translate/stream\n"
        f"    http_url: http://127.0.0.1:{port}\n"
        "workload: {sessions: 2, duration_s: 3, warmup_s: 1}\n"
        "gates: ['errors.total == 0', 'frame.latency_ms.p50 < 0.001']\n"
        "report: {enabled: false}\n"
    )
    return path


@pytest.mark.slow
def test_run_on_an_entered_stack_reports_through_events_only(
    tmp_path: Path, backend_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = harness.load_scenario(_scenario_file(tmp_path, backend_port), ["workload.fps=10"])
    events: list[ProgressEvent] = []
    with harness.open_stack(scenario, tmp_path / "stack") as stack:
        first = harness.run(scenario, out=tmp_path / "out", on_progress=events.append, stack=stack)
        # The same running stack again, compared with the first run (the sweep's pattern).
        second = harness.run(scenario, out=tmp_path / "out", baseline=first, stack=stack)
    # The impossible p50 gate fails (exit 1) unless the generator was INVALID (exit 2).
    for outcome in (first, second):
        expected = 2 if outcome.verdict == "invalid" else 1
        assert outcome.exit_code == expected and isinstance(outcome.exit_code, harness.ExitCode)
        assert outcome.results_path.is_file()
        assert outcome.results["scenario"]["workload"]["fps"] == 10
    assert first.run_dir != second.run_dir
    assert second.results["comparison"]["baseline_run_id"] == first.results["run_id"]
    assert first.baseline is None
    # Library code never prints: everything came as events.
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    kinds = {type(e).__name__ for e in events}
    assert {"RunStarting", "Tick", "Message"} <= kinds
    assert all(e.run == "ext" for e in events)


@pytest.mark.slow
def test_without_a_listener_messages_go_to_logging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A scenario whose stack cannot start (nothing listens; the external driver waits 10 s):
    # the infrastructure failure arrives as a log record, and the code is INFRASTRUCTURE.
    from harness.api import _read_baseline

    fixture = HERE.parents[1] / "tests/report/fixtures/recorded-quickstart.results.json"
    assert _read_baseline(fixture)["schema"] == "signflow-harness/results"
    bad = tmp_path / "dead.yaml"
    bad.write_text(
        "name: dead\nstack:\n  driver: external\n  external:\n"
        "    ws_url: ws://127.0.0.1:9/ws\n    http_url: http://127.0.0.1:9\n"
        "workload: {sessions: 1, duration_s: 2, warmup_s: 0}\nreport: {enabled: false}\n"
    )
    with caplog.at_level(logging.INFO, logger="harness"):
        outcome = harness.run(bad, out=tmp_path / "out")
    assert outcome.exit_code is harness.ExitCode.INFRASTRUCTURE
    assert outcome.verdict == "error"
    assert any("infrastructure failure" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_repeat_interleaves_runs_and_compares_them_as_samples(
    tmp_path: Path, backend_port: int
) -> None:
    base = _scenario_file(tmp_path, backend_port)
    text = base.read_text().replace("'frame.latency_ms.p50 < 0.001'", "'errors.total >= 0'")
    base.write_text(text)
    cand = tmp_path / "cand.yaml"
    cand.write_text(text.replace("name: ext", "name: cand") + "baseline: {scenario: ext.yaml}\n")
    finished: list[str] = []

    def note(event: ProgressEvent) -> None:
        if isinstance(event, harness.RunFinished):
            finished.append(event.run)

    outcome = harness.run_repeated(cand, 2, out=tmp_path / "out", on_progress=note)
    # ABAB: baseline first, each candidate compared with the baseline run just before it.
    assert finished == ["baseline:ext", "cand", "baseline:ext", "cand"]
    for b, c in zip(outcome.baselines, outcome.candidates, strict=True):
        assert c.results["comparison"]["baseline_run_id"] == b.results["run_id"]
        assert b.run_dir.parent == c.run_dir.parent == outcome.set_dir
    cmp = outcome.comparison
    assert cmp.runs == [2, 2] and cmp.usable
    # The set names all its runs (issue 20 item 1: it was headed with the first baseline run).
    assert cmp.baseline_run_id is None
    assert cmp.baseline_run_ids == [b.results["run_id"] for b in outcome.baselines]
    assert cmp.run_ids == [c.results["run_id"] for c in outcome.candidates]
    assert outcome.comparison_path.is_file()
    codes = {o.exit_code for o in (*outcome.candidates, *outcome.baselines)}
    assert outcome.exit_code == (2 if harness.ExitCode.INVALID in codes else 0)


@pytest.mark.slow
def test_overrides_follow_the_scenario_to_its_baseline_run(
    tmp_path: Path, backend_port: int
) -> None:
    """Issue 20 item 4: overrides given to load_scenario (the README's example) never reached
    the baseline scenario run, so a 1-session candidate was judged against a 2-session
    baseline; and the main run never sent RunFinished (a UI waiting for it hung)."""
    base = _scenario_file(tmp_path, backend_port)
    text = base.read_text().replace("'frame.latency_ms.p50 < 0.001'", "'errors.total >= 0'")
    base.write_text(text)
    cand = tmp_path / "cand.yaml"
    cand.write_text(text.replace("name: ext", "name: cand") + "baseline: {scenario: ext.yaml}\n")
    scenario = harness.load_scenario(cand, ["workload.sessions=1", "workload.duration_s=2.5"])
    events: list[ProgressEvent] = []
    outcome = harness.run(scenario, out=tmp_path / "out", on_progress=events.append)
    assert outcome.baseline is not None
    for doc in (outcome.results, outcome.baseline.results):
        assert doc["scenario"]["workload"]["sessions"] == 1
        assert doc["scenario"]["workload"]["duration_s"] == 2.5
    comparison = outcome.comparison
    assert comparison is not None and not comparison.workload_differs, comparison.warnings
    done = [e for e in events if isinstance(e, harness.RunFinished)]
    assert [e.run for e in done] == ["baseline:ext", "cand"] and done[-1].outcome == outcome


def test_unlike_workloads_get_no_verdicts_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20 item 4: a comparison of two workloads is stated, not judged."""
    from harness.cli import main

    fixtures = HERE.parents[1] / "tests/report/fixtures"
    hot, quick = (fixtures / f"recorded-{n}.results.json" for n in ("hot-reload", "quickstart"))
    refused = harness.compare(hot, quick)
    assert not refused.usable and refused.workload_differs
    assert refused.problem and "workloads differ" in refused.problem
    assert "sessions" in refused.problem and "allow_unlike_workloads" in refused.problem
    assert all(m.verdict in ("not judged",) for m in refused.metrics), refused.metrics
    asked = harness.compare(hot, quick, allow_unlike_workloads=True)
    assert asked.usable and any(m.p_value is not None for m in asked.metrics)
    assert main(["compare", str(hot), str(quick)]) == harness.ExitCode.INVALID
    assert "cannot compare: the workloads differ" in capsys.readouterr().out
    assert main(["compare", str(hot), str(quick), "--allow-unlike-workloads"]) == 0


def test_a_repeated_comparison_is_headed_with_all_its_runs() -> None:
    """Issue 20 item 1: the `--repeat` summary was headed with the first baseline run's id."""
    from harness.cli import _comparison_table

    cmp = {"baseline_run_id": None, "run_ids": ["c1", "c2"], "baseline_run_ids": ["b1", "b2"]}
    head = _comparison_table(cmp).splitlines()[0]
    assert head == "comparison of 2 runs (c1, c2) with 2 baseline runs (b1, b2):"
    one = {"baseline_run_id": "b1", "run_ids": ["c1"], "baseline_run_ids": ["b1"]}
    assert _comparison_table(one).splitlines()[0] == "comparison with baseline b1:"


def test_repeat_needs_a_baseline_scenario(tmp_path: Path) -> None:
    path = _scenario_file(tmp_path, 9)
    with pytest.raises(ValueError, match="needs a baseline scenario"):
        harness.run_repeated(path, 2, out=tmp_path / "out")
    with pytest.raises(ValueError, match="2 or more"):
        harness.run_repeated(path, 1, out=tmp_path / "out")


def test_readme_python_example_uses_the_public_api() -> None:
    # The README's five lines: they compile and name only what harness exports.
    import ast

    text = (HERE.parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 5
    tree = ast.parse(block)
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "harness"
    }
    assert used and used <= set(harness.__all__), used - set(harness.__all__)
    outcome_attrs = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "outcome"
    }
    fields = set(harness.RunOutcome.__dataclass_fields__)
    assert outcome_attrs <= fields | set(dir(harness.RunOutcome)), outcome_attrs
