"""Traces: JSONL loading with file:line errors, one-time serialisation, truth carry-forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.load.trace import TraceError, load_trace_file, prepare_trace


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loads_frames_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, ['{"pose": [], "truth": "hello"}', "", '{"pose": []}'])
    frames = load_trace_file(path)
    assert frames == [{"pose": [], "truth": "hello"}, {"pose": []}]


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"pose": [1, 2,', "invalid JSON at column"),
        ("[1, 2, 3]", "must be a JSON object, got list"),
        ('{"truth": 3}', "field 'truth' must be a label string or null"),
        ('{"hands": [1]}', "field 'hands' must be an object"),
        ('{"pose": {"x": 1}}', "field 'pose' must be a list"),
    ],
)
def test_invalid_line_names_file_line_and_field(
    tmp_path: Path, bad_line: str, expected: str
) -> None:
    path = _write(tmp_path, ['{"pose": []}', "", bad_line])
    with pytest.raises(TraceError) as err:
        load_trace_file(path)
    assert f"{path}:3:" in str(err.value)
    assert expected in str(err.value)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = _write(tmp_path, [""])
    with pytest.raises(TraceError, match="holds no frames"):
        load_trace_file(empty)
    with pytest.raises(TraceError, match="cannot read"):
        load_trace_file(tmp_path / "nope.jsonl")


def test_prepared_messages_patch_frame_idx_and_strip_truth() -> None:
    labels: list[str] = []

    def intern(label: str) -> int:
        if label not in labels:
            labels.append(label)
        return labels.index(label)

    frames = [
        {"pose": [[0.5, 0.5, 0.0]], "frame_idx": 99},
        {"truth": "hello", "hands": {"left": None}},
        {},
        {"truth": None},
        {"truth": "bye"},
    ]
    prepared = prepare_trace(frames, intern)
    msgs = [json.loads(p + "7}") for p in prepared.prefixes]
    assert msgs[0] == {"pose": [[0.5, 0.5, 0.0]], "frame_idx": 7}
    assert msgs[1] == {"hands": {"left": None}, "frame_idx": 7}
    assert msgs[2] == {"frame_idx": 7}
    assert all("truth" not in m for m in msgs)
    hello, bye = labels.index("hello"), labels.index("bye")
    # The last non-null truth at or before each frame; the loop wraps the last sign around.
    assert prepared.truth_first == (-1, hello, hello, hello, bye)
    assert prepared.truth_loop == (bye, hello, hello, hello, bye)


def test_synthetic_trace_is_seeded_and_carries_truth() -> None:
    from harness.load.trace import synthetic_trace

    a = synthetic_trace(seed=3, signs=2, sign_mix=["hello", "thanks"], rest_frames=(5, 8))
    b = synthetic_trace(seed=3, signs=2, sign_mix=["hello", "thanks"], rest_frames=(5, 8))
    assert a == b
    truths = [f.get("truth") for f in a]
    assert {t for t in truths if t is not None} <= {"hello", "thanks"}
    assert truths[0] is None and any(t is not None for t in truths)
    assert all("hands" in f and "pose" in f for f in a)


def test_trace_provider_takes_the_typed_spec() -> None:
    """Session i plays seed + (i % TRACE_VARIANTS), generated once; a Locust worker's local
    session j of a block at offset k asks for global session k + j and gets the same trace."""
    from harness.load.trace import TRACE_VARIANTS, synthetic_trace, trace_provider
    from harness.scenario.models import TraceSpec

    spec = TraceSpec.model_validate({"synthetic": {"seed": 5, "signs": 1, "rest_frames": [3, 4]}})
    provider = trace_provider(spec)
    assert provider(1) == synthetic_trace(6, 1, None, (3, 4))
    assert provider(1) is provider(1 + TRACE_VARIANTS)  # cached variant, not regenerated
    assert provider(0) != provider(1)


def test_trace_provider_file_gives_every_session_the_file(tmp_path: Path) -> None:
    from harness.load.trace import trace_provider
    from harness.scenario.models import TraceSpec

    path = _write(tmp_path, ['{"pose": [1], "truth": "hello"}', '{"pose": [2]}'])
    provider = trace_provider(TraceSpec(file=str(path)))
    assert provider(0) == provider(7) == [{"pose": [1], "truth": "hello"}, {"pose": [2]}]
