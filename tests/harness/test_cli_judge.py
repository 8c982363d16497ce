"""``harness judge``'s errors: each names what is wrong and exits with its code
(harness/exitcodes.py): a bad option 2, nothing answering at the URL 3, a real Prometheus
without the SignFlow series in the interval 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main, parse_time
from harness.exitcodes import ExitCode
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
