"""Integration fixtures: a real TorchServe (serving.local), real backends, paced WS sessions.

Everything runs for real on loopback: TorchServe's Java frontend and Python worker, the backend
as a uvicorn subprocess (tests/backend_server.py), and WebSocket sessions streaming synthetic
landmark traces at camera rate from this test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

TESTS_DIR = Path(__file__).resolve().parents[1]
# tests/ is not a package: make the shared tests/backend_server.py importable from here.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

REPO_ROOT = TESTS_DIR.parent
MODEL_STORE = REPO_ROOT / "build" / "model-store"
MODEL_DIR = REPO_ROOT / "build" / "models" / "1.0"
FPS = 30.0


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The model store with both archives and the local 1.0 model (fail, not skip: make builds
    them)."""
    needed = [
        MODEL_STORE / "signflow-1.0.mar",
        MODEL_STORE / "signflow-2.0.mar",
        MODEL_DIR / "metadata.json",
    ]
    missing = [str(p.relative_to(REPO_ROOT)) for p in needed if not p.is_file()]
    if missing:
        pytest.fail(f"missing build artifacts {missing}: run `make setup` first")
    return MODEL_STORE


@pytest.fixture
def torchserve(artifacts: Path) -> Iterator[Any]:
    """A started, READY TorchServe (token auth ON, one worker to spare the two cores)."""
    from serving.local import LocalTorchServe
    from serving.settings import TorchServeSettings

    with LocalTorchServe(artifacts, TorchServeSettings(model_version="1.0", workers=1)) as ts:
        yield ts


def backend_env(ts: Any, *, with_key: bool = True) -> dict[str, str]:
    """Backend environment with the TorchServe path on (and its key file, unless not)."""
    env = {
        "USE_TORCHSERVE": "true",
        "TORCHSERVE_URL": ts.inference_url,
        "TORCHSERVE_TIMEOUT_MS": "2000",
        "TORCHSERVE_ROLLOUT_PERCENT": "100",
        "MODEL_DIR": str(MODEL_DIR),
        "LOG_LEVEL": "warning",
    }
    if with_key:
        env["TORCHSERVE_KEY_FILE"] = str(ts.key_file)
        # Key renewal, and the served model's batch delay (the hedge floor) are read there.
        env["TORCHSERVE_MANAGEMENT_URL"] = str(ts.management_url)
    return env


# --- paced WebSocket sessions ----------------------------------------------------------------


@dataclass
class SessionLog:
    """What one session sent and got back (monotonic receive time per reply)."""

    session: int
    sent: list[int] = field(default_factory=list)
    replies: list[dict] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def errors(self) -> list[dict]:
        """Error replies."""
        return [r for r in self.replies if "error" in r]

    @property
    def missing(self) -> list[int]:
        """Frame indices sent but never answered."""
        answered = {r.get("frame_idx") for r in self.replies}
        return [i for i in self.sent if i not in answered]

    def classified(self) -> list[tuple[float, dict]]:
        """(receive time, reply) of the replies that carry a prediction, in order."""
        return [
            (t, r)
            for t, r in zip(self.received_at, self.replies, strict=True)
            if r.get("prediction") is not None
        ]


def make_trace(seed: int, signs: int = 40) -> list[dict]:
    """A seeded synthetic landmark stream (frame dicts without ``truth``)."""
    from backend_patch.app.ml import synthetic

    frames = []
    for frame in synthetic.generate_stream(num_signs=signs, seed=seed):
        frame = dict(frame)
        frame.pop("truth", None)
        frames.append(frame)
    return frames


async def _one_session(
    ws_url: str, session: int, trace: list[dict], stop: asyncio.Event, log: SessionLog
) -> None:
    loop = asyncio.get_running_loop()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, max_msg_size=0, heartbeat=None) as ws,
    ):

        async def receive() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                log.replies.append(json.loads(msg.data))
                log.received_at.append(loop.time())

        receiver = asyncio.create_task(receive())
        # Open loop at camera rate: frame i is due at t0 + i/FPS whatever the replies do.
        t0 = loop.time()
        idx = 0
        while not stop.is_set() and not receiver.done():
            frame = {**trace[idx % len(trace)], "frame_idx": idx}
            await ws.send_str(json.dumps(frame, separators=(",", ":")))
            log.sent.append(idx)
            idx += 1
            delay = t0 + idx / FPS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        # Drain: every frame sent must be answered (the backend replies in order).
        drain_until = loop.time() + 20.0
        while len(log.replies) < len(log.sent) and not receiver.done():
            if loop.time() > drain_until:
                log.failure = f"session {session}: {len(log.missing)} frames unanswered after 20 s"
                break
            await asyncio.sleep(0.02)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        await ws.close()


async def stream_sessions(
    ws_url: str, sessions: int, stop: asyncio.Event, *, seed: int = 0
) -> list[SessionLog]:
    """Run ``sessions`` paced sessions until ``stop`` is set; return their logs once drained."""
    logs = [SessionLog(i) for i in range(sessions)]
    traces = [make_trace(seed + i) for i in range(sessions)]

    async def guarded(i: int) -> None:
        try:
            await _one_session(ws_url, i, traces[i], stop, logs[i])
        except Exception as exc:  # a broken session is a result, reported by the test
            logs[i].failure = f"session {i}: {type(exc).__name__}: {exc}"

    await asyncio.gather(*(guarded(i) for i in range(sessions)))
    return logs


async def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> float:
    """Poll ``predicate()`` until true; returns the seconds waited, raises TimeoutError."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)
    return time.monotonic() - t0


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET {base_url}/metrics -> {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0.0 when none): a test
    asking for ``served_by="local"`` counts both cohorts (``route``) unless it names one."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


@pytest.fixture
def sessions_tool() -> Any:
    """The session and metrics helpers, for the tests (conftest modules are not importable)."""

    class Tools:
        stream = staticmethod(stream_sessions)
        wait_until = staticmethod(wait_until)
        scrape = staticmethod(scrape)
        metric = staticmethod(metric)
        backend_env = staticmethod(backend_env)

    return Tools
