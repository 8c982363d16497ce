"""A rollout change reaches the sessions that start after it: the issue's share target.

    PYTHONPATH=. .venv/bin/python benchmarks/rollout_share.py [--rate 2 --length 10 --at 10]

Starts the real backend (uvicorn on loopback, USE_TORCHSERVE=true with no TorchServe behind it:
windows of TorchServe-cohort sessions fall back to the local engine, but the backend still
assigns each session's route at connect and names it in the x-signflow-route header), streams
Poisson arrivals of fixed-length sessions with the harness's load generator, and sets the rollout
from 0 to 50 % at --at seconds. Prints the TorchServe share of the sessions that connected after
the change, with its binomial 99 % bounds around 50 %, and the share before it (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scipy.stats import binom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from backend_server import run_backend  # noqa: E402

from harness.clock import RunClock  # noqa: E402
from harness.load import LoadConfig, LoadGenerator, run_with_best_loop, synthetic_trace  # noqa: E402
from harness.scenario.traffic import CONNECT_LEAD_S, plan_arrivals  # noqa: E402
from harness.stack.base import put_rollout  # noqa: E402

ADMIN = "benchmark-admin-token"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--length", type=float, default=10.0)
    ap.add_argument("--at", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    env = {"USE_TORCHSERVE": "true", "TORCHSERVE_URL": "http://127.0.0.1:9",
           "TORCHSERVE_TIMEOUT_MS": "200", "TORCHSERVE_ROLLOUT_PERCENT": "0",
           "ADMIN_TOKEN": ADMIN}  # fmt: skip
    trace = synthetic_trace(5, 20, None, (15, 25))
    plan = plan_arrivals(args.rate, args.duration - CONNECT_LEAD_S, "poisson", "fixed",
                         args.length, args.seed)  # fmt: skip
    with run_backend(env) as backend:
        changed: list[float] = []
        clock = RunClock()
        config = LoadConfig(
            ws_url=backend.ws_url, sessions=0, fps=30, duration_s=args.duration, warmup_s=1,
            ramp_up_s=0, traces=lambda _i: trace, plan=plan,
        )  # fmt: skip
        gen = LoadGenerator(config, clock)

        async def change() -> None:
            await clock.sleep_until(args.at)
            await asyncio.to_thread(put_rollout, backend.base_url, ADMIN, 50)
            changed.append(clock.now())

        async def run() -> object:
            clock.start()
            side = asyncio.create_task(change())
            result = await gen.run()
            await side
            return result

        result = run_with_best_loop(run())
    sessions = [s for s in result.sessions if s["connected_s"] is not None]  # type: ignore[attr-defined]
    before = [s for s in sessions if s["connected_s"] < args.at]
    after = [s for s in sessions if s["connected_s"] > changed[0]]
    n = len(after)
    ts = sum(s["cohort"] == "torchserve" for s in after)
    lo, hi = binom.ppf([0.005, 0.995], n, 0.5)
    print(f"sessions: {len(plan)} planned, {len(sessions)} started, "
          f"{sum(s['outcome'] == 'refused' for s in result.sessions)} refused")  # type: ignore[attr-defined]  # fmt: skip
    print(
        f"before t={args.at:g}s: {len(before)} sessions, "
        f"{sum(s['cohort'] == 'torchserve' for s in before)} on TorchServe"
    )
    print(
        f"after the change (t={changed[0]:.2f}s): {ts}/{n} on TorchServe = {ts / n:.3f}; "
        f"binomial 99 % bounds of 50 %: [{lo / n:.3f}, {hi / n:.3f}] -> "
        f"{'WITHIN' if lo <= ts <= hi else 'OUTSIDE'}"
    )
    print(
        f"generator: late share {result.generator_late_share:.4f}, "  # type: ignore[attr-defined]
        f"cpu {result.generator_cpu_percent:.1f} %, invalid: {result.invalid_reasons}"
    )  # type: ignore[attr-defined]
    c = sorted(s["connect_ms"] for s in sessions)
    print(f"connect ms p50 {c[len(c) // 2]:.2f} max {c[-1]:.2f}")


if __name__ == "__main__":
    main()
