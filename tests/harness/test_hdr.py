"""The one histogram module (harness/hdr.py) and the one frame-latency population."""

from __future__ import annotations

import numpy as np
import pytest
from core_builders import build_load

from harness import hdr
from harness.analysis import frames as fr
from harness.analysis.summary import summarize
from harness.scenario.models import Scenario


@pytest.fixture(scope="module")
def latencies() -> np.ndarray:
    return np.random.default_rng(5).lognormal(np.log(0.04), 0.6, 5000)


def test_one_rank_rule_agrees_with_hdrh(latencies: np.ndarray) -> None:
    hist = hdr.histogram_of(latencies, 5.0)
    ps = [1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]
    assert hdr.percentiles_us(hist, ps) == [float(hist.get_value_at_percentile(p)) for p in ps]
    assert hdr.mean_us(hist) == pytest.approx(hist.get_mean_value())
    assert hdr.rank(95.0, 10) == 10 and hdr.rank(50.0, 3) == 2 and hdr.rank(0.0, 7) == 1


def test_summary_is_in_ms_of_the_us_histogram(latencies: np.ndarray) -> None:
    s = hdr.latency_summary(hdr.histogram_of(latencies, 5.0))
    assert s["count"] == latencies.size
    assert s["p50"] == pytest.approx(float(np.percentile(latencies, 50)) * 1000, rel=2e-3)
    assert s["max"] == pytest.approx(latencies.max() * 1000, rel=1e-3)
    empty = hdr.latency_summary(hdr.new_histogram(1.0))
    assert empty["count"] == 0 and empty["p95"] is None and empty["mean"] is None


def test_encode_decode_states_its_unit(latencies: np.ndarray) -> None:
    hist = hdr.histogram_of(latencies, 5.0)
    text = hdr.encode(hist)
    assert text and text.startswith("HISTF")
    back = hdr.decode(text, "us")
    assert back.get_total_count() == hist.get_total_count()
    assert hdr.percentiles_us(back, [99.0]) == hdr.percentiles_us(hist, [99.0])
    assert hdr.decode(text, None).get_total_count() == hist.get_total_count()  # version 1
    with pytest.raises(ValueError, match="unit 'ms'"):
        hdr.decode(text, "ms")
    with pytest.raises(ValueError, match="not an encoded HdrHistogram"):
        hdr.decode("HISTFAAAnonsense", "us")
    assert hdr.encode(hdr.new_histogram(1.0)) is None


def test_merge_and_stacked_reads_match_single_histograms(latencies: np.ndarray) -> None:
    parts = [hdr.histogram_of(c, 5.0) for c in np.array_split(latencies, 7)]
    merged = hdr.merge(parts)
    whole = hdr.histogram_of(latencies, 5.0)
    assert hdr.percentiles_us(merged, [50, 99]) == hdr.percentiles_us(whole, [50, 99])
    grid, mat = hdr.stack([*parts, None])
    for p in (50.0, 95.0, 99.9):
        rows = hdr.stacked_percentiles(grid, mat, p)
        expected = [hdr.percentiles_us(h, [p])[0] for h in parts]
        assert rows[:-1].tolist() == expected and np.isnan(rows[-1])
        (all_rows,) = hdr.stacked_percentiles(grid, mat.sum(axis=0, keepdims=True), p)
        assert all_rows == hdr.percentiles_us(whole, [p])[0]
    mid, mat_mid = hdr.stack(parts, highest=False)
    assert hdr.stacked_means(mid, mat_mid)[0] == pytest.approx(hdr.mean_us(parts[0]))


def test_frame_latency_is_one_population_everywhere() -> None:
    """Error replies are counted, never timed: summary, series and window histograms hold the
    same frames (issue 12: the whole-run figure used to include them, the series not)."""

    def reply(s: int, t: float) -> tuple:
        if s == 0 and int(t * 30) % 5 == 0:
            return 0.001, None, None, "bad_frame"  # fast error replies
        return 0.050, "torchserve", "1.0", None

    load = build_load(sessions=2, fps=30, duration_s=6, warmup_s=1, reply=reply)
    sc = Scenario.model_validate(
        {"name": "p", "workload": {"sessions": 2, "duration_s": 6, "warmup_s": 1}}
    )
    summary, series, histograms, _ = summarize(load, {}, [], sc)
    counts = fr.counts(load)
    frame = summary["frame"]["latency_ms"]
    assert frame["count"] == counts["answered"] - counts["errored"] > 0
    assert frame["p50"] == pytest.approx(50.0, rel=1e-3)  # no 1-ms error reply in it
    windows = [
        hdr.decode(e, histograms["unit"]).get_total_count()
        for e, w in zip(histograms["windows"]["frame"], series["warmup"], strict=True)
        if e and not w
    ]
    assert sum(windows) == frame["count"]
    assert histograms["unit"] == hdr.UNIT == "us"
    measured = [v for v, w in zip(series["frame_p50_ms"], series["warmup"], strict=True) if not w]
    assert all(v == pytest.approx(50.0, rel=1e-3) for v in measured)


def test_bulk_recording_equals_hdrh_value_by_value() -> None:
    """hdr.record_us (numpy) gives hdrh's own counts, total, min and max (issue 23)."""
    rng = np.random.default_rng(5)
    for limit_s in (0.5, 5.0, 3600.0):
        top = hdr.limit_us(limit_s)
        values = np.concatenate([
            rng.integers(0, top + 1, 5_000),
            np.exp(rng.uniform(0, np.log(top), 5_000)).astype(np.int64),
            [0, 1, 2, 2047, 2048, 2049, 4095, 4096, top - 1, top],
        ]).astype(np.int64)  # fmt: skip
        bulk, one_by_one = hdr.new_histogram(limit_s), hdr.new_histogram(limit_s)
        hdr.record_us(bulk, values)
        for v in values.tolist():
            assert one_by_one.record_value(v)
        assert list(bulk.counts) == list(one_by_one.counts)
        assert (bulk.total_count, bulk.min_value, bulk.max_value) == (
            one_by_one.total_count, one_by_one.min_value, one_by_one.max_value,
        )  # fmt: skip
        assert bulk.encode() == one_by_one.encode()
    with pytest.raises(ValueError, match="outside"):
        hdr.record_us(hdr.new_histogram(0.5), np.array([10**9], dtype=np.int64))
