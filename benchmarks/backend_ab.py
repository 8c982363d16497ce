"""A/B the backend of two source trees with benchmarks/backend_sessions.py, interleaved ABBA.

    .venv/bin/python benchmarks/backend_ab.py --a /tmp/old-tree --b . [--sessions 32]
        [--duration 15] [--rounds 1] [--env KEY=VALUE ...] [--json out.json]

backend_sessions.py starts the backend with its own tree as the working directory, so each side
runs the script of its tree (export the other revision first: ``git archive <commit> | tar -x
-C /tmp/old-tree`` and symlink ``build`` into it). The sides run A B B A per round, so a machine
whose load drifts during the run biases both alike; the summary gives each side's figures and
the B/A ratios of the medians (CPU us/frame, client-side and server-side non-sign p99). The
machine's load average is recorded before and after each run: on a shared machine, compare
ratios from one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

SCRIPT = Path("benchmarks") / "backend_sessions.py"


def _one(tree: Path, sessions: int, duration: float, env: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)
    cmd = [sys.executable, str(SCRIPT), "--sessions", str(sessions), "--duration", str(duration)]
    for e in env:
        cmd += ["--env", e]
    cmd += ["--json", str(out)]
    proc = subprocess.run(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if proc.returncode != 0:  # e.g. a saturated backend's sessions closed 1011
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
            return {"failed": tail[0] if tail else f"exit status {proc.returncode}"}
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def _start_torchserve(stack: ExitStack) -> list[str]:
    """A real TorchServe for the flag-on runs; the backend env that points at it."""
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from serving.local import LocalTorchServe
    from serving.settings import TorchServeSettings

    ts = stack.enter_context(
        LocalTorchServe(repo / "build" / "model-store", TorchServeSettings(model_version="1.0"))
    )
    return [
        "USE_TORCHSERVE=true",
        f"TORCHSERVE_URL={ts.inference_url}",
        f"TORCHSERVE_MANAGEMENT_URL={ts.management_url}",
        f"TORCHSERVE_KEY_FILE={ts.key_file}",
    ]


def _figures(r: dict) -> dict:
    if "failed" in r:
        return r
    return {
        "cpu_us_per_frame": r["backend_cpu_us_per_frame"],
        "client_p99_ms": r["non_inference_ms"]["p99"],
        "server_p99_ms": r["server_non_inference_ms"]["p99"],
        "client_p50_ms": r["non_inference_ms"]["p50"],
        "late_send_share": r["late_send_share"],
        "error_replies": r["error_replies"],
        "loadavg_1m": [r["conditions"]["loadavg_1m_before"], r["conditions"]["loadavg_1m_after"]],
    }


def _ratio(b: float | None, a: float | None) -> float | None:
    return round(b / a, 3) if a and b is not None else None


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; print and optionally write the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", type=Path, required=True, help="tree A (the reference)")
    p.add_argument("--b", type=Path, required=True, help="tree B (the change)")
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for both backends")
    p.add_argument(
        "--torchserve",
        action="store_true",
        help="flag on: start a local TorchServe (build/model-store, token auth) for both sides",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    with ExitStack() as stack:
        if args.torchserve:
            args.env += _start_torchserve(stack)
        for _ in range(args.rounds):
            for side in ("a", "b", "b", "a"):
                tree = args.a if side == "a" else args.b
                fig = _figures(_one(tree.resolve(), args.sessions, args.duration, args.env))
                runs[side].append(fig)
                print(side, json.dumps(fig), file=sys.stderr, flush=True)

    def med(side: str, key: str) -> float | None:
        ok = [float(r[key]) for r in runs[side] if "failed" not in r]
        return statistics.median(ok) if ok else None

    keys = ("cpu_us_per_frame", "client_p99_ms", "server_p99_ms")
    summary = {
        "benchmark": "backend_ab",
        "sessions": args.sessions,
        "fps": 30,
        "duration_s": args.duration,
        "env": args.env,
        "a": str(args.a),
        "b": str(args.b),
        "runs": runs,
        "median": {side: {k: med(side, k) for k in keys} for side in ("a", "b")},
        "ratio_b_over_a": {k: _ratio(med("b", k), med("a", k)) for k in keys},
        "cpu_count": os.cpu_count(),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
