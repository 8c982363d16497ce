"""The live progress line and the one-off event lines (issue 10 item 9)."""

from __future__ import annotations

import io

from harness.load.generator import LiveStats
from harness.runner.progress import Message, PlainProgress, RunStarting, Tick, format_stats
from harness.runner.timeline import describe


def stats(**kw: object) -> LiveStats:
    base = {"elapsed": 4.0, "remaining": 8.0, "frames_per_s": 240.0, "p95_ms": 3.2, "errors": 0,
            "fallback_share": 1.0}  # fmt: skip
    return LiveStats(**{**base, **kw})  # type: ignore[arg-type]


def test_local_share_is_a_fallback_only_with_torchserve() -> None:
    with_ts = format_stats("fk", stats(), use_torchserve=True)
    assert with_ts.endswith("| fallback 100%")
    flag_off = format_stats("base", stats(), use_torchserve=False)
    assert "fallback" not in flag_off and flag_off.endswith("| served locally (no TorchServe)")


def test_no_rate_prints_a_dash_not_zero() -> None:
    line = format_stats("fk", stats(frames_per_s=None))
    assert "- frames/s" in line and " 0 frames/s" not in line
    assert "240 frames/s" in format_stats("fk", stats())


def test_plain_progress_prints_events_on_their_own_lines() -> None:
    out = io.StringIO()
    progress = PlainProgress(out, every_s=60)
    progress(RunStarting("fk", use_torchserve=False))
    progress(Tick("fk", stats()))
    progress(Tick("fk", stats()))  # within every_s: not printed
    progress(Message("fk", "t=10.0s TorchServe killed (took 0.1s)"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("served locally (no TorchServe)")
    assert lines[1] == "[fk] t=10.0s TorchServe killed (took 0.1s)"


def _record(action: str, ok: bool | None = True, **params: object) -> dict:
    return {"at_s": 10.0, "action": action, "params": params, "started_s": 10.02,
            "finished_s": 14.52, "ok": ok, "error": None if ok else "StackError: boom"}  # fmt: skip


def test_event_lines_say_what_happened_and_when() -> None:
    assert describe(_record("start_torchserve"), "started") == "t=10.0s starting TorchServe"
    ready = describe(_record("start_torchserve"), "finished")
    assert ready == "t=14.5s TorchServe READY again (took 4.5s)"
    # A kill is dated when it was sent: that is where the outage starts.
    killed = describe(_record("kill_torchserve"), "finished")
    assert killed == "t=10.0s TorchServe killed (took 4.5s)"
    done = describe(_record("reload_model", version="2.0"), "finished")
    assert done == "t=14.5s reload to 2.0 done (took 4.5s)"
    failed = describe(_record("reload_model", ok=False, version="2.0"), "finished")
    assert failed == "t=14.5s reload_model FAILED after 4.5s: StackError: boom"


def test_live_progress_prints_events_above_the_live_line() -> None:
    from rich.console import Console
    from rich.live import Live

    from harness.runner.progress import LiveProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    with Live("", console=console, auto_refresh=False) as live:
        progress = LiveProgress(live)
        progress(Tick("fk", stats()))
        progress(Message("fk", "t=24.3s TorchServe READY again (took 4.3s)"))
    text = out.getvalue()
    assert "[fk] t=24.3s TorchServe READY again (took 4.3s)" in text
    assert "fallback 100%" in text
