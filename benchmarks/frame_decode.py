"""Frame decode candidates for the backend (issue 24): text -> validated float32[225].

    .venv/bin/python benchmarks/frame_decode.py [--rounds 5] [--json out.json]

Candidates, each over the same synthetic stream (rest, recording and sign-ending frames):
- ``stdlib``: json.loads + normalize_landmarks walking the nested lists (the old path);
- ``orjson``: orjson.loads + the same walk (only when orjson is installed: not a dependency);
- ``msgspec``: the backend's decode_frame (msgspec typed decode + one np.fromiter).
Interleaved round by round (A B C C B A ...) so machine load drifts hit all alike; reports the
median us per frame and the ratios to ``stdlib``, with the load average noted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend_patch.app.api.translate import decode_frame  # noqa: E402
from backend_patch.app.ml import synthetic  # noqa: E402
from backend_patch.app.ml.features import normalize_landmarks  # noqa: E402


def _messages() -> list[str]:
    frames = synthetic.generate_stream(num_signs=6, seed=1)
    return [json.dumps(dict(f, frame_idx=i)) for i, f in enumerate(frames)]


def _per_frame_us(fn: Callable[[str], object], messages: list[str], repeat: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for m in messages:
            fn(m)
    return (time.perf_counter() - start) / (repeat * len(messages)) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Measure every candidate; print (and write) the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    candidates: dict[str, Callable[[str], object]] = {
        "stdlib": lambda m: normalize_landmarks(json.loads(m)),
        "msgspec": decode_frame,
    }
    try:
        import orjson

        candidates["orjson"] = lambda m: normalize_landmarks(orjson.loads(m))
    except ImportError:
        pass
    messages = _messages()
    for fn in candidates.values():  # warm-up
        _per_frame_us(fn, messages, 1)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    load = [os.getloadavg()[0]]
    names = list(candidates)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(_per_frame_us(candidates[name], messages))
    load.append(os.getloadavg()[0])
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    summary = {
        "benchmark": "frame_decode",
        "frames": len(messages),
        "us_per_frame_median": med,
        "ratio_to_stdlib": {k: round(v / med["stdlib"], 3) for k, v in med.items()},
        "us_per_frame_rounds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "loadavg_1m_before_after": load,
        "cpu_count": os.cpu_count(),
        "command": "python benchmarks/frame_decode.py --rounds " + str(args.rounds),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
