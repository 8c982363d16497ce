"""The in-process batch-size curve: forward passes of the trained model at each batch size, on
the GPU when there is one (the physical limit a TorchServe configuration can approach).

    .venv/bin/python benchmarks/batch_curve.py [--seconds 2] [--out curve.json]

Prints one JSON document: device, and per batch size samples/s and ms per batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from backend_patch.app.ml.model import load_artifacts  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64)


def measure(module: torch.jit.ScriptModule, device: torch.device, batch: int, seconds: float):
    """(samples/s, ms per batch) of forward passes at ``batch`` for about ``seconds``."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 64, 469), np.float32))
    x = x.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(5):  # warm-up: TorchScript profiles the first calls
            module(x)
        sync()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            module(x)
            n += 1
        sync()
        elapsed = time.perf_counter() - start
    return n * batch / elapsed, 1000 * elapsed / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=REPO_ROOT / "build" / "models" / "1.0")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_artifacts(args.models, device)
    rows = []
    for batch in BATCHES:
        per_s, ms = measure(model.module, device, batch, args.seconds)
        rows.append({"batch_size": batch, "samples_per_s": per_s, "ms_per_batch": ms})
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    doc = {"device": name, "torch": torch.__version__, "curve": rows}
    text = json.dumps(doc, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
