"""A real small sweep on the local stack: TorchServe + backend, 2 configurations x 2 loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow

SWEEP = f"""\
name: local-small
base: {REPO / "scenarios" / "torchserve.yaml"}
set:
  workload.duration_s: 4
  workload.warmup_s: 1
  workload.ramp_up_s: 0.5
  workload.late_threshold_ms: 20   # a busy shared machine: keep INVALID for real stalls
  torchserve.workers: 1
space:
  grid:
    torchserve.batch_size: [1, 4]
load:
  sessions: [1, 2]
constraints:
  - errors.total == 0
  - served_by.torchserve >= 0.95
objective: {{maximize: throughput.inferences_per_s}}
budget: {{max_runs: 4, max_minutes: 5}}
"""


def test_two_configurations_two_loads_on_the_local_stack(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(SWEEP, encoding="utf-8")
    doc, code = run_sweep(load_sweep(path), tmp_path / "out")
    sweep_dir = next(p for p in (tmp_path / "out").iterdir() if not p.is_symlink())
    assert [(p["config"], p["sessions"]) for p in doc["points"]] == [
        ("c01", 1), ("c01", 2), ("c02", 1), ("c02", 2),
    ]  # fmt: skip
    # One TorchServe per configuration: started twice in all, never between load levels.
    assert doc["stack_starts"] == 2
    for p in doc["points"]:
        run = json.loads((sweep_dir / p["run_dir"] / "results.json").read_text())
        # The configured batch size reached TorchServe (its provenance says what it ran with).
        ts = run["provenance"]["configs"]["torchserve"]
        want = {"c01": 1, "c02": 4}[p["config"]]
        assert ts["batch_size"] == want, ts
        if p["valid"]:
            assert p["figures"]["inferences_per_s"] and p["figures"]["inferences_per_s"] > 0
            assert p["figures"]["batch_size_mean"] is not None
            assert p["figures"]["batch_size_mean"] <= want + 1e-9
    if any(not p["valid"] for p in doc["points"]):
        pytest.skip("a run was INVALID on this busy machine; the rest was checked")
    assert code == 0 and doc["recommendation"] is not None
    assert (sweep_dir / "sweep.html").is_file()
