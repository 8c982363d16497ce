"""USE_TORCHSERVE=true with TorchServe not running: fallback, rollout and the admin endpoint.

TORCHSERVE_URL points at a loopback port that is bound but not listening, so every connection
is refused at once, as after TorchServe's frontend died.
"""

from __future__ import annotations

import asyncio
import json
import socket
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

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "test-admin-token-not-a-secret"


@pytest.fixture(scope="module")
def backend(model_dir) -> Iterator[BackendHandle]:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = reserved.getsockname()[1]
        env = {
            "USE_TORCHSERVE": "true",
            "TORCHSERVE_URL": f"http://127.0.0.1:{port}",
            "TORCHSERVE_TIMEOUT_MS": "500",
            "TORCHSERVE_ROLLOUT_PERCENT": "100",
            "TORCHSERVE_TOKEN": "ts-token-not-a-secret",
            "MODEL_DIR": str(model_dir),
            "ADMIN_TOKEN": ADMIN_TOKEN,
        }
        with run_backend(env) as handle:
            yield handle


def _call(
    base: str, method: str, path: str, body: dict | None = None, token: str | None = ADMIN_TOKEN
):
    req = urllib.request.Request(
        f"{base}{path}", method=method, data=json.dumps(body).encode() if body is not None else None
    )
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _set_rollout(backend: BackendHandle, percent: int) -> None:
    status, body = _call(backend.base_url, "PUT", "/admin/rollout", {"percent": percent})
    assert status == 200 and body["percent"] == percent, body


@pytest.mark.parametrize("bearer", [None, "", "  ", "wrong", ADMIN_TOKEN[:-1]])
def test_admin_checks_the_token_before_anything_else(backend: BackendHandle, bearer) -> None:
    """Without the right token: 401 for every method and body, never 405 or 422 detail."""
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    for method, body in ADMIN_PROBES:
        status, reply = http_call(backend.base_url, method, "/admin/rollout", body, headers)
        assert status == 401, (method, body, bearer, reply)
        assert reply == {
            "detail": "missing or wrong admin token (Authorization: Bearer <ADMIN_TOKEN>)"
        }
    assert _call(backend.base_url, "GET", "/admin/rollout")[1]["percent"] == 100


def test_admin_endpoint_needs_the_token(backend: BackendHandle) -> None:
    base = backend.base_url
    # With the token, the body is validated and a wrong method is a wrong method.
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert http_call(base, "PUT", "/admin/rollout", b"[[", auth)[0] == 422
    assert http_call(base, "POST", "/admin/rollout", b"{}", auth)[0] == 405
    assert _call(base, "GET", "/admin/rollout", token=None)[0] == 401
    assert _call(base, "GET", "/admin/rollout", token="wrong")[0] == 401
    assert _call(base, "PUT", "/admin/rollout", {"percent": 0}, token=None)[0] == 401
    assert _call(base, "PUT", "/admin/rollout", {"percent": 0}, token="wrong")[0] == 401
    status, body = _call(base, "GET", "/admin/rollout")
    assert status == 200 and body == {"percent": 100, "use_torchserve": True}
    for bad in ({"percent": 101}, {"percent": -1}, {"percent": "10"}, {}):
        assert _call(base, "PUT", "/admin/rollout", bad)[0] == 422, bad
    _set_rollout(backend, 40)
    assert metric(scrape(base), "signflow_rollout_percent") == 40
    _set_rollout(backend, 100)
    assert _call(base, "GET", "/admin/rollout")[1]["percent"] == 100


async def test_torchserve_down_every_sign_still_classified_locally(backend: BackendHandle) -> None:
    _set_rollout(backend, 100)
    before = scrape(backend.base_url)
    traces = [trace(seed=40 + k, signs=3, frame_offset=k * 10_000) for k in range(4)]
    results = await asyncio.gather(*(run_session(backend.ws_url, dumps_frames(t)) for t in traces))
    signs = correct = 0
    for frames, replies in zip(traces, results, strict=True):
        assert not [r for r in replies if "error" in r]
        labels = expected_labels(frames)
        got = classified(replies)
        assert len(got) == len(labels)
        assert {g.served_by for g in got} == {"local"} and {g.model_version for g in got} == {"1.0"}
        signs += len(labels)
        correct += sum(g.prediction == t for g, t in zip(got, labels, strict=True))
    assert correct >= 0.95 * signs
    after = scrape(backend.base_url)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    ts_errors = metric_sum(after, "signflow_torchserve_errors_total") - metric_sum(
        before, "signflow_torchserve_errors_total"
    )
    assert ts_errors == signs
    assert delta("signflow_fallback_total") == signs
    assert delta("signflow_inferences_total", served_by="local") == signs
    assert delta("signflow_inferences_total", served_by="torchserve") == 0
    # By cohort (issue 22): every fallback belongs to the TorchServe cohort, the frames' reply
    # latencies are counted under it, and the old-pipeline cohort saw none of this traffic.
    assert delta("signflow_fallback_total", route="torchserve") == signs
    assert delta("signflow_inferences_total", route="torchserve", served_by="local") == signs
    assert delta("signflow_inferences_total", route="local") == 0
    frames = sum(len(t) for t in traces)
    assert delta("signflow_frames_total", route="torchserve") == frames
    assert delta("signflow_frame_latency_seconds_count", route="torchserve") == frames
    assert delta("signflow_frame_latency_seconds_count", route="local") == 0
    # Refused (or out of time while retrying a refusal); once the breaker opens, the client
    # fails fast with circuit_open.
    reasons = {
        dict(labels)["reason"]
        for (name, labels) in after
        if name == "signflow_torchserve_errors_total" and after[(name, labels)] > 0
    }
    assert reasons <= {"refused", "timeout", "circuit_open"} and "refused" in reasons
    log = backend.log_tail(400)
    assert "torchserve_fallback" in log
    assert "ts-token-not-a-secret" not in backend.log_path.read_text()
    assert ADMIN_TOKEN not in backend.log_path.read_text()


async def _open_sessions(ws_url: str, count: int) -> None:
    """Open ``count`` sessions one after another (each answers one frame, then closes)."""
    frame = json.dumps(trace(seed=1, signs=1)[0])
    for _ in range(count):
        async with connect(ws_url) as ws:
            await ws.send(frame)
            await ws.recv()


async def test_rollout_share_of_sessions(backend: BackendHandle) -> None:
    _set_rollout(backend, 10)
    before = scrape(backend.base_url)
    await _open_sessions(backend.ws_url, 20)
    after = scrape(backend.base_url)
    routed = {
        route: metric(after, "signflow_sessions_total", route=route)
        - metric(before, "signflow_sessions_total", route=route)
        for route in ("torchserve", "local")
    }
    assert routed == {"torchserve": 2, "local": 18}
    _set_rollout(backend, 0)
    before = after
    await _open_sessions(backend.ws_url, 5)
    after = scrape(backend.base_url)
    assert metric(after, "signflow_sessions_total", route="torchserve") == metric(
        before, "signflow_sessions_total", route="torchserve"
    )


async def test_rollout_is_sticky_per_session(backend: BackendHandle) -> None:
    """A session keeps the route it got at connect when the percent changes mid-session."""
    _set_rollout(backend, 100)
    frames = trace(seed=77, signs=2)
    messages = dumps_frames(frames)
    half = len(messages) // 2
    before = scrape(backend.base_url)
    async with connect(backend.ws_url) as ws:  # routed to TorchServe at connect
        for m in messages[:half]:
            await ws.send(m)
            await ws.recv()
        _set_rollout(backend, 0)
        local_only = asyncio.create_task(
            run_session(backend.ws_url, dumps_frames(trace(seed=78, signs=2)))
        )
        for m in messages[half:]:
            await ws.send(m)
            await ws.recv()
        await local_only
    after = scrape(backend.base_url)
    # Only the sticky session's 2 signs tried TorchServe (and fell back); the new one did not.
    assert metric(after, "signflow_fallback_total") - metric(before, "signflow_fallback_total") == 2
    _set_rollout(backend, 100)
