"""Cost of the hedged fallback with a HEALTHY TorchServe: hedges fired and backend CPU, with
hedging on and off side by side in one run.

    flock /tmp/signflow-heavy.lock .venv/bin/python benchmarks/hedging_cost.py \
        [--sessions 8] [--fps 30] [--block-s 10] [--rounds 1] [--json out.json]

One TorchServe (serving.local: batch 16, max delay 50 ms, one worker, token auth: the
``scenarios/torchserve.yaml`` settings) and two backends on it, identical but for
TORCHSERVE_HEDGE_ENABLED. The load of ``torchserve.yaml`` (8 sessions x 30 fps, synthetic
signs; ``benchmarks/backend_sessions.py`` drives it) goes to one backend at a time, in blocks
ordered ABBA per round (on, off, off, on) after a discarded warm-up block each, so that drift
of the shared machine (other jobs, thermal) falls on both arms alike. Each block reports the
backend's CPU (psutil, % of one core) over the block and the deltas of its /metrics counters.

Targets (issue 10): hedges fired <= 2 % of TorchServe windows; CPU with hedging within 5 % of
CPU without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from backend_server import run_backend  # noqa: E402
from backend_sessions import _run as drive  # noqa: E402

from serving.local import LocalTorchServe  # noqa: E402
from serving.settings import TorchServeSettings  # noqa: E402

COUNTERS = (
    ("windows_torchserve", 'signflow_inferences_total{served_by="torchserve"}'),
    ("windows_local", 'signflow_inferences_total{served_by="local"}'),
    ("hedges", "signflow_hedges_total"),
    ("hedge_wins_local", 'signflow_hedge_wins_total{winner="local"}'),
    ("hedge_wins_torchserve", 'signflow_hedge_wins_total{winner="torchserve"}'),
    ("hedges_throttled", "signflow_hedges_throttled_total"),
    ("fallbacks", "signflow_fallback_total"),
)


def _scrape(base_url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for key, series in (*COUNTERS, ("hedge_delay_s", "signflow_hedge_delay_seconds")):
        m = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.M)
        values[key] = float(m.group(1)) if m else 0.0
    return values


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and optionally write) a JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--block-s", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    arms = {"hedge_on": "true", "hedge_off": "false"}
    blocks: list[dict] = []
    with ExitStack() as stack:
        ts = stack.enter_context(
            LocalTorchServe(
                REPO / "build" / "model-store",
                TorchServeSettings(batch_size=16, max_batch_delay_ms=50, workers=1),
            )
        )
        backends = {}
        for arm, flag in arms.items():
            env = {
                "USE_TORCHSERVE": "true",
                "TORCHSERVE_URL": ts.inference_url,
                "TORCHSERVE_KEY_FILE": str(ts.key_file),
                "TORCHSERVE_MANAGEMENT_URL": ts.management_url,
                "TORCHSERVE_HEDGE_ENABLED": flag,
                "MODEL_DIR": str(REPO / "build" / "models" / "1.0"),
                "LOG_LEVEL": "warning",
            }
            backends[arm] = stack.enter_context(run_backend(env))
        # Warm both first (discarded): the first block a backend serves pays one-off costs
        # (allocations, connection pool, TorchServe's first batches) that are not hedging's.
        for arm in arms:
            handle = backends[arm]
            asyncio.run(drive(handle.ws_url, args.sessions, args.fps, 5.0, 1.0, handle.pid))
        order = ["hedge_on", "hedge_off", "hedge_off", "hedge_on"] * args.rounds
        for arm in order:
            handle = backends[arm]
            before = _scrape(handle.base_url)
            t0 = time.time()
            load = asyncio.run(
                drive(handle.ws_url, args.sessions, args.fps, args.block_s, 2.0, handle.pid)
            )
            after = _scrape(handle.base_url)
            delta = {k: after[k] - before[k] for k, _ in COUNTERS}
            blocks.append(
                {
                    "arm": arm,
                    "started": round(t0, 1),
                    "backend_cpu_percent": load["backend_cpu_percent"],
                    "frames": load["frames"],
                    "error_replies": load["error_replies"],
                    "sign_end_ms": load["sign_end_ms"],
                    "hedge_delay_ms_at_end": round(after["hedge_delay_s"] * 1000, 1),
                    **{k: int(v) for k, v in delta.items()},
                }
            )
            print(json.dumps(blocks[-1]), file=sys.stderr)
    summary: dict = {"blocks": blocks, "arms": {}}
    for arm in arms:
        mine = [b for b in blocks if b["arm"] == arm]
        windows = sum(b["windows_torchserve"] + b["windows_local"] for b in mine)
        hedges = sum(b["hedges"] for b in mine)
        summary["arms"][arm] = {
            "backend_cpu_percent_mean": round(
                sum(b["backend_cpu_percent"] for b in mine) / len(mine), 2
            ),
            "windows": windows,
            "hedges": hedges,
            "hedge_share": round(hedges / windows, 4) if windows else None,
            "hedges_throttled": sum(b["hedges_throttled"] for b in mine),
            "served_local": sum(b["windows_local"] for b in mine),
            "error_replies": sum(b["error_replies"] for b in mine),
            "sign_end_p99_ms_worst_block": max(b["sign_end_ms"]["p99"] or 0 for b in mine),
        }
    on, off = summary["arms"]["hedge_on"], summary["arms"]["hedge_off"]
    summary["cpu_on_vs_off"] = round(
        on["backend_cpu_percent_mean"] / off["backend_cpu_percent_mean"] - 1, 4
    )
    summary["targets"] = {
        "hedge_share_le_0.02": on["hedge_share"] is not None and on["hedge_share"] <= 0.02,
        "cpu_within_5pct": abs(summary["cpu_on_vs_off"]) <= 0.05,
    }
    summary["conditions"] = {
        "sessions": args.sessions,
        "fps": args.fps,
        "block_s": args.block_s,
        "order": order,
        "cpu_count": os.cpu_count(),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "torchserve": "serving.local, batch 16, max delay 50 ms, 1 worker, token auth",
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
