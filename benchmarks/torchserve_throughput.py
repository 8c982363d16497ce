"""Direct TorchServe throughput vs the in-process forward pass of the same TorchScript model.

    .venv/bin/python benchmarks/torchserve_throughput.py [--duration 10] [--sweep]

Served: raw float32 64x469 windows POSTed by one aiohttp process at concurrency 32 (closed
loop) to a real TorchServe started by serving.local (token auth on). In-process: the same
model.pt forward at batch 16 in this process, measured before and after the served phase of
each configuration (same run, same machine state). Prints ONE JSON summary on stdout: served
samples/s, in-process samples/s, their ratio, latency percentiles, achieved batch size.
The client, Java and the workers share the machine's cores: the ratio includes that cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from backend_patch.app.ml.model import load_artifacts  # noqa: E402
from serving.local import LocalTorchServe  # noqa: E402
from serving.package_model import build_archive  # noqa: E402
from serving.settings import TorchServeSettings  # noqa: E402


@dataclass(frozen=True)
class ServeConfig:
    """One TorchServe set-up to measure."""

    workers: int = 2
    torch_threads: int = 1
    max_batch_delay_ms: int = 50
    batch_size: int = 16


SWEEP = [
    ServeConfig(workers=2, torch_threads=1, max_batch_delay_ms=50),
    ServeConfig(workers=1, torch_threads=1, max_batch_delay_ms=50),
    ServeConfig(workers=1, torch_threads=2, max_batch_delay_ms=50),
    ServeConfig(workers=2, torch_threads=1, max_batch_delay_ms=10),
    ServeConfig(workers=2, torch_threads=1, max_batch_delay_ms=100),
]


def in_process_samples_per_s(module: torch.jit.ScriptModule, batch: int, seconds: float) -> float:
    """Forward passes at ``batch`` for ``seconds``: samples/s (the ceiling to compare with)."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 64, 469), np.float32))
    with torch.inference_mode():
        for _ in range(5):  # warm-up: TorchScript profiles the first calls
            module(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            module(x)
            n += 1
        return n * batch / (time.perf_counter() - start)


def _scrape_batches(metrics_url: str) -> tuple[float, float]:
    """(batches, requests) from the handler's SignFlow counters."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    batches = requests = 0.0
    for line in text.splitlines():
        if line.startswith("SignflowBatches{"):
            batches += float(line.rsplit(" ", 1)[1])
        elif line.startswith("SignflowBatchedRequests{"):
            requests += float(line.rsplit(" ", 1)[1])
    return batches, requests


async def drive(
    url: str, headers: dict[str, str], body: bytes, concurrency: int, warmup: float, seconds: float
) -> dict[str, float]:
    """Closed loop: ``concurrency`` requests in flight; measures after ``warmup`` seconds."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = float("inf")
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=conn, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if measuring:
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1

        tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring, start = True, time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "samples_per_s": len(latencies) / elapsed,
        "requests": len(latencies),
        "errors": errors,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
    }


def measure(
    cfg: ServeConfig, store: Path, module: torch.jit.ScriptModule, args: argparse.Namespace
) -> dict[str, object]:
    """Served vs in-process for one configuration."""
    before = in_process_samples_per_s(module, cfg.batch_size, args.inproc_seconds)
    window = np.random.default_rng(1).standard_normal((64, 469)).astype(args.body_dtype).tobytes()
    with LocalTorchServe(
        store,
        TorchServeSettings(
            model_version=args.model_version,
            batch_size=cfg.batch_size,
            max_batch_delay_ms=cfg.max_batch_delay_ms,
            workers=cfg.workers,
        ),
        torch_threads=cfg.torch_threads,
    ) as ts:
        headers = {"Content-Type": "application/octet-stream", **ts.auth_headers()}
        b0, r0 = _scrape_batches(ts.metrics_url)
        served = asyncio.run(
            drive(
                f"{ts.inference_url}/predictions/signflow",
                headers,
                window,
                args.concurrency,
                args.warmup,
                args.duration,
            )
        )
        time.sleep(0.5)  # let the last metric lines reach the frontend
        b1, r1 = _scrape_batches(ts.metrics_url)
    after = in_process_samples_per_s(module, cfg.batch_size, args.inproc_seconds)
    in_process = (before + after) / 2
    return {
        **asdict(cfg),
        **served,
        "batch_size_mean": (r1 - r0) / (b1 - b0) if b1 > b0 else None,
        "in_process_samples_per_s": in_process,
        "in_process_before_after": [before, after],
        "ratio": served["samples_per_s"] / in_process,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-version", default="1.0")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "build" / "models")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--inproc-seconds", type=float, default=3.0)
    parser.add_argument("--sweep", action="store_true", help="measure every SWEEP config")
    parser.add_argument(
        "--body-dtype",
        choices=["<f4", "<f2"],
        default="<f4",
        help="request body: float32 (120 KB) or float16 (60 KB): the per-byte cost question",
    )
    parser.add_argument("--workers", type=int, help="only this many TorchServe workers")
    parser.add_argument("--repeat", type=int, default=1, help="measure each config this often")
    args = parser.parse_args(argv)

    loaded = load_artifacts(args.models / args.model_version, device="cpu")
    module = loaded.module
    configs = SWEEP if args.sweep else [ServeConfig()]
    if args.workers is not None:
        configs = [ServeConfig(workers=args.workers)]
    configs = configs * args.repeat
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = Path(tmp)
        build_archive(args.model_version, args.models, store)
        for cfg in configs:
            results.append(measure(cfg, store, module, args))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    best = max(results, key=lambda r: float(r["ratio"]))  # type: ignore[arg-type]
    summary = {
        "benchmark": "torchserve_throughput",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "in_process_threads": torch.get_num_threads(),
        },
        "client": f"aiohttp, one process, concurrency {args.concurrency}, raw {args.body_dtype}",
        "load_avg_1m": os.getloadavg()[0],
        "duration_s": args.duration,
        "results": results,
        "best": best,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
