"""Client side of the backend tests: synthetic traces, sessions over a real WebSocket, metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from backend_patch.app.ml import synthetic


def trace(seed: int, signs: int, *, frame_offset: int = 0) -> list[dict]:
    """A synthetic stream of ``signs`` signs (frames carry ``truth``), frame_idx shifted."""
    frames = [dict(f) for f in synthetic.generate_stream(num_signs=signs, seed=seed)]
    for i, frame in enumerate(frames):
        frame["frame_idx"] = frame_offset + i
    return frames


def expected_labels(frames: Sequence[dict]) -> list[str]:
    """The true labels of the signs in a trace, in order."""
    labels: list[str] = []
    prev = None
    for frame in frames:
        truth = frame.get("truth")
        if truth is not None and truth != prev:
            labels.append(truth)
        prev = truth
    return labels


async def run_session(ws_url: str, messages: Sequence[str], *, pace_s: float = 0.0) -> list[dict]:
    """Send every message (text) and collect exactly one reply per message, in order."""
    async with connect(ws_url, max_size=None, ping_interval=None) as ws:

        async def send_all() -> None:
            for message in messages:
                await ws.send(message)
                if pace_s:
                    await asyncio.sleep(pace_s)

        sender = asyncio.create_task(send_all())
        try:
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in messages]
        finally:
            await sender
    return replies


def dumps_frames(frames: Sequence[dict]) -> list[str]:
    """One JSON text message per frame."""
    return [json.dumps(f) for f in frames]


@dataclass(frozen=True)
class Classified:
    """A reply that carried a prediction."""

    frame_idx: int
    prediction: str
    served_by: str
    model_version: str


def classified(replies: Sequence[dict]) -> list[Classified]:
    """The replies that classified a sign, in order."""
    return [
        Classified(r["frame_idx"], r["prediction"], r["served_by"], r["model_version"])
        for r in replies
        if r.get("prediction") is not None
    ]


def http_call(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, object]:
    """One HTTP request with a raw body -> (status, JSON body or None)."""
    req = urllib.request.Request(f"{base_url}{path}", method=method, data=body)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


# Requests an unauthenticated caller may send to an admin route: every method, good and bad
# bodies. None of them may learn more than 404 (admin off) or 401 (admin on).
ADMIN_PROBES: list[tuple[str, bytes | None]] = [
    ("GET", None),
    ("PUT", b'{"percent": 0}'),
    ("PUT", b'{"percent": "x"}'),
    ("PUT", b"[" * 1000),
    ("PUT", None),
    ("POST", b'{"percent": 0}'),
    ("DELETE", None),
]


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics -> {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0.0 when none): a test
    asking for ``served_by="local"`` counts both cohorts (``route``) unless it names one."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def metric_sum(samples: dict, name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for (n, _), v in samples.items() if n == name)
