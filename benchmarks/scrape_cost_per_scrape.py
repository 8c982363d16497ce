"""CPU one Prometheus scrape costs the scraped processes, amplified out of a shared machine's
noise: each target's /metrics read at 20/s against 0/s, interleaved A B B A.

    .venv/bin/python benchmarks/scrape_cost_per_scrape.py [--window 15] [--rate 20] [--rounds 2]
        [--json benchmarks/results/scrape_cost_per_scrape.json]

A real local stack (backend + TorchServe, model 1.0, idle: every labelled series exists from
the start, so a render's size does not depend on the load) is started once; in each window
every process's CPU time (psutil, user + system, all its children) is read before and after
``--window`` s during which the backend's and TorchServe's metrics URLs are each fetched
``--rate`` times a second (B) or not at all (A). The cost of one scrape of a target is
(B - A) / (rate x window): at the stack's 1 s scrape interval that is its CPU share of one core.
Add Prometheus's own process (measured in runs: benchmarks/prometheus_scrape_cost.py) for the
whole cost of watching the stack.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.stack import make_stack  # noqa: E402


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    spec = {"driver": "local", "use_torchserve": True, "rollout_percent": 50,
            "torchserve": {"workers": 1, "model_version": "1.0"}}  # fmt: skip
    windows: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory(prefix="scrape-cost-") as tmp,
        make_stack(spec, Path(tmp)) as stack,
    ):
        ep = stack.endpoints
        targets = {"backend": [ep.backend_metrics_url],
                   "torchserve": list(ep.all_torchserve_metrics_urls())}  # fmt: skip
        procs = stack.processes()
        time.sleep(3.0)  # let start-up settle
        with httpx.Client(timeout=5.0) as client:
            for r in range(args.rounds):
                for rate in (0.0, args.rate, args.rate, 0.0):
                    before = {k: _cpu(procs.get(k, [])) for k in targets}
                    t0 = time.monotonic()
                    n = 0
                    while (now := time.monotonic()) < t0 + args.window:
                        if rate:
                            for urls in targets.values():
                                for u in urls:
                                    client.get(u).raise_for_status()
                            n += 1
                            time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
                        else:
                            time.sleep(min(0.2, t0 + args.window - now))
                    span = time.monotonic() - t0
                    used = {k: _cpu(procs.get(k, [])) - before[k] for k in targets}
                    row = {"round": r + 1, "rate_per_s": rate, "scrapes": n,
                           "window_s": round(span, 2),
                           **{f"{k}_cpu_percent": round(v / span * 100, 3)
                              for k, v in used.items()}}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    windows.append(row)
    out: dict[str, object] = {
        "what": "CPU one /metrics scrape costs each scraped process (amplified: "
        f"{args.rate:g}/s vs 0/s, ABBA x {args.rounds}, {args.window:g} s windows)",
        "command": "benchmarks/scrape_cost_per_scrape.py " + " ".join(sys.argv[1:]),
        "conditions": "2-core VM shared with other helpers' work; idle stack",
    }
    for k in ("backend", "torchserve"):
        idle = statistics.median(
            float(w[f"{k}_cpu_percent"]) for w in windows if not w["rate_per_s"]
        )  # type: ignore[arg-type]
        busy = statistics.median(float(w[f"{k}_cpu_percent"]) for w in windows if w["rate_per_s"])  # type: ignore[arg-type]
        per_scrape_ms = (busy - idle) / 100.0 / args.rate * 1000.0
        out[k] = {
            "idle_cpu_percent": idle,
            f"at_{args.rate:g}_per_s_cpu_percent": busy,
            "cpu_ms_per_scrape": round(per_scrape_ms, 3),
            "percent_of_one_core_at_1_scrape_per_s": round(per_scrape_ms / 10.0, 3),
        }
    out["windows"] = windows
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
