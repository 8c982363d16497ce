"""Per-frame costs of the backend's hot path (target: < 200 us for a non-inference frame).

Run: .venv/bin/python -m pytest benchmarks/test_bench_backend.py --benchmark-enable
"""

from __future__ import annotations

import itertools
import json

import pytest

from backend_patch.app.api.translate import _dumps, decode_frame
from backend_patch.app.ml import synthetic
from backend_patch.app.ml.pipeline import SegmenterConfig, SignSegmenter


@pytest.fixture(scope="module")
def messages() -> list[str]:
    """A synthetic stream as the client sends it (one JSON text per frame, with truth)."""
    return [json.dumps(f) for f in synthetic.generate_stream(num_signs=6, seed=1)]


@pytest.fixture(scope="module")
def rest_messages(messages: list[str]) -> list[str]:
    return [m for m in messages if json.loads(m)["truth"] is None]


def test_bench_rest_frame(benchmark, rest_messages: list[str]) -> None:
    """JSON decode + validation + normalisation + state machine of a rest frame."""
    seg = SignSegmenter(SegmenterConfig())
    frames = itertools.cycle(rest_messages)

    def one() -> None:
        _, vector = decode_frame(next(frames))
        seg.push(vector)

    benchmark(one)


def test_bench_stream_frame(benchmark, messages: list[str]) -> None:
    """The same over a whole stream (rest, recording and the rare sign-ending frames)."""
    seg = SignSegmenter(SegmenterConfig())
    frames = itertools.cycle(messages)

    def one() -> None:
        _, vector = decode_frame(next(frames))
        seg.push(vector)

    benchmark(one)


def test_bench_json_loads_only(benchmark, rest_messages: list[str]) -> None:
    """Share of the stdlib JSON decode in the per-frame cost (the orjson question)."""
    frames = itertools.cycle(rest_messages)
    benchmark(lambda: json.loads(next(frames)))


def test_bench_reply_encode(benchmark) -> None:
    """Encoding one classified reply."""
    reply = {
        "frame_idx": 1234, "state": "inferring", "prediction": "hello", "confidence": 0.97,
        "alternatives": [{"label": f"s{i}", "confidence": 0.01} for i in range(4)],
        "sentence_buffer": ["hello", "world"], "is_sentence_complete": False,
        "latency_ms": 1.234, "served_by": "local", "model_version": "1.0",
    }  # fmt: skip
    benchmark(_dumps, reply)
