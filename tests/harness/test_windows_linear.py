"""The 1-s windows of a recording are computed in one pass (issue 23): same windows as the
definition (a mask per window), on recordings with losses, errors, several labels, frames past
the run's duration and out-of-order rows."""

from __future__ import annotations

import numpy as np
from core_builders import build_load

from harness import hdr
from harness.analysis import frames as fr
from harness.load.recording import LoadResult


def _by_definition(load: LoadResult) -> list[fr.Window]:
    """The windows as frames.py defines them: frames whose scheduled time falls in [w, w+1)."""
    f = load.frames
    t = f["t_scheduled"]
    n = max(int(np.ceil(load.duration_s)), int(np.nanmax(t)) + 1)
    frame, inference = fr.latency_population(f), fr.inference_population(f)
    corrected = f["t_reply"] - f["t_scheduled"]
    out = []
    for w in range(n):
        m = (t >= w) & (t < w + 1)
        out.append(
            fr.Window(
                t=float(w),
                warmup=w < load.warmup_s,
                scheduled=int(m.sum()),
                answered=int((m & ~np.isnan(f["t_reply"])).sum()),
                errors=int((m & (f["error_code"] >= 0)).sum()),
                inferences=int((m & inference).sum()),
                served_by=fr._tally(load, f["served_by"][m & inference]),
                fallbacks=int(
                    (
                        m
                        & inference
                        & fr.torchserve_cohort(load)
                        & (f["served_by"] == load.labels.index("local"))
                    ).sum()
                ),
                model_versions=fr._tally(load, f["model_version"][m & inference]),
                hist={
                    "frame_latency": hdr.histogram_of(corrected[m & frame], load.latency_limit_s),
                    "inference_latency": hdr.histogram_of(
                        corrected[m & inference], load.latency_limit_s
                    ),
                },
            )
        )
    return out


def _mixed_load(seed: int) -> LoadResult:
    rng = np.random.default_rng(seed)

    def reply(_s: int, _t: float):
        u = rng.random()
        if u < 0.05:
            return None, None, None, None  # lost
        if u < 0.08:
            return 0.002, None, None, "invalid_frame"
        served = "torchserve" if u < 0.5 else "local" if u < 0.7 else None
        return float(rng.exponential(0.01)), served, rng.choice(["1.0", "2.0"]), None

    load = build_load(sessions=7, fps=13.0, duration_s=9.3, warmup_s=2.0, reply=reply)
    rng.shuffle(load.frames)  # rows in no particular order, as a merged distributed run
    load.frames["t_scheduled"][:3] += 4.0  # some frames scheduled past the duration
    return load


def _same(a: list[fr.Window], b: list[fr.Window]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.t, x.warmup, x.scheduled, x.answered, x.errors, x.inferences) == (
            y.t, y.warmup, y.scheduled, y.answered, y.errors, y.inferences,
        )  # fmt: skip
        assert x.served_by == y.served_by and x.model_versions == y.model_versions
        assert x.fallbacks == y.fallbacks
        for key in ("frame_latency", "inference_latency"):
            hx, hy = x.hist[key], y.hist[key]
            assert hx.get_total_count() == hy.get_total_count(), (x.t, key)
            for p in (50, 95, 99, 100):
                assert hx.get_value_at_percentile(p) == hy.get_value_at_percentile(p)


def test_windows_in_one_pass_equal_the_definition() -> None:
    for seed in range(3):
        load = _mixed_load(seed)
        _same(fr.windows(load), _by_definition(load))


def test_windows_of_an_empty_tail_are_empty() -> None:
    load = build_load(sessions=1, fps=2.0, duration_s=3.0, reply=lambda s, t: (0.01, "local",
                      "1.0", None))  # fmt: skip
    load.duration_s = 6.0  # the run went on, no frame scheduled after 3 s
    ws = fr.windows(load)
    assert [w.scheduled for w in ws] == [2, 2, 2, 0, 0, 0]
    assert ws[-1].hist["frame_latency"].get_total_count() == 0
