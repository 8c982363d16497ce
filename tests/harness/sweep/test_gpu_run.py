"""scripts/gpu-run.sh end to end in its CPU mode (CUDA absent): the test of the script itself.

Quick mode (GPU_RUN_QUICK=1): short runs and 2-run budgets, so both sweeps start real stacks
but the whole script stays around two minutes here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_gpu_run_script_in_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "gpu-out"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-run.sh"), str(out)],
        cwd=REPO,
        env={**os.environ, "GPU_RUN_QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "cpu"
    curve = summary["batch_curve"]["curve"]
    assert [r["batch_size"] for r in curve] == [1, 2, 4, 8, 16, 32, 64]
    assert all(r["samples_per_s"] > 0 for r in curve)
    assert set(summary["sweeps"]) == {"batching", "capacity"}
    for name, s in summary["sweeps"].items():
        sweep_dir = out / Path(s["sweep"]).parent
        assert (sweep_dir / "sweep.html").is_file(), name
        assert s["runs"] <= 2 and s["stack_starts"] >= 1
    assert "mode cpu" in (out / "gpu-run.log").read_text()
