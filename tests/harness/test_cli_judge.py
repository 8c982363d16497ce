"""``harness judge``'s errors: each names what is wrong and exits with its code
(harness/exitcodes.py): a bad option 2, nothing answering at the URL 3, a real Prometheus
without the SignFlow series in the interval 2."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.analysis.judgement import ProductionJudgement
from harness.cli import main, parse_time
from harness.exitcodes import ExitCode
from harness.results.model import RolloutRecord
from harness.scenario import load_scenario
from harness.stack.procs import free_port
from harness.stack.prometheus import LocalPrometheus


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--prometheus", "http://127.0.0.1:9", "--since", "5x"], "--since: not a duration"),
        (["--prometheus", "http://127.0.0.1:9", "--since=-1h"], "--since: not a duration"),
        (["--prometheus", "ftp://host", "--since", "1h"], "--prometheus: 'ftp://host'"),
        (["--prometheus", "http://127.0.0.1:9", "--since", "1h", "--step", "0"], "--step"),
        (["--prometheus", "http://127.0.0.1:9", "--since", "1h", "--until", "noon"], "not a time"),
        (["--prometheus", "http://127.0.0.1:9"], "needs --since"),
    ],
)
def test_a_bad_option_is_named_and_exits_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["judge", *argv]) == ExitCode.INVALID
    assert words in capsys.readouterr().err


def test_a_scenario_without_a_rollout_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
    code = main(["judge", "--prometheus", "http://127.0.0.1:9", "--since", "1h",
                 "--scenario", str(scenario), "--out", str(tmp_path)])  # fmt: skip
    assert code == ExitCode.INVALID
    assert "no rollout block" in capsys.readouterr().err


def test_nothing_listening_exits_3_naming_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["judge", "--prometheus", url, "--since", "1h", "--out", str(tmp_path)])
    assert code == ExitCode.INFRASTRUCTURE
    err = capsys.readouterr().err
    assert "unreachable" in err and url in err


def test_a_password_in_the_url_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://watcher:s3cret-pw@127.0.0.1:{free_port()}"
    code = main(["judge", "--prometheus", url, "--since", "1h", "--out", str(tmp_path)])
    assert code == ExitCode.INFRASTRUCTURE
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "watcher:***@127.0.0.1" in err


def test_times_are_unix_seconds_or_iso() -> None:
    assert parse_time("1765157400") == 1765157400.0
    assert parse_time("2026-12-08T01:30:00Z") == parse_time("2026-12-08T01:30:00")
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="scripts/ensure_prometheus.sh")
def test_a_real_prometheus_without_signflow_series_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-tsdb"
    empty.mkdir()
    prom = LocalPrometheus(tmp_path / "serve", tmp_path / "serve")
    try:
        prom.start_stored(empty)
        assert prom.url is not None
        code = main(["judge", "--prometheus", prom.url, "--since", "10m", "--step", "5",
                     "--out", str(tmp_path / "out")])  # fmt: skip
    finally:
        prom.stop()
    assert code == ExitCode.INVALID
    err = capsys.readouterr().err
    assert "no signflow_rollout_percent series" in err and prom.url in err
    assert not (tmp_path / "out" / "judgement.json").exists()


DATA = Path(__file__).parent / "analysis" / "data" / "prometheus_canary_ranges.json"
CANARY = Path(__file__).resolve().parents[2] / "scenarios" / "canary.yaml"


@pytest.fixture(scope="module")
def recorded_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:  # type: ignore[type-arg]
    """A real Prometheus serving the series recorded from a real canary run (the range
    queries of tests/harness/analysis/data/prometheus_canary_ranges.json, backfilled into a
    TSDB block with promtool): (its URL, the recorded document)."""
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        pytest.skip("scripts/ensure_prometheus.sh (Debian's prometheus package)")
    doc = json.loads(DATA.read_text())
    lines: list[str] = []
    for r in doc["ranges"]:
        if r["series"]:
            lines.append(f"# TYPE {r['query']} unknown")
        for s in r["series"]:
            kept = sorted((k, v) for k, v in s["labels"].items() if k != "__name__")
            labels = ",".join(f'{k}="{v}"' for k, v in kept)
            lines += [
                f"{r['query']}{{{labels}}} {v} {t}" for t, v in zip(s["t"], s["v"], strict=True)
            ]
    tmp = tmp_path_factory.mktemp("recorded")
    (tmp / "series.om").write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "series.om", "tsdb"],
        cwd=tmp, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    prom = LocalPrometheus(tmp / "serve", tmp / "serve")
    try:
        prom.start_stored(tmp / "tsdb")
        assert prom.url is not None
        yield prom.url, doc
    finally:
        prom.stop()


def test_judge_over_a_real_prometheus_decides_as_the_run_did(
    recorded_prometheus: tuple[str, dict],  # type: ignore[type-arg]
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, doc = recorded_prometheus
    start, end = doc["ranges"][0]["start"], doc["ranges"][0]["end"]
    code = main(["judge", "--prometheus", url, "--since", f"{end - start:.3f}s",
                 "--until", f"{end:.3f}", "--step", "1", "--scenario", str(CANARY),
                 "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    j = ProductionJudgement.model_validate_json((tmp_path / "judgement.json").read_text())
    in_run = RolloutRecord.model_validate(doc["in_run_rollout"])
    assert [s.decision for s in j.rollout.steps] == [s.decision for s in in_run.steps]
    assert j.decision == "go" and j.rollout.outcome == "completed"
    assert j.source.prometheus_url == url and len(j.source.queries) == 6
    assert 30.0 in j.source.frame_buckets_ms
    page = (tmp_path / "judgement.html").read_text()
    assert 'data-decision="go"' in page and page.count('class="rollout-') == 3
    assert "COMPLETE after 3 looks" in out


def test_an_in_run_look_reads_the_cohorts_from_prometheus(
    recorded_prometheus: tuple[str, dict],  # type: ignore[type-arg]
) -> None:
    """rollout.judge.source: prometheus: judge_window over the first step's seconds on the
    real Prometheus decides it as the run did (advance), from the same buckets."""
    from harness.analysis.prometheus_judge import judge_window

    url, doc = recorded_prometheus
    sc = load_scenario(CANARY)
    assert sc.rollout is not None
    percent = next(r for r in doc["ranges"] if r["query"] == "signflow_rollout_percent")
    (gauge,) = percent["series"]
    set_at = next(t for t, v in zip(gauge["t"], gauge["v"], strict=True) if v == 10)
    ended = next(t for t, v in zip(gauge["t"], gauge["v"], strict=True) if v == 50)
    early = judge_window(url, (set_at + 1, set_at + 3), sc.rollout.judge, fps=30)
    assert early.decision == "continue"  # 2 s of a 10 % step: too little to decide
    look = judge_window(url, (set_at + 1, ended), sc.rollout.judge, fps=30)
    assert look.decision == "advance", look.reason
    assert look.figures.torchserve.sessions >= 2 and look.figures.local.inferences > 0


async def test_the_rollout_controller_judges_from_the_stacks_prometheus(
    recorded_prometheus: tuple[str, dict],  # type: ignore[type-arg]
) -> None:
    """``rollout.judge.source: prometheus`` through the in-run controller: its run clock
    mapped onto the wall clock, the step's seconds read from the (real, recorded) Prometheus;
    the first step advances as it did in the run."""
    import time
    from types import SimpleNamespace

    from harness.clock import RunClock
    from harness.runner.controller import RolloutController

    url, doc = recorded_prometheus
    sc = load_scenario(CANARY, ["rollout.judge.source=prometheus", "stack.prometheus.enabled=true"])
    assert sc.rollout is not None
    (gauge,) = next(r for r in doc["ranges"] if r["query"] == "signflow_rollout_percent")["series"]
    set_at = next(t for t, v in zip(gauge["t"], gauge["v"], strict=True) if v == 10)
    ended = next(t for t, v in zip(gauge["t"], gauge["v"], strict=True) if v == 50)
    clock = RunClock()
    t0_wall = set_at - 4.0  # the run clock's 0 on the wall clock: the step was set at t=4 s
    clock.start_at(time.perf_counter() - (time.time() - t0_wall))
    stack = SimpleNamespace(endpoints=SimpleNamespace(prometheus_url=url))
    gen = SimpleNamespace(config=SimpleNamespace(fps=30.0))
    controller = RolloutController(sc.rollout, stack, clock, gen, reply_timeout_s=5.0)
    verdict = await controller.judge({"set_s": 4.0}, ended - t0_wall)
    assert verdict["decision"] == "advance", verdict["reason"]
    assert verdict["window_s"] == pytest.approx([5.0, ended - t0_wall], abs=0.01)
    early = await controller.judge({"set_s": 4.0}, 7.0)
    assert early["decision"] == "continue"


@pytest.mark.browser
def test_judgement_page_in_a_real_browser(
    recorded_prometheus: tuple[str, dict],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    """judgement.html in headless Chromium, offline: the verdict first, one row per step, the
    bucket edges and the series read; nothing fetched (the graph links are links)."""
    import sys

    reports = Path(__file__).resolve().parents[1] / "report"
    sys.path.insert(0, str(reports))
    from html_inspect import inspect
    from report_chromium import find_chromium, load

    if find_chromium() is None:
        pytest.skip("headless Chromium not installed")
    url, doc = recorded_prometheus
    start, end = doc["ranges"][0]["start"], doc["ranges"][0]["end"]
    assert main(["judge", "--prometheus", url, "--since", f"{end - start:.3f}s",
                 "--until", f"{end:.3f}", "--step", "1", "--scenario", str(CANARY),
                 "--out", str(tmp_path / "j")]) == ExitCode.OK  # fmt: skip
    page = tmp_path / "j" / "judgement.html"
    facts = inspect(page.read_text(encoding="utf-8"))
    # the only remote references: the links to each series' graph on the Prometheus judged
    assert facts.th_without_scope == 0 and len(facts.remote_refs) == 6
    assert all(r.startswith(f"<a href={url}/graph?") for r in facts.remote_refs)
    shots = Path(__file__).resolve().parents[2] / "test-artifacts" / "judge" / "browser"
    run = load(page, shots, height=1800)
    assert run.remote_requests == []
    dom = inspect(run.dom)
    assert dom.verdict == "go"
    body = run.dom.split("<body", 1)[1]
    assert (
        body.index('id="verdict"') < body.index('id="rollout-table"') < body.index('id="queries"')
    )
    assert run.dom.count('class="rollout-advance"') == 2 and 'class="rollout-complete"' in run.dom
    assert "25.0, 30.0, 40.0" in run.dom  # the bucket edges around the 30 ms SLO
