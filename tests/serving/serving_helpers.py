"""Helpers shared by the serving tests (tests/ is not a package; pytest puts this dir on
sys.path)."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
# SIGNFLOW_TEST_MODELS: another artifact directory (e.g. while build/models is being rebuilt).
MODELS = Path(os.environ.get("SIGNFLOW_TEST_MODELS", REPO_ROOT / "build" / "models"))
VERSIONS = ("1.0", "2.0")
OCTET = {"Content-Type": "application/octet-stream"}


def window_bytes(window: np.ndarray) -> bytes:
    """The primary request body: float32 little-endian bytes."""
    return np.ascontiguousarray(window, dtype="<f4").tobytes()


async def post_many(
    url: str, bodies: list[tuple[bytes, dict[str, str]]], headers: dict[str, str]
) -> list[tuple[int, dict]]:
    """POST every body at once (one aiohttp session) and return (status, JSON) in order."""
    connector = aiohttp.TCPConnector(limit=len(bodies))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(body: bytes, extra: dict[str, str]) -> tuple[int, dict]:
            async with session.post(url, data=body, headers={**headers, **extra}) as resp:
                return resp.status, await resp.json(content_type=None)

        return list(await asyncio.gather(*(one(b, h) for b, h in bodies)))


def scrape(url: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} for the SignFlow custom metrics."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("Signflow"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def batches_by_size(metrics: dict[str, float]) -> dict[int, float]:
    """SignflowBatches counters keyed by their BatchSize label."""
    out: dict[int, float] = {}
    for key, value in metrics.items():
        match = re.match(r'SignflowBatches\{.*BatchSize="(\d+)"', key)
        if match:
            out[int(match.group(1))] = out.get(int(match.group(1)), 0.0) + value
    return out
