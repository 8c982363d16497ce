"""The load package's typed rows say the same as the results model that validates them.

``LoadResult.sessions`` rows (``SessionRecord``) and ``LoadResult.over_range()``
(``OverRange``) are TypedDicts in the load layer and pydantic models in results.json; a field
added to one and not the other would pass mypy and fail only at validation time.
"""

from __future__ import annotations

import typing

import numpy as np

from harness.load import recording
from harness.results import model


def test_session_record_keys_and_outcomes_match_the_results_model() -> None:
    assert set(recording.SessionRecord.__annotations__) == set(model.SessionRecord.model_fields)
    outcome = model.SessionRecord.model_fields["outcome"].annotation
    assert set(typing.get_args(recording.SessionOutcome)) == set(typing.get_args(outcome))


def test_over_range_keys_match_the_results_model() -> None:
    assert set(recording.OverRange.__annotations__) == set(model.OverRange.model_fields)


def test_over_range_counts_replies_above_the_limit_in_the_measured_window() -> None:
    frames = np.zeros(4, dtype=recording.FRAME_DTYPE)
    frames["t_scheduled"] = [0.5, 1.0, 2.0, 3.0]  # the first is in the warm-up
    frames["t_sent"] = frames["t_scheduled"]
    # 9 s (warm-up: not counted), 0.1 s, 6 s (over the 5 s limit), no reply.
    frames["t_reply"] = [9.5, 1.1, 8.0, np.nan]
    result = recording.LoadResult(
        frames=frames, labels=[], fps=1.0, duration_s=4.0, warmup_s=1.0, late_threshold_ms=5.0,
        disconnects=0, send_failures=0, generator_late_share=0.0, generator_cpu_percent=0.0,
        generator_cpu_saturated=False, latency_limit_s=5.0,
    )  # fmt: skip
    over = result.over_range()
    assert over == {"count": 1, "max_ms": 6000.0, "limit_ms": 5000.0}
    model.OverRange.model_validate(over)  # the results model takes it as it is
    assert result.measured_mask().dtype == np.bool_
    assert result.measured_mask().tolist() == [False, True, True, True]
