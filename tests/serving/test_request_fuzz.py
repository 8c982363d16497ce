"""Fuzzing the TorchServe side's request handling with hypothesis (issue 11, item 1).

Whatever ONE request's body is, it gets its own 4xx and never raises out of the parser; inside
the real handler, run on TorchServe's own worker-side objects (``ts.service.Service``'s request
decoding, ``ts.context.Context``, the YAML metrics cache: what a worker process runs, minus the
socket), every other request of the batch is answered 200 with the answer it gets alone. The
same with a real TorchServe, batching over HTTP, is in test_handler_served.py.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import string
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import MODELS
from ts.context import Context
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.service import Service
from ts.utils.util import PredictionException

from serving import request_parser
from serving.handler import SignFlowHandler
from serving.local import METRICS_CONFIG

JSON = "application/json"
OCTET = "application/octet-stream"
WINDOW = (request_parser.SEQ_LEN, request_parser.FEATURE_DIM)

# ----- strategies ------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)
# Values shaped like the accepted documents, but wrong somewhere inside.
landmark_points = st.lists(st.lists(json_scalars | st.floats(-2, 2), max_size=4), max_size=40)
frames = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "pose": landmark_points | json_values,
            "hands": st.fixed_dictionaries(
                {}, optional={"left": landmark_points | st.none(), "right": landmark_points}
            )
            | json_values,
            "face": landmark_points,
        },
    ),
    max_size=4,
)
documents = (
    json_values
    | st.builds(lambda v: {"window": v}, json_values | st.lists(st.lists(st.floats(), max_size=3)))
    | st.builds(lambda v: {"frames": v}, frames | json_values)
)
json_ish_text = st.text(alphabet='[]{}",:0123456789.eE-+ truefalsnul\\x', max_size=200)
deep_nesting = st.integers(min_value=1, max_value=200_000).map(
    lambda n: (b"[" * n + b"]" * n, JSON)
)


def _as_bytes(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


# (value as the worker hands it, content type). TorchServe's worker decodes application/json
# bodies itself (ts/protocol/otf_message_handler.py) and forwards the raw bytes when that fails.
bad_bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: (b, OCTET)),
    # The exact length of a window, random bytes: NaN/inf patterns among them.
    st.binary(min_size=4, max_size=4).map(lambda b: (b * (64 * 469), OCTET)),
    json_ish_text.map(lambda t: (t.encode(), JSON)),
    json_ish_text.map(lambda t: (t, "text/plain")),
    documents.map(lambda d: (_as_bytes(d), OCTET)),
    documents.map(lambda d: (d, JSON)),
    deep_nesting,
    st.just((b"", OCTET)),
)


def _request(idx: int, body: Any, content_type: str) -> dict[str, Any]:
    """One request in the worker's wire form (before Service.retrieve_data_for_inference)."""
    param = {"name": "body", "contentType": content_type, "value": body}
    return {"requestId": f"req-{idx}".encode(), "headers": [], "parameters": [param]}


def _valid_window(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, WINDOW).astype("<f4")


# ----- the parser alone ------------------------------------------------------------------------
def _check_error(err: request_parser.RequestError) -> None:
    assert 400 <= err.status < 500, err.status
    assert err.field and err.message
    assert len(err.message) <= request_parser.MAX_MESSAGE_CHARS
    phrase = err.reason_phrase()
    assert phrase and all(" " <= c <= "~" for c in phrase), phrase


@settings(max_examples=400, deadline=None)
@given(body=bad_bodies, key=st.sampled_from(["data", "body"]))
def test_parser_answers_any_body_alone(body: tuple[Any, str], key: str) -> None:
    value, _ = body
    batch = request_parser.parse_batch([{key: value}])
    assert batch.size == 1
    if batch.valid:  # a random body may be a valid window: then it is a usable one
        assert batch.windows is not None
        assert batch.windows.shape == (1, *WINDOW)
        assert batch.windows.dtype == np.float32
        assert np.isfinite(batch.windows).all()
    else:
        _check_error(batch.errors[0])


def test_deeply_nested_json_is_its_own_400() -> None:
    """The body from the issue: '[' x 100000 then ']' x 100000 (RecursionError in json)."""
    deep = b"[" * 100_000 + b"]" * 100_000
    good = _valid_window(0).tobytes()
    batch = request_parser.parse_batch([{"body": good}] * 3 + [{"body": deep}] + [{"data": good}])
    assert batch.valid == [0, 1, 2, 4]
    assert batch.windows is not None and batch.windows.shape == (4, *WINDOW)
    err = batch.errors[3]
    assert (err.status, err.field) == (400, "body")
    assert "nested too deeply" in err.message


# ----- the handler on TorchServe's worker-side objects -----------------------------------------
class _Worker:
    """The handler as a TorchServe worker holds it: real Context and YAML metrics cache."""

    def __init__(self, batch_size: int = 8) -> None:
        self.metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_CONFIG))
        self.metrics.initialize_cache()
        self.context = Context(
            "signflow", str(MODELS / "1.0"), None, batch_size, None, "0.12.0", metrics=self.metrics
        )
        self.handler = SignFlowHandler()
        self.handler.initialize(self.context)

    def run(self, batch: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """What ts.service.Service.predict does around handle(); (status, JSON) per request."""
        headers, inputs, ids = Service.retrieve_data_for_inference(batch)
        self.context.request_ids = ids
        self.context.request_processor = headers
        self.metrics.request_ids = ids
        answers = self.handler.handle(inputs, self.context)
        assert isinstance(answers, list) and len(answers) == len(batch)
        return [
            (self.context.get_response_status(i)[0], json.loads(answers[i]))
            for i in range(len(batch))
        ]


@functools.cache
def _worker() -> _Worker:
    if not (MODELS / "1.0" / "model.pt").is_file():
        pytest.fail(
            f"model artifacts missing under {MODELS}: run `make build/models/1.0/metadata.json`"
        )
    return _Worker()


@functools.cache
def _alone(seed: int) -> dict[str, Any]:
    """The answer a valid window gets in a batch of its own."""
    ((status, doc),) = _worker().run([_request(0, _valid_window(seed).tobytes(), OCTET)])
    assert status == 200, doc
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.lists(
        st.one_of(st.integers(min_value=0, max_value=3), bad_bodies), min_size=1, max_size=8
    )
)
def test_handler_answers_every_request_of_a_mixed_batch(layout: list[Any]) -> None:
    """Ints are valid windows (by seed), tuples bad bodies, in any order within one batch."""
    batch = [
        _request(i, _valid_window(item).tobytes(), OCTET)
        if isinstance(item, int)
        else _request(i, *item)
        for i, item in enumerate(layout)
    ]
    for item, (status, doc) in zip(layout, _worker().run(batch), strict=True):
        assert doc["batch_size"] == len(layout)
        if isinstance(item, int):
            alone = _alone(item)
            assert status == 200, doc
            assert doc["prediction"] == alone["prediction"]
            assert doc["confidence"] == pytest.approx(alone["confidence"], abs=1e-4)
        elif status == 200:  # a random body may happen to be a valid window
            assert doc["prediction"] in _worker().handler.labels
        else:
            assert 400 <= status < 500, doc
            assert doc["error"]["code"] == status and doc["error"]["message"]


def test_issue_batch_seven_valid_one_deep_body() -> None:
    """The issue's exact batch: 7 valid windows + the deep body -> 7 x 200 and one 400."""
    batch = [_request(i, _valid_window(i % 4).tobytes(), OCTET) for i in range(7)]
    batch.insert(3, _request(7, b"[" * 100_000 + b"]" * 100_000, JSON))
    got = _worker().run(batch)
    assert [s for s, _ in got] == [200, 200, 200, 400, 200, 200, 200, 200]
    assert got[3][1]["error"] == {
        "code": 400,
        "field": "body",
        "message": "body is nested too deeply to parse",
    }


def test_model_failure_fails_the_batch_with_500() -> None:
    """The one batch-wide failure: the forward pass itself. A TorchScript model that raises
    stands for a broken model (a real one cannot be made to fail on a validated window)."""

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("weights corrupted")

    worker = _Worker()
    worker.handler.model = torch.jit.script(Broken())
    with pytest.raises(PredictionException) as err:
        worker.run([_request(i, _valid_window(i).tobytes(), OCTET) for i in range(3)])
    assert err.value.error_code == 500
    assert "model forward failed" in err.value.message
    # A batch of bad requests only never reaches the model: each still gets its own 4xx.
    assert [s for s, _ in worker.run([_request(0, b"[", JSON), _request(1, b"", OCTET)])] == [
        400,
        400,
    ]


def test_handler_and_model_time_counters(caplog: pytest.LogCaptureFixture) -> None:
    """The handler's own timing leaves the worker as per-request sums (batch time x size),
    in the metric lines the frontend turns into Prometheus counters."""
    worker = _worker()
    with caplog.at_level(logging.INFO, logger="ts.metrics.caching_metric"):
        worker.run([_request(i, _valid_window(i).tobytes(), OCTET) for i in range(4)])
    values: dict[str, float] = {}
    for rec in caplog.records:
        match = re.match(r"\[METRICS\](\w+)\.\w+:([0-9.]+)\|", rec.getMessage())
        if match:
            values[match.group(1)] = float(match.group(2))
    handler_us, model_us = (
        values["SignflowHandlerMicroseconds"],
        values["SignflowModelMicroseconds"],
    )
    assert values["SignflowBatchedRequests"] == 4
    assert handler_us % 4 == 0 and model_us % 4 == 0
    assert 0 < model_us <= handler_us
    # HandlerTime (TorchServe's gauge, ms, one batch) is the same handle() call.
    assert handler_us / 4 / 1000 == pytest.approx(values["HandlerTime"], abs=0.01)


def test_printable_alphabet_is_in_phrases() -> None:
    err = request_parser.RequestError(422, "frames[0].x\n", "bad key \x00\u00e9\n" + "y" * 1000)
    assert len(err.message) == request_parser.MAX_MESSAGE_CHARS
    assert set(err.reason_phrase()) <= set(string.printable) - set("\n\r\t\x0b\x0c")
