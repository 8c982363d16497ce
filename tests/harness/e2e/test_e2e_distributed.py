"""``workload.engine: locust`` through the real CLI: the shipped scenarios/distributed.yaml on the
local stack with the flag off (a real backend, no TorchServe), and a taken master port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.stack.local import REPO_ROOT

SCENARIOS = REPO_ROOT / "scenarios"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _locust_processes() -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "-m locust" in cmd or "harness.load.distributed.engine" in cmd:
            out.append(f"{p.info['pid']} {cmd}")
    return out


def _harness(out: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness", "run", str(SCENARIOS / "distributed.yaml"),
            "--out", str(out)]  # fmt: skip
    for item in sets:
        argv += ["--set", item]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
                          check=False, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.skipif(
    not (REPO_ROOT / "build" / "model-store" / "signflow-1.0.mar").is_file(),
    reason="models/archives not built (make setup)",
)
def test_two_workers_against_the_real_backend_flag_off(tmp_path: Path) -> None:
    before = set(_locust_processes())
    proc = _harness(
        tmp_path, "stack.use_torchserve=false", "workload.sessions=4", "workload.duration_s=6",
        "workload.warmup_s=2", "workload.ramp_up_s=0.5", "workload.late_threshold_ms=25",
        "gates=[]",
    )  # fmt: skip
    (run_dir,) = [p for p in tmp_path.iterdir() if not p.is_symlink()]  # and the latest link
    doc = json.loads((run_dir / "results.json").read_text())
    # 0, or 2 when this shared machine made a worker fall behind (named in the reasons).
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    if proc.returncode == 2:
        assert all("on worker" in r for r in doc["invalid_reasons"]), doc["invalid_reasons"]
    s = doc["summary"]
    assert s["frames"]["scheduled"] == 4 * 4 * 30  # sessions x measured s x fps
    assert s["frames"]["lost"] == 0 and s["errors"]["total"] == 0
    assert s["served_by"]["local"] == 1.0  # flag off: the backend's own model answered
    workers = doc["load"]["workers"]
    assert [w["status"] for w in workers] == ["done", "done"]
    assert sum(w["frames"] for w in workers) == s["frames"]["scheduled"]
    assert doc["load"]["master"]["messages"] > 0
    assert "workers 2/2" in proc.stderr  # live progress names the workers
    assert set(_locust_processes()) <= before


def test_master_port_taken_exits_3_with_nothing_left(tmp_path: Path) -> None:
    backend = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "harness" / "fake_backend.py")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert backend.stdout is not None
    bport = int(backend.stdout.readline())
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: taken\nstack:\n  driver: external\n  external:\n"
        f"    ws_url: ws://127.0.0.1:{bport}/\n    http_url: http://127.0.0.1:{bport}\n"
        "workload:\n  sessions: 2\n  duration_s: 3\n  engine: locust\n"
        f"  locust: {{workers: 2, master_bind: {{port: {port}}}}}\n"
    )
    before = set(_locust_processes())
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "o")],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        holder.close()
        backend.terminate()
        backend.wait(10)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"could not bind 127.0.0.1:{port} (address already in use)" in proc.stderr
    assert set(_locust_processes()) <= before
