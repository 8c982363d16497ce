"""The backend end to end: a real uvicorn subprocess and real WebSocket clients (flag off)."""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from backend_server import BackendHandle, run_backend
from backend_streaming import (
    ADMIN_PROBES,
    classified,
    dumps_frames,
    expected_labels,
    http_call,
    metric,
    metric_sum,
    run_session,
    scrape,
    trace,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow

REPLY_KEYS = {
    "frame_idx", "state", "prediction", "confidence", "alternatives", "sentence_buffer",
    "is_sentence_complete", "latency_ms", "served_by", "model_version",
}  # fmt: skip


@pytest.fixture(scope="module")
def backend(model_dir) -> Iterator[BackendHandle]:
    # A blank ADMIN_TOKEN, as docker-compose.yml passes when SIGNFLOW_ADMIN_TOKEN is unset.
    env = {"USE_TORCHSERVE": "false", "MODEL_DIR": str(model_dir), "ADMIN_TOKEN": "  "}
    with run_backend(env) as handle:
        yield handle


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _check_classified(frames: list[dict], replies: list[dict]) -> tuple[int, int]:
    """Replies match frames one to one; return (correct, signs)."""
    assert [r["frame_idx"] for r in replies] == [f["frame_idx"] for f in frames]
    assert not [r for r in replies if "error" in r]
    labels = expected_labels(frames)
    got = classified(replies)
    assert len(got) == len(labels), (labels, got)
    for reply in replies:
        assert set(reply) == REPLY_KEYS
        if reply["prediction"] is None:
            assert reply["served_by"] is None and reply["alternatives"] == []
    return sum(g.prediction == t for g, t in zip(got, labels, strict=True)), len(labels)


def test_health_ready_metrics(backend: BackendHandle) -> None:
    assert _get(f"{backend.base_url}/health") == (200, '{"status":"alive"}')
    status, body = _get(f"{backend.base_url}/ready")
    assert status == 200 and json.loads(body)["model_version"] == "1.0"
    samples = scrape(backend.base_url)
    for name in (
        "signflow_frames_total",
        "signflow_sessions_open",
        "signflow_fallback_total",
        "signflow_rollout_percent",
    ):
        assert any(n == name for n, _ in samples), name
    assert metric(samples, "signflow_inferences_total", served_by="local") >= 0
    # Every per-session series carries the cohort (route), and the SLO edge (30 ms) is a bucket
    # edge of both latency histograms, for each cohort.
    for route in ("local", "torchserve"):
        assert (
            "signflow_inference_latency_seconds_bucket",
            (("le", "0.03"), ("route", route), ("served_by", "local")),
        ) in samples
        assert ("signflow_frame_latency_seconds_bucket", (("le", "0.03"), ("route", route))) in (
            samples
        )


@pytest.mark.parametrize("bearer", [None, "", "  ", "x"])
def test_blank_admin_token_leaves_the_admin_api_off(backend: BackendHandle, bearer) -> None:
    """ADMIN_TOKEN is blank here: every method and body gets 404, whatever the bearer."""
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    for method, body in ADMIN_PROBES:
        status, _ = http_call(backend.base_url, method, "/admin/rollout", body, headers)
        assert status == 404, (method, body, bearer)
    assert http_call(backend.base_url, "GET", "/ready")[1]["rollout_percent"] == 100


async def test_synthetic_sign_is_classified_with_its_label(backend: BackendHandle) -> None:
    before = scrape(backend.base_url)
    frames = trace(seed=3, signs=4)
    replies = await run_session(backend.ws_url, dumps_frames(frames))
    correct, signs = _check_classified(frames, replies)
    assert correct == signs
    states = [r["state"] for r in replies]
    assert {"idle", "recording", "inferring"} <= set(states)
    for got in classified(replies):
        assert got.served_by == "local" and got.model_version == "1.0"
    hit = next(r for r in replies if r["prediction"] is not None)
    assert hit["state"] == "inferring" and 0 < hit["confidence"] <= 1
    assert len(hit["alternatives"]) == 4 and hit["alternatives"][0]["label"] == hit["prediction"]
    assert all(r["latency_ms"] >= 0 for r in replies)
    # A sentence builds up and completes after the final pause.
    assert replies[-1]["sentence_buffer"] or any(r["is_sentence_complete"] for r in replies)
    after = scrape(backend.base_url)
    assert metric(after, "signflow_frames_total") - metric(before, "signflow_frames_total") == len(
        frames
    )
    # Flag off: every frame is the old-pipeline cohort's, each valid one a latency observation.
    answered = metric(after, "signflow_frame_latency_seconds_count", route="local") - metric(
        before, "signflow_frame_latency_seconds_count", route="local"
    )
    assert answered == len(frames)
    assert metric(after, "signflow_fallback_total") == 0
    assert (
        metric(after, "signflow_inferences_total", served_by="local")
        - metric(before, "signflow_inferences_total", served_by="local")
        == signs
    )


async def test_twenty_concurrent_sessions_get_their_own_predictions(backend: BackendHandle) -> None:
    traces = [trace(seed=100 + k, signs=3, frame_offset=k * 100_000) for k in range(20)]
    results = await asyncio.gather(
        *(run_session(backend.ws_url, dumps_frames(t), pace_s=0.002) for t in traces)
    )
    correct = total = 0
    for frames, replies in zip(traces, results, strict=True):
        c, n = _check_classified(frames, replies)
        correct, total = correct + c, total + n
    # The model's held-out accuracy is >= 95 %; sessions mixed up would be near chance.
    assert correct >= 0.95 * total, f"{correct}/{total}"


def _bad_messages(frame: dict) -> list[tuple[str, str, int | None, str]]:
    """(message, expected code, expected frame_idx, text the message must contain)."""
    idx = frame["frame_idx"]

    def variant(**changes) -> str:
        f = json.loads(json.dumps(frame))
        f.update(changes)
        return json.dumps(f)

    short_pose = frame["pose"][:-1]
    nan_pose = [list(p) for p in frame["pose"]]
    nan_pose[2][1] = math.nan
    text_pose = [list(p) for p in frame["pose"]]
    text_pose[4][0] = "x"
    return [
        ("{not json", "invalid_json", None, "line 1"),
        ("[1, 2, 3]", "invalid_frame", None, "object"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json", None, "nested"),
        (variant(frame_idx="seven"), "invalid_frame", None, "frame_idx"),
        (variant(pose=short_pose), "invalid_frame", idx, "pose"),
        (variant(pose=nan_pose), "invalid_frame", idx, "pose[2][1]"),
        (variant(pose=text_pose), "invalid_frame", idx, "pose[4][0]"),
        (
            variant(hands={"left": [[0.1, 0.2]] * 21, "right": None}),
            "invalid_frame",
            idx,
            "hands.left",
        ),
        (variant(hands="none"), "invalid_frame", idx, "hands"),
    ]


async def test_bad_input_gets_errors_and_the_session_goes_on(backend: BackendHandle) -> None:
    frames = trace(seed=5, signs=2)
    bad = _bad_messages(frames[0])
    messages = [m for m, *_ in bad] + dumps_frames(frames)
    neighbour = trace(seed=6, signs=2, frame_offset=500_000)
    replies, other = await asyncio.gather(
        run_session(backend.ws_url, messages),
        run_session(backend.ws_url, dumps_frames(neighbour), pace_s=0.001),
    )
    for (_, code, idx, needle), reply in zip(bad, replies, strict=False):
        assert set(reply) == {"frame_idx", "error"}, reply
        assert reply["error"]["code"] == code and reply["frame_idx"] == idx, reply
        assert needle in reply["error"]["message"], reply
    correct, signs = _check_classified(frames, replies[len(bad) :])
    assert correct == signs
    c2, n2 = _check_classified(neighbour, other)
    assert c2 == n2


async def _closed_with(ws_url: str, send) -> int | None:
    async with connect(ws_url, max_size=None, ping_interval=None) as ws:
        await send(ws)
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None


async def test_oversize_closes_1009_and_binary_closes_1003(backend: BackendHandle) -> None:
    before = scrape(backend.base_url)
    neighbour = trace(seed=8, signs=2)
    other = asyncio.create_task(run_session(backend.ws_url, dumps_frames(neighbour), pace_s=0.002))
    big = json.dumps({"frame_idx": 0, "pad": "x" * 300_000})
    assert await _closed_with(backend.ws_url, lambda ws: ws.send(big)) == 1009
    assert await _closed_with(backend.ws_url, lambda ws: ws.send(b"\x00\x01")) == 1003
    c, n = _check_classified(neighbour, await other)
    assert c == n
    after = scrape(backend.base_url)
    for reason in ("message_too_big", "binary_message"):
        assert metric(after, "signflow_errors_total", reason=reason) > metric(
            before, "signflow_errors_total", reason=reason
        )


async def test_sessions_open_gauge_returns_to_zero(backend: BackendHandle) -> None:
    async with connect(backend.ws_url) as ws:
        await ws.send(json.dumps(trace(seed=1, signs=1)[0]))
        await ws.recv()
        samples = scrape(backend.base_url)
        assert metric(samples, "signflow_sessions_open") >= 1
        # by cohort, like every per-session series: the open session is in its route's count
        # (harness judge --prometheus counts each cohort's sessions with it)
        by_route = {
            route: metric(samples, "signflow_sessions_open", route=route)
            for route in ("torchserve", "local")
        }
        opened = {
            route: metric(samples, "signflow_sessions_total", route=route)
            for route in ("torchserve", "local")
        }
        assert sum(by_route.values()) >= 1 and all(by_route[r] <= opened[r] for r in by_route), (
            by_route
        )
    deadline = time.monotonic() + 5
    while metric(scrape(backend.base_url), "signflow_sessions_open") != 0:
        assert time.monotonic() < deadline, "sessions_open did not return to 0"
        await asyncio.sleep(0.05)
    assert metric_sum(scrape(backend.base_url), "signflow_sessions_total") >= 1


async def test_start_line_prints_the_stream_url(backend: BackendHandle) -> None:
    """The JSON start-up line gives the full stream URL, and a session works on it as is."""
    line = next(
        ln for ln in backend.log_path.read_text().splitlines() if ln.startswith('{"http_url"')
    )
    urls = json.loads(line)
    assert urls["http_url"] == backend.base_url
    assert urls["ws_url"] == backend.base_url.replace("http://", "ws://", 1) + (
        "/api/v1/translate/stream"
    )
    replies = await run_session(urls["ws_url"], dumps_frames(trace(seed=2, signs=1)[:3]))
    assert [r["frame_idx"] for r in replies] == [0, 1, 2]
