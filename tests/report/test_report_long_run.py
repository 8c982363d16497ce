"""Long runs' reports (issue 23 item 4): per-second charts downsample to min/max envelopes.

An 8-hour run has 28,800 one-second windows; its charts are drawn from buckets
(``figures.buckets``) that keep each bucket's minimum and maximum, the report stays small,
says it is an envelope, and opens in a real browser. Short runs are untouched (the other report
tests pin their figures; the fixtures' reports are byte-identical to before).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from html_inspect import inspect
from matplotlib.axes import Axes
from report_cases import ARTIFACTS
from report_chromium import find_chromium, load

from harness.report import figures
from harness.report.render import build_report
from harness.results.model import Results

FIXTURE = Path(__file__).parent / "fixtures" / "recorded-baseline-quick.results.json"
EIGHT_HOURS = 8 * 3600
SPIKE_AT, SPIKE_MS = 23_047, 5_000.0  # above the warm-up's 2,310 ms
DIP_AT = 17_283
REPORT_BOUND = 2_000_000  # bytes: "a few MB" at most; measured ~0.4 MB


def _long(n: int, fixture: Path = FIXTURE) -> Results:
    """A recorded run's windows repeated to ``n`` windows, one p99 spike, one dip."""
    doc = json.loads(fixture.read_text(encoding="utf-8"))
    series = doc["series"]
    for key, values in series.items():
        if isinstance(values, list):
            body = values[2:-1]
            series[key] = (values[:2] + body * (n // len(body) + 1))[:n]
        elif isinstance(values, dict):
            series[key] = {
                k: (v[2:-1] * (n // max(1, len(v) - 3) + 1))[:n] for k, v in values.items()
            }
    series["t"] = [float(i) for i in range(n)]
    series["frame_p99_ms"][SPIKE_AT] = SPIKE_MS
    series["frames_per_s"][DIP_AT] = 0.0
    doc["summary"]["duration_s"] = float(n)
    return Results.model_validate(doc)


@pytest.fixture(scope="module")
def long_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long") / "eight-hours" / "report.html"
    return build_report(_long(EIGHT_HOURS), None, out)


def _per_bucket(v: np.ndarray, size: int, reduce: str) -> np.ndarray:
    rows = -(-v.size // size)
    padded = np.concatenate([v, np.full(rows * size - v.size, np.nan)]).reshape(rows, size)
    out: np.ndarray = getattr(np, reduce)(padded, axis=1)
    return out


def test_buckets_keep_each_buckets_min_and_max() -> None:
    rng = np.random.default_rng(7)
    n = 28_800
    t = np.arange(n, dtype=float)
    v = rng.gamma(2.0, 5.0, n)
    v[[5, 4_321, 28_799]] = [900.0, 1_500.0, 700.0]  # one-second spikes
    v[10_000] = -3.0  # and a dip
    v[60:120] = np.nan  # a gap of whole buckets
    b = figures.buckets(t, v)
    assert b is not None
    assert 2 * b.start.size <= figures.MAX_POINTS
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):  # all-NaN buckets
        hi, lo = _per_bucket(v, b.size, "nanmax"), _per_bucket(v, b.size, "nanmin")
    np.testing.assert_array_equal(b.hi, hi)
    np.testing.assert_array_equal(b.lo, lo)
    assert np.isnan(b.hi[60 // b.size + 1])  # an empty bucket stays a gap
    # Each extreme is drawn at the second it happened.
    lt, lv = b.line()
    for at in (5, 4_321, 28_799, 10_000):
        assert v[at] in lv[lt == at]
    assert np.all(np.diff(lt[np.isfinite(lt)]) >= 0)  # the line runs forward in time


def test_short_series_are_drawn_as_they_are() -> None:
    t = np.arange(figures.MAX_POINTS, dtype=float)
    assert figures.buckets(t, t) is None


def test_eight_hour_charts_keep_the_spike_and_say_they_are_envelopes() -> None:
    run = _long(EIGHT_HOURS)
    lat = figures.latency_over_time(run, None)
    assert lat is not None
    assert f"p99 peaks at {SPIKE_MS:,.0f} ms at t = {SPIKE_AT} s" in lat.alt
    size = -(-EIGHT_HOURS // (figures.MAX_POINTS // 2))
    for fig in (lat, figures.throughput_over_time(run, None), figures.cpu_over_time(run)):
        assert fig is not None
        assert f"min/max envelope of {size}-second buckets" in fig.caption
        assert f"min/max envelope of {size}-second buckets" in fig.alt


def test_eight_hour_report_stays_small(long_report: Path) -> None:
    size = long_report.stat().st_size
    assert size < REPORT_BOUND, size


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed")
def test_chromium_opens_the_eight_hour_report(long_report: Path) -> None:
    run = load(long_report, ARTIFACTS / "browser")
    assert run.remote_requests == []
    facts = inspect(run.dom)
    assert {"latency-over-time", "throughput-over-time"} <= set(facts.figures)
    assert all(i["src"].startswith("data:image/png") and i.get("alt") for i in facts.images)
    assert "min/max envelope" in run.dom


def test_eight_hour_model_version_bars_cover_the_whole_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hot-reload run's version panel, bucketed, spans all 8 hours (it once stopped at
    the bucket count: ~1,000 s)."""
    run = _long(EIGHT_HOURS, FIXTURE.parent / "recorded-hot-reload.results.json")
    drawn: list[np.ndarray] = []
    bar = Axes.bar

    def spy(self: Axes, x: object, *args: object, **kwargs: object) -> object:
        if str(kwargs.get("label", "")).startswith("model "):
            drawn.append(np.asarray(x, dtype=float))
        return bar(self, x, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Axes, "bar", spy)
    fig = figures.served_by_over_time(run)
    assert fig is not None and drawn
    assert all(x.max() > 0.95 * EIGHT_HOURS for x in drawn)
    assert all(x.size <= figures.MAX_POINTS for x in drawn)
