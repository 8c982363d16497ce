"""The CLI's exit codes and outputs (real subprocesses of `python -m harness`)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_results import make_doc

from harness.cli import main

REPO = Path(__file__).resolve().parents[2]


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_invalid_scenario_exits_2_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworkload:\n  sessions: 2\n  duration_s: 5\n  fsp: 30\n")
    for command in ("validate", "run"):
        proc = harness(command, str(bad), "--out", str(tmp_path / "out")) if command == "run" \
            else harness(command, str(bad))  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "bad.yaml:5:" in proc.stderr and "did you mean 'fps'" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_validate_ok_and_set(tmp_path: Path) -> None:
    proc = harness("validate", str(REPO / "scenarios" / "baseline.yaml"),
                   "--set", "workload.sessions=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3 sessions" in proc.stdout


def test_compare_table_and_fail_on_worse(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    make_doc(tmp_path / "a")
    new = tmp_path / "a" / "results.json"
    base_doc = json.loads(new.read_text())
    doc = json.loads(new.read_text())
    # Errors in every measured window of the new run (series and summary agree), none before.
    warm = doc["series"]["warmup"]
    doc["series"]["errors"] = [0 if w else 5 for w in warm]
    doc["summary"]["errors"]["total"] = 5 * warm.count(False)
    new.write_text(json.dumps(doc))
    base = tmp_path / "base.json"
    base.write_text(json.dumps(base_doc))
    proc = harness("compare", str(new), str(base))
    assert proc.returncode == 0, proc.stderr
    assert "errors.per_s" in proc.stdout and "WORSE" in proc.stdout
    assert harness("compare", str(new), str(base), "--fail-on-worse").returncode == 1
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{}")
    proc = harness("compare", str(bogus), str(base))
    assert proc.returncode == 2 and "bogus.json" in proc.stderr


def test_compare_against_a_run_that_never_measured_exits_2(tmp_path: Path) -> None:
    """Issue 12 item 5: no table of dashes and exit 0, but why it cannot compare, exit 2."""
    (tmp_path / "a").mkdir()
    make_doc(tmp_path / "a")
    new = tmp_path / "a" / "results.json"
    empty = json.loads(new.read_text())
    # What the runner writes for a run that failed before measuring: a summary of nulls.
    from harness.runner.execute import _empty_summary

    empty.update(summary=_empty_summary(), series={"t": []}, histograms={}, verdict="error",
                 error="stack failed", run_id="never")  # fmt: skip
    base = tmp_path / "never.json"
    base.write_text(json.dumps(empty))
    proc = harness("compare", str(new), str(base))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot compare: the baseline 'never': it measured no answered frames" in proc.stdout


# --------------------------------------------------------------------------- issue 11: 16-19


def test_version_and_exit_codes_in_help() -> None:
    proc = harness("--version")
    assert proc.returncode == 0 and re.fullmatch(r"harness \d+\.\d+\.\d+\S*\n", proc.stdout)
    for argv in (["--help"], ["run", "--help"], ["validate", "--help"]):
        out = harness(*argv).stdout
        assert "exit codes:" in out, argv
        for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
            assert f"\n  {code}" in out, (argv, code)


def test_validate_counts_in_singular_and_plural() -> None:
    from harness.scenario import load_scenario

    hot = REPO / "scenarios" / "hot-reload.yaml"
    gates = len(load_scenario(hot).gates)
    out = harness("validate", str(hot)).stdout
    assert gates > 1 and "1 event," in out and f"{gates} gates" in out
    out = harness("validate", str(REPO / "scenarios" / "baseline-quick.yaml"),
                  "--set", "workload.sessions=1").stdout  # fmt: skip
    assert "1 session x" in out and "0 events" in out and out.rstrip().endswith("1 gate")


def test_validate_prints_warnings_and_checks_the_baseline_file(tmp_path: Path) -> None:
    scenario = str(REPO / "scenarios" / "baseline-quick.yaml")
    proc = harness("validate", scenario, "--set", "stack.backend.env.USE_TORCHSEVRE=true")
    assert proc.returncode == 0
    assert "warning:" in proc.stderr and "did you mean USE_TORCHSERVE" in proc.stderr
    bad = tmp_path / "base.json"
    bad.write_text('{"schema": "other"}')
    proc = harness("validate", scenario, "--baseline", str(bad))
    assert proc.returncode == 2 and "invalid baseline" in proc.stderr and "base.json" in proc.stderr


def test_run_dir_holding_a_run_is_refused_before_starting(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}")
    proc = harness("run", str(REPO / "scenarios" / "baseline-quick.yaml"),
                   "--run-dir", str(tmp_path))  # fmt: skip
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    proc = harness("run", "x.yaml", "--run-dir", "a", "--out", "b")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def _rest_gaps(path: Path) -> list[int]:
    """Lengths of the rest runs between two signs of a JSONL trace."""
    truth = [json.loads(line).get("truth") for line in path.read_text().splitlines()]
    gaps, run, seen_sign = [], 0, False
    for label in truth:
        if label is None:
            run += 1
            continue
        if seen_sign and run:
            gaps.append(run)
        seen_sign, run = True, 0
    return gaps


def test_synth_uses_the_scenario_trace_defaults(tmp_path: Path) -> None:
    from harness.load import synthetic_trace
    from harness.scenario.models import SyntheticTrace

    out = tmp_path / "t.jsonl"
    proc = harness("synth", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    d = SyntheticTrace()
    assert (
        f"{d.signs} signs, seed {d.seed}, rest {d.rest_frames[0]}-{d.rest_frames[1]}" in proc.stdout
    )
    # The same frames as the default workload.trace.synthetic: one set of defaults.
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert frames == synthetic_trace(d.seed, d.signs, d.sign_mix, d.rest_frames)
    # Every gap is longer than the backend's 10 rest frames that end a sign: no merged signs.
    gaps = _rest_gaps(out)
    assert len(gaps) == d.signs - 1 and min(gaps) > 10, gaps


def test_synth_options_and_bad_values(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    proc = harness("synth", "--out", str(out), "--signs", "3", "--seed", "7",
                   "--rest-frames", "20", "22", "--sign-mix", "hello", "thanks")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    labels = {json.loads(line).get("truth") for line in out.read_text().splitlines()}
    assert labels - {None} <= {"hello", "thanks"}
    assert all(20 <= g <= 22 for g in _rest_gaps(out))
    for bad, says in [
        (["--rest-frames", "9", "3"], "rest_frames must be [lo, hi]"),
        (["--signs", "0"], "--signs: Input should be greater than or equal to 1"),
        (["--sign-mix", "helo"], "unknown sign(s) ['helo']"),
    ]:
        proc = harness("synth", "--out", str(out), *bad)
        assert proc.returncode == 2 and says in proc.stderr, (bad, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_main_in_process_leaves_the_library_logger_as_it_found_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While a command runs, library messages go to stderr; after ``main()`` returns, a library
    call with no progress callback must not print on its caller's stderr (CI stop 16: a run
    after an in-process ``harness compare`` printed "measuring the running stack")."""
    log = logging.getLogger("harness")
    handlers, level = list(log.handlers), log.level
    assert main(["validate", str(REPO / "scenarios" / "quickstart.yaml")]) == 0
    assert log.handlers == handlers and log.level == level
    capsys.readouterr()
    logging.getLogger("harness.api").info("a library message with nobody listening")
    assert capsys.readouterr().err == ""


def test_console_says_what_the_comparison_says(tmp_path: Path) -> None:
    """Issue 18 item 2: a run whose gates passed while its comparison found metrics worse prints
    the report banner's sentence ("PASSED: ... but N compared metrics worse") and the
    comparison's headline beside the verdict, not a bare "verdict PASSED"."""
    import io

    from harness.analysis.compare import Comparison, MetricComparison, Verdict, headline
    from harness.cli import _print_outcome
    from harness.report.render import _verdict_view
    from harness.results.model import results_of

    doc, _ = make_doc(tmp_path)
    doc["verdict"] = "passed"
    for gate in doc["gates"]:
        gate.update(passed=True, reason=None)
    rows = [
        MetricComparison(metric=m, run=20.4, baseline=4.6, change=c, verdict=Verdict.WORSE,
                         p_value=0.0005, better_when="lower", sample_unit="window")
        for m, c in (("inference.latency_ms.p50", 3.4), ("inference.latency_ms.p95", 2.9),
                     ("frame.latency_ms.p99", 2.9), ("frame.latency_ms.p95", 1.1))
    ]  # fmt: skip
    cmp = Comparison(baseline_run_id="20261207T000000Z-baseline-quick", metrics=rows)
    cmp.headline = headline(cmp)
    doc["comparison"] = cmp.model_dump(mode="json")
    out = io.StringIO()
    _print_outcome(doc, 0, out)
    first, second = out.getvalue().splitlines()[:2]
    n = len(doc["gates"])
    assert f"verdict PASSED: all {n} gates passed, but 4 compared metrics worse (exit 0)" in first
    assert second.startswith("  compared with 20261207T000000Z-baseline-quick: WORSE:")
    assert "inference.latency_ms.p50 +340.0%" in second
    # The report's banner is the same sentence (one function, harness.results.verdict).
    view = _verdict_view(results_of(doc), [], cmp)
    assert view["headline"] in first and second.strip() in view["reasons"]
